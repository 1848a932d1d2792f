"""Server lifecycle: bind, load, serve, drain.

The port opens at once with health NOT_SERVING; the encoder and index load
off the event loop, and health turns SERVING only when a request can be
answered. On SIGTERM/SIGINT health turns NOT_SERVING (so load balancers stop
sending), then in-flight calls get `grace_period_s` to finish.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import faiss
import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc

from semroute.admin.runtime import Admin
from semroute.config import Config, ServerSpec, load_config
from semroute.encoder import Encoder, KernelChoice, default_model_dir, read_metadata
from semroute.encoder.variants import (
    AUTO,
    DEFAULT_NAME,
    available_cores,
    choose_kernels,
    default_cache_dir,
)
from semroute.route_index import TextEncoder
from semroute.router import Router, RoutingState
from semroute.server.decoding import BadInputLog, GuardedServer
from semroute.server.service import RouterServicer, add_router_service
from semroute.server.tls import CertificateReloader
from semroute.v1 import router_pb2

log = logging.getLogger("semroute.server")

SERVICE_NAME = router_pb2.DESCRIPTOR.services_by_name["RouterService"].full_name


def choose_encoder_kernels(config: Config, model_dir: Path) -> KernelChoice:
    """The variant and intra-op threads for this CPU (semroute/encoder/variants.py).

    ``auto`` threads are capped so that the inference threads together use no more than the
    cores: a single-stream benchmark would otherwise pick 2 threads per call and the two
    inference threads would then fight over the same cores under load.
    """
    enc = config.encoder
    threads: int | str = enc.intra_op_threads if enc.threads is None else enc.threads
    variant = enc.variant
    if enc.device != "cpu":  # the benchmark measures CPU kernels: nothing to learn for a GPU
        variant = DEFAULT_NAME if variant == AUTO else variant
        threads = enc.intra_op_threads if threads == AUTO else threads
    return choose_kernels(
        model_dir,
        read_metadata(model_dir),
        variant=variant,
        threads=threads,
        max_tokens=enc.max_tokens,
        cache_dir=(
            config.resolve(enc.kernel_cache_dir) if enc.kernel_cache_dir else default_cache_dir()
        ),
        max_threads=max(1, available_cores() // config.server.inference_threads),
    )


def make_encoder(config: Config) -> Encoder:
    """The encoder the config asks for (the bundled model unless it names another)."""
    enc = config.encoder
    model_dir = config.resolve(enc.model_dir) if enc.model_dir else default_model_dir()
    if not model_dir.is_dir():  # let Encoder say what to do about it
        kernel = None
    else:
        kernel = choose_encoder_kernels(config, model_dir)
        log.info(
            "encoder kernels: variant %s, %d intra-op threads (%s)",
            kernel.variant,
            kernel.threads,
            kernel.source,
            extra={"fields": kernel.log_fields()},
        )
    encoder = Encoder(
        model_dir,
        device=enc.device,
        intra_op_threads=kernel.threads if kernel else enc.intra_op_threads,
        max_tokens=enc.max_tokens,
        variant=kernel.variant if kernel else None,
    )
    encoder.kernel = kernel
    if enc.test_delay_ms > 0:
        from semroute.encoder.delay import DelayedEncoder

        log.warning(
            "encoder.test_delay_ms is set: every encoder pass sleeps %g ms", enc.test_delay_ms
        )
        return DelayedEncoder(encoder, enc.test_delay_ms / 1000)  # type: ignore[return-value]
    return encoder


def make_static_encoder(config: Config) -> TextEncoder | None:
    """The static encoder, when the fast tier or the similar-prompt cache uses it."""
    tier = config.fast_tier
    if not (tier.enabled or config.cache.similar_active):
        return None
    from semroute.encoder.static import StaticEncoder, default_static_dir

    return StaticEncoder(
        config.resolve(tier.model_dir) if tier.model_dir else default_static_dir(),
        max_tokens=config.encoder.max_tokens,
    )


# Calls beyond Route's limit the transport admits: health checks, admin and
# response-cache calls, and Route calls to be refused with Route's own message.
TRANSPORT_HEADROOM = 64


def transport_limit(limits: ServerSpec) -> int:
    """Calls in flight the gRPC server admits (all services together)."""
    return limits.max_concurrent_requests + TRANSPORT_HEADROOM


def _lower_priority(nice: int) -> None:
    """Raise the calling thread's nice value (threads are tasks on Linux); best effort."""
    if nice <= 0 or not hasattr(os, "setpriority"):
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + nice)
    except OSError as e:
        log.warning("cannot lower the inference threads' priority: %s", e)


