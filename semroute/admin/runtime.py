"""Wiring of the admin side into a server process (used by semroute.server.app).

`Admin.from_config` returns None unless an admin token is set in the
environment or mTLS is configured, so a default deployment exposes nothing.
The service is registered at start (answering UNAVAILABLE until the router is
loaded), attached to the router once it is, and closed first on shutdown so
no swap can start while the server drains.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import grpc

from semroute.admin.auth import AdminAuth, server_credentials
from semroute.admin.registry import AdminError, IndexRegistry, read_state
from semroute.admin.service import SERVICE_NAME, AdminServicer, shadow_report
from semroute.admin.shadow import ShadowEvaluator
from semroute.admin.watcher import BundleWatcher
from semroute.config import Config, ConfigError
from semroute.pipeline import Pipeline
from semroute.router import Router
from semroute.server.decoding import BadInputLog, GuardedServer
from semroute.v1 import admin_pb2 as apb
from semroute.v1 import admin_pb2_grpc

log = logging.getLogger("semroute.admin")


def _rss_bytes() -> int:
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE")


class Admin:
    def __init__(self, config: Config, auth: AdminAuth, bad_input: BadInputLog) -> None:
        self.config = config
        self.spec = config.admin
        self.auth = auth
        # The server's count of undecodable request bodies (reported by GetStatus).
        self.bad_input = bad_input
        self.servicer = AdminServicer(self)
        self.registry: IndexRegistry | None = None
        self.shadow: ShadowEvaluator | None = None
        self.watcher: BundleWatcher | None = None
        self._server: grpc.aio.Server | None = None
        self.port: int | None = None

    @classmethod
    def from_config(cls, config: Config, bad_input: BadInputLog) -> Admin | None:
        """The admin side when enabled and a token (environment) or mTLS is configured,
        else None."""
        spec = config.admin
        if not spec.enabled:
            return None
        token = os.environ.get(spec.token_env, "").strip() or None
        read_token = os.environ.get(spec.read_token_env, "").strip() or None
        if token is None and read_token is None and spec.tls is None:
            unused = [n for n in ("watch_dir", "state_file") if getattr(spec, n) is not None]
            if unused:  # silently ignored, a watched directory would look broken
                log.warning(
                    "the admin side is off (no token in $%s, no admin.tls): %s ignored",
                    spec.token_env,
                    " and ".join(f"admin.{n}" for n in unused),
                )
            return None
        try:
            auth = AdminAuth(
                token,
                read_token,
                token_env=spec.token_env,
                allowed_common_names=spec.tls.allowed_common_names if spec.tls else (),
            )
        except ValueError as e:
            raise ConfigError(f"admin: {e} (${spec.token_env})") from None
        return cls(config, auth, bad_input)

    def _path(self, p: Path | None) -> Path | None:
        if p is None or p.is_absolute() or self.config.source is None:
            return p
        return (self.config.source.parent / p).resolve()

    def register(self, server: GuardedServer) -> tuple[str, ...]:
        """Add the service to the serving port (unless it has its own); returns its names
        for reflection."""
        if self.spec.listen is not None:
            return ()
        admin_pb2_grpc.add_AdminServiceServicer_to_server(self.servicer, server)
        return (SERVICE_NAME,)

    async def start(self) -> None:
        """Bind the separate admin port, when configured (mTLS lives there)."""
        if self.spec.listen is None:
            return
        server = grpc.aio.server()
        admin_pb2_grpc.add_AdminServiceServicer_to_server(
            self.servicer, GuardedServer(server, self.bad_input)
        )
        if self.spec.tls is not None:
            base = self.config.source.parent if self.config.source else None
            creds = server_credentials(self.spec.tls, base)
            self.port = server.add_secure_port(self.spec.listen, creds)
        else:
            self.port = server.add_insecure_port(self.spec.listen)
        if not self.port:
            raise OSError(f"cannot bind the admin port {self.spec.listen}")
        await server.start()
        self._server = server
        log.info(
            "admin listening",
            extra={
                "fields": {
                    "listen": self.spec.listen,
                    "port": self.port,
                    "mtls": bool(self.spec.tls),
                }
            },
        )

    def attach(self, router: Router, pipeline: Pipeline, index_dir: Path) -> None:
        """The router is loaded: manage its state from now on (called on the event loop)."""
        spec = self.spec
        self.shadow = ShadowEvaluator(router, max_pending=spec.shadow_max_pending)
        registry = IndexRegistry(
            router,
            self.config,
            spec,
            self.shadow,
            staging_root=self._path(spec.staging_dir),
        )
        registry.adopt(index_dir)
        registry.primer = pipeline
        self.registry = registry
        pipeline.set_tap(self.shadow)
        watch_dir = self._path(spec.watch_dir)
        if watch_dir is not None:
            watch_dir.mkdir(parents=True, exist_ok=True)
            self.watcher = BundleWatcher(
                registry, watch_dir, interval_s=spec.watch_interval_s, action=spec.watch_action
            )
            self.watcher.start()

    async def restore(self) -> None:
        """Before SERVING: activate the bundle `admin.state_file` records, else the newest
        valid bundle already in `admin.watch_dir`.

        The state file wins: it records the last explicit activation or rollback,
        which the directory cannot express (a rollback leaves the newer bundle
        there). A recorded bundle that no longer loads is logged and skipped, and
        the directory is tried next; failing both, the server serves the one it was
        started with.
        """
        reg = self.registry
        if reg is None:
            return
        path = self._path(self.spec.state_file)
        tried: frozenset[Path] = frozenset()
        if path is not None:
            reg.state_file = path
            recorded = read_state(path)
            if recorded is not None:
                if await self._restore_recorded(path, recorded):
                    return
                tried = frozenset({Path(recorded["path"])})
        if self.watcher is not None:
            version = await self.watcher.apply_present(skip=tried)
            if version:
                log.info(
                    "applied the newest bundle of the watched directory",
                    extra={"fields": {"version": version, "action": self.watcher.action}},
                )

    async def _restore_recorded(self, path: Path, recorded: dict[str, str]) -> bool:
        """Activate the recorded bundle; False (logged) when it no longer loads."""
        reg = self.registry
        assert reg is not None
        if recorded["version"] == reg.active:
            return True
        try:
            entry, _ = await reg.load(recorded["path"])
            if entry.version != recorded["version"]:
                raise AdminError(
                    "FAILED_PRECONDITION",
                    f"{recorded['path']} now holds {entry.version}, not {recorded['version']}",
                )
            await reg.activate(entry.version)
        except AdminError as e:
            then = "trying the watched directory" if self.watcher else "serving the configured one"
            log.warning(
                f"recorded bundle not restored; {then}",
                extra={"fields": {"state_file": str(path), "error": e.message}},
            )
            return False
        log.info("restored the recorded bundle", extra={"fields": {"version": entry.version}})
        return True

    async def close(self, grace: float = 1.0) -> None:
        """Shutdown began: refuse swaps, stop the watcher and shadowing, close the admin port."""
        if self.registry is not None:
            self.registry.close()
        if self.watcher is not None:
            await self.watcher.stop()
        if self.shadow is not None:
            self.shadow.close()
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None

    def status(self) -> apb.GetStatusResponse:
        reg = self.registry
        assert reg is not None
        state = reg.router.state
        run = reg.shadow.run
        watch = apb.WatchStatus(**self.watcher.status()) if self.watcher else apb.WatchStatus()
        return apb.GetStatusResponse(
            active_version=reg.active,
            active_config_version=state.config.version,
            encoder_id=reg.router.encoder.id,
            previous_version=reg.previous,
            shadow=shadow_report(run.report()) if run is not None else None,
            loaded=reg.loaded_count(),
            draining_versions=reg.draining(),
            swaps=reg.swaps,
            last_swap_at=reg.last_swap_at,
            rejected=reg.rejected,
            last_error=reg.last_error,
            shutting_down=reg.closing,
            watch=watch,
            rss_bytes=_rss_bytes(),
            malformed_requests=self.bad_input.total,
            encoder_kernels=_encoder_kernels(reg.router.encoder),
        )


def _encoder_kernels(encoder: Any) -> apb.EncoderKernels | None:
    """The encoder's kernel choice (semroute/encoder/variants.py), when one was made."""
    k = getattr(encoder, "kernel", None)
    if k is None:
        return None
    return apb.EncoderKernels(
        variant=k.variant,
        threads=k.threads,
        source=k.source,
        cpu_key=k.cpu_key,
        model_hash=k.model_hash,
        ms_per_prompt=k.ms_per_prompt,
    )
