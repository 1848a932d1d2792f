"""Watch a directory for new bundles: new bundle appears → validated → activated (or shadowed).

Polling, not inotify: it works on every filesystem (NFS, overlay, mounted
volumes) and costs a directory listing per interval. A bundle is acted on
only once its files have stayed unchanged for one full interval, so a bundle
still being copied in is not read half-way; one that fails validation is not
retried until its files change. Hidden names (the temp dirs `write_bundle`
renames into place) are ignored. Entries already present when the watcher
starts are the baseline: the scans do not act on them, but `apply_present`
(run once at start, before SERVING) applies the newest of them, so a
restarted server does not serve stale routes until a new file appears.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from pathlib import Path

from semroute.admin import bundles
from semroute.admin.registry import AdminError, IndexRegistry
from semroute.bundle import MANIFEST

log = logging.getLogger("semroute.admin.watch")

Signature = tuple[tuple[str, int, int], ...]


def signature(path: Path) -> Signature | None:
    """What changes when a bundle's files change; None when it is not (yet) a bundle."""
    try:
        if path.is_dir():
            if not (path / MANIFEST).is_file():
                return None
            files = sorted(p for p in path.iterdir() if p.is_file())
            return tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files)
        if path.is_file() and bundles.is_archive(path):
            st = path.stat()
            return ((path.name, st.st_size, st.st_mtime_ns),)
    except OSError:  # removed or renamed while we looked
        return None
    return None


class BundleWatcher:
    def __init__(
        self,
        registry: IndexRegistry,
        directory: Path,
        *,
        interval_s: float,
        action: str = "activate",
    ) -> None:
        self.registry = registry
        self.directory = Path(directory)
        self.interval_s = interval_s
        self.action = action
        self.scans = 0
        self.loaded = 0
        self.rejected = 0
        self.last_error = ""
        self._done: dict[str, Signature] = {}
        self._pending: dict[str, Signature] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._baseline()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="bundle-watcher")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _entries(self) -> dict[str, Signature]:
        try:
            paths = [p for p in self.directory.iterdir() if not p.name.startswith(".")]
        except OSError as e:
            self.last_error = f"cannot list {self.directory}: {e}"
            return {}
        out = {}
        for p in paths:
            sig = signature(p)
            if sig is not None:
                out[p.name] = sig
        return out

    def _baseline(self) -> None:
        self._done = self._entries()
        log.info(
            "watching for bundles",
            extra={"fields": {"dir": str(self.directory), "baseline": sorted(self._done)}},
        )

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.scan()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # never let the watcher die silently
                self.last_error = f"{type(e).__name__}: {e}"
                log.exception("watcher scan failed")

    async def scan(self) -> None:
        """One pass: act on each new or changed entry that stayed unchanged a full interval."""
        self.scans += 1
        current = self._entries()
        self._pending = {k: v for k, v in self._pending.items() if k in current}
        for name, sig in sorted(current.items()):
            if self._done.get(name) == sig:
                continue
            if self._pending.get(name) != sig:
                self._pending[name] = sig  # seen changing: wait one more interval
                continue
            del self._pending[name]
            self._done[name] = sig
            await self._act(self.directory / name)

    async def apply_present(self, skip: frozenset[Path] = frozenset()) -> str:
        """At start: apply (activate, or shadow) the newest valid bundle of the baseline;
        returns its version, or "" when there is none.

        Newest by the manifest's `created_at` (the build time: copying a bundle in
        resets its files' times), ties broken by the entry name, later wins. A bundle
        that does not load is refused with a log line and the next newest is tried,
        as a bad new bundle leaves the running server on the last good one; with none
        valid the configured index keeps serving. `skip`: paths already tried (the
        state file's bundle).
        """
        loop = asyncio.get_running_loop()
        dated: list[tuple[str, str, Path]] = []
        skipped = {p.resolve() for p in skip}
        for name in sorted(self._done):
            path = self.directory / name
            if path.resolve() in skipped:
                continue
            try:
                created = await loop.run_in_executor(None, self._created_at, path)
            except Exception as e:  # BundleError, OSError: unreadable
                self.rejected += 1
                self.last_error = f"{name}: {e}"
                self._refused(path, str(e))
                continue
            dated.append((created, name, path))
        for _, _, path in sorted(dated, reverse=True):
            if self.registry.closing:
                break
            version = await self._act(path)
            if version:
                return version
            self._refused(path, self.last_error)
        if dated:
            log.warning(
                "no bundle in the watched directory loads; serving the configured index",
                extra={"fields": {"dir": str(self.directory)}},
            )
        return ""

    def _created_at(self, path: Path) -> str:
        """A bundle's build time from its manifest (an archive is unpacked to read it,
        with the same checks as a load); raises when it cannot be read."""
        if path.is_dir():
            return str(bundles.peek_manifest(path).get("created_at", ""))
        reg = self.registry
        bundle_dir = bundles.unpack_archive(path, reg.staging_root, reg.spec.max_archive_bytes)
        try:
            return str(bundles.peek_manifest(bundle_dir).get("created_at", ""))
        finally:
            shutil.rmtree(bundles.staging_dir_of(bundle_dir, reg.staging_root), ignore_errors=True)

    def _refused(self, path: Path, error: str) -> None:
        log.warning(
            "bundle in the watched directory refused at start",
            extra={"fields": {"path": str(path), "error": error}},
        )

    async def _act(self, path: Path) -> str:
        """Load `path` and activate (or shadow) it; its version, or "" when refused."""
        if self.registry.closing:
            return ""
        try:
            entry, _ = await self.registry.load(path)
            if self.action == "shadow":
                await self.registry.start_shadow(entry.version, None)
            else:
                await self.registry.activate(entry.version)
            self.loaded += 1
            log.info(
                "watched bundle applied",
                extra={
                    "fields": {"path": str(path), "version": entry.version, "action": self.action}
                },
            )
        except AdminError as e:
            self.rejected += 1
            self.last_error = f"{path.name}: {e.message}"
            return ""
        return entry.version

    def status(self) -> dict[str, object]:
        return {
            "enabled": True,
            "dir": str(self.directory),
            "action": self.action,
            "scans": self.scans,
            "loaded": self.loaded,
            "rejected": self.rejected,
            "last_error": self.last_error,
        }