def load_router(config: Config, index_dir: Path | None = None) -> Router:
    """Build the encoders and the routing state; raises on any bad model or index."""
    encoder = make_encoder(config)
    static = make_static_encoder(config)
    return Router(encoder, RoutingState.load(config, encoder, index_dir, static), static)


class App:
    """One server process: gRPC server, health, reflection and the router."""

    def __init__(
        self,
        config: Config,
        host: str = "127.0.0.1",
        port: int = 50051,
        *,
        index_dir: Path | None = None,
    ) -> None:
        self.config = config
        self.host = host
        self.port = port
        self.index_dir = index_dir
        self.pool = ThreadPoolExecutor(
            max_workers=config.server.inference_threads,
            thread_name_prefix="semroute-infer",
            initializer=_lower_priority,
            initargs=(config.server.inference_nice,),
        )
        self.health = health.aio.HealthServicer()
        # Undecodable request bodies, on every service: counted, logged once per interval.
        self.bad_input = BadInputLog()
        self.servicer = RouterServicer(config, self.pool)
        # AdminService (index hot-swap): None unless an admin token or mTLS is configured.
        self.admin = Admin.from_config(config, self.bad_input)
        self.server: grpc.aio.Server | None = None
        self.tls: CertificateReloader | None = None  # set when server.tls is configured
        self.loaded = asyncio.Event()
        self.load_error: BaseException | None = None

    async def start(self) -> int:
        """Bind and start serving (NOT_SERVING until loaded); returns the bound port."""
        limits = self.config.server
        transport = transport_limit(limits)
        server = grpc.aio.server(
            # Past this many concurrent calls (every service) gRPC refuses a call with
            # RESOURCE_EXHAUSTED before any handler runs, so none waits unseen; Route's
            # own limit (lower) gives the clearer message first.
            maximum_concurrent_rpcs=transport,
            options=[
                ("grpc.so_reuseport", 1),
                # Queue up to the concurrency limit instead of gRPC's default 1,000
                # (which cancels calls beyond it with CANCELLED, not RESOURCE_EXHAUSTED).
                ("grpc.server.max_pending_requests", transport),
                (
                    "grpc.max_receive_message_length",
                    self.config.server.max_prompt_bytes * 4 + 65536,
                ),
            ],
        )
        add_router_service(self.servicer, server, self.bad_input)
        guarded = GuardedServer(server, self.bad_input)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, guarded)
        admin_names = self.admin.register(guarded) if self.admin else ()
        if limits.reflection:
            reflection_pb2_grpc.add_ServerReflectionServicer_to_server(
                reflection.aio.ReflectionServicer(
                    (
                        SERVICE_NAME,
                        *admin_names,
                        health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                        reflection.SERVICE_NAME,
                    )
                ),
                guarded,
            )
        address = f"{self.host}:{self.port}"
        if limits.tls is not None:
            base = self.config.source.parent if self.config.source else None
            self.tls = CertificateReloader(limits.tls, base)
            self.port = server.add_secure_port(address, self.tls.credentials())
        else:
            self.port = server.add_insecure_port(address)
        if self.port == 0:
            raise OSError(f"cannot bind {self.host}:{self.port}")
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        await server.start()
        self.server = server
        if self.admin:
            await self.admin.start()
        log.info(
            "listening",
            extra={
                "fields": {
                    "host": self.host,
                    "port": self.port,
                    "tls": "mutual" if self.tls and self.tls.mutual else bool(self.tls),
                    "reflection": limits.reflection,
                    "admin": self.admin is not None,
                }
            },
        )
        return self.port

    async def load(self) -> None:
        """Load the encoder and index off the loop, then turn SERVING."""
        t0 = time.perf_counter()
        # Every FAISS search on the request path is one query from this (the
        # loop's) thread. An OpenMP team for it must wait for a second core
        # that the encoder threads hold, and spins meanwhile: measured 20% of
        # the server's CPU in IndexIDMap.search (benchmarks/profile.py). One
        # thread; OpenMP settings are per calling thread.
        faiss.omp_set_num_threads(1)
        loop = asyncio.get_running_loop()
        try:
            router = await loop.run_in_executor(self.pool, load_router, self.config, self.index_dir)
        except BaseException as e:
            self.load_error = e
            self.loaded.set()
            raise
        # Warm up: the first onnxruntime run allocates and is slow.
        await loop.run_in_executor(self.pool, router.encoder.encode, ["warm up the encoder"])
        self.servicer.set_router(router)
        # The model, index and config live as long as the process: keep the
        # collector from rescanning them (a full collection walks every tracked
        # object on the event loop's thread). No result file measures the pause.
        gc.collect()
        gc.freeze()
        if self.admin:
            self.admin.attach(
                router, self.servicer, self.index_dir or self.config.resolved_index_path()
            )
            await self.admin.restore()  # the last bundle activated, when it is recorded
        await self._set_health(health_pb2.HealthCheckResponse.SERVING)
        self.loaded.set()
        log.info(
            "serving",
            extra={
                "fields": {
                    "index_version": router.state.index.version,
                    "encoder_id": router.encoder.id,
                    "providers": router.encoder.providers,
                    "config_version": self.config.version,
                    "load_s": round(time.perf_counter() - t0, 3),
                }
            },
        )

    async def stop(self, grace: float | None = None) -> None:
        """Turn NOT_SERVING, then drain in-flight calls for up to `grace` seconds."""
        if self.server is None:
            return
        if self.admin:  # first: no index swap may start while the server drains
            await self.admin.close()
        self.bad_input.flush()
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        grace = self.config.server.grace_period_s if grace is None else grace
        log.info("draining", extra={"fields": {"grace_s": grace}})
        await self.server.stop(grace)
        self.server = None
        self.pool.shutdown(wait=False, cancel_futures=True)
        log.info("stopped")

    async def _set_health(self, status: int) -> None:
        for name in ("", SERVICE_NAME):
            await self.health.set(name, status)


async def serve_until_signalled(app: App) -> int:
    """Run `app` until SIGTERM/SIGINT; returns the process exit code."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await app.start()
    load = asyncio.ensure_future(app.load())
    stopper = asyncio.ensure_future(stop.wait())
    await asyncio.wait({load, stopper}, return_when=asyncio.FIRST_COMPLETED)
    if load.done() and load.exception() is not None:
        log.error("startup failed", extra={"fields": {"error": str(load.exception())}})
        stopper.cancel()
        await app.stop(0)
        return 1
    await stopper
    load.cancel()
    await app.stop()
    return 0


def run_process(config_path: str | None, host: str, port: int, index_dir: str | None) -> int:
    """Entry point of one server process (also the target of each worker)."""
    import uvloop

    from semroute.logs import setup_logging

    setup_logging()
    config = load_config(config_path)
    app = App(config, host, port, index_dir=Path(index_dir) if index_dir else None)
    return uvloop.run(serve_until_signalled(app))


def run_workers(
    config_path: str | None, host: str, port: int, index_dir: str | None, workers: int
) -> int:
    """Run `workers` server processes sharing one port through SO_REUSEPORT.

    The kernel spreads connections across processes, so each process (its own
    GIL, event loop and encoder) serves a share of the gateways' connections.
    """
    if port == 0:
        raise ValueError("--workers > 1 needs a fixed --port (each process binds the same one)")
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(
            target=run_process, args=(config_path, host, port, index_dir), name=f"semroute-{i}"
        )
        for i in range(workers)
    ]
    for p in procs:
        p.start()

    def forward(signum: int, _frame: object) -> None:
        for p in procs:
            if p.is_alive() and p.pid is not None:
                os.kill(p.pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for p in procs:
        p.join()
    return max((p.exitcode or 0) for p in procs)
