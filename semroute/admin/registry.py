"""The registry of loaded bundles: load off the hot path, swap atomically, roll back, release.

Loading (unpack, verify every checksum and the encoder, build the routing
state, warm it with a few real decisions) runs on a dedicated thread; the
serving path never waits for it and never sees a partly built state, because
a state becomes visible only through `Router.swap`, one reference assignment,
after it is complete. Requests capture the state once, so those in flight
finish on the index they started with; a released state is freed when the
last of them finishes (tracked with weak references, reported as draining).

All public methods run on the event loop; only `_load_sync` runs elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import time
import weakref
from collections import OrderedDict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from semroute import atomic
from semroute.admin import bundles
from semroute.admin.shadow import ShadowEvaluator
from semroute.bundle import BundleError, read_manifest
from semroute.config import AdminSpec, Config, ConfigError, load_config
from semroute.decision_cache import cache_key
from semroute.messages import cache_template, decision_to_proto
from semroute.router import Embedding, Router, RoutingState
from semroute.types import RouteQuery, RoutingError

log = logging.getLogger("semroute.admin")

# Decisions run on a new state before it may be activated: they exercise the
# index, the rules and the policy, and warm their code paths.
WARM_PROMPTS = (
    "hi there!",
    "what are your opening hours?",
    "summarize this report in three bullet points",
    "translate this paragraph into French",
    "write a python function that parses a CSV file",
    "why does my code throw a null pointer exception?",
    "prove that the square root of two is irrational",
    "design a sharded, replicated key-value store with exactly-once semantics",
)
MAX_HISTORY = 32
# Hot requests taken from the decision cache per primed key (several requests,
# differing only in id or tenant, share a key), texts embedded per encoder pass
# while priming, and embeddings always kept for the next swap.
PRIME_OVERSAMPLE = 4
PRIME_BATCH = 32
EMBED_MEMO_MIN = 1024
# Pause between decisions made while loading: each holds the GIL for ~0.2 ms,
# and without a real pause the loader keeps the GIL for whole 5 ms switch
# intervals, which the event loop serving requests feels as latency.
YIELD_S = 0.0002


def _yield_gil() -> None:
    time.sleep(YIELD_S)


class AdminError(Exception):
    """A refused admin operation; `code` is a grpc.StatusCode name."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def read_state(path: Path) -> dict[str, str] | None:
    """The bundle a state file records ({"version", "path"}), or None (none, or unreadable)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not all(
        isinstance(data.get(k), str) and data.get(k) for k in ("version", "path")
    ):
        return None
    return {"version": data["version"], "path": data["path"]}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Primer(Protocol):
    """The serving pipeline as a swap sees it: which requests are hot, and where decisions
    prepared for the new version go (`semroute.pipeline.Pipeline` implements it)."""

    def hot_requests(self, n: int) -> list[RouteQuery]: ...

    def prime(self, entries: Iterable[tuple[bytes, bytes, RouteQuery]]) -> None: ...


@dataclass
class Entry:
    """A bundle the server knows; `state` is None once released."""

    version: str
    kind: str
    source: Path
    manifest: dict[str, Any]
    config: Config
    self_contained: bool
    state: RoutingState | None
    load_ms: float = 0.0
    loaded_at: str = ""
    index_bytes: int = 0
    seq: int = field(default=0)
    # Decision-cache entries (key, value, request) of this state for the hot
    # requests, inserted when it is activated.
    primed: list[tuple[bytes, bytes, RouteQuery]] = field(default_factory=list)


class IndexRegistry:
    def __init__(
        self,
        router: Router,
        base_config: Config,
        spec: AdminSpec,
        shadow: ShadowEvaluator,
        *,
        staging_root: Path | None = None,
    ) -> None:
        self.router = router
        self.base_config = base_config
        self.spec = spec
        self.shadow = shadow
        self.staging_root = staging_root or bundles.default_staging_root()
        if removed := bundles.clean_staging(self.staging_root):
            log.info("removed staging left by killed loads", extra={"fields": {"dirs": removed}})
        self.entries: OrderedDict[str, Entry] = OrderedDict()
        self.active = ""
        self.history: list[str] = []
        self.swaps = 0
        self.last_swap_at = ""
        self.rejected = 0
        self.last_error = ""
        self.closing = False
        self._retired: dict[str, weakref.ref[RoutingState]] = {}
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="semroute-admin")
        self._load_lock = asyncio.Lock()
        self._switch_lock = asyncio.Lock()
        self._seq = 0
        self._warm_embeddings: list[Any] | None = None
        # The serving pipeline's hot requests and decision cache (set by Admin.attach).
        self.primer: Primer | None = None
        self._embeddings: OrderedDict[str, Embedding] = OrderedDict()  # admin thread only
        # Where the active bundle is recorded after each swap (set by Admin.restore).
        self.state_file: Path | None = None

    # --- queries ----------------------------------------------------------------------

    @property
    def previous(self) -> str:
        return self.history[-1] if self.history else ""

    @property
    def shadow_version(self) -> str:
        run = self.shadow.run
        return run.version if run is not None else ""

    def state_of(self, version: str) -> str:
        """ACTIVE, SHADOW, PREVIOUS, STANDBY or UNLOADED."""
        e = self.entries[version]
        if version == self.active:
            return "ACTIVE"
        if version == self.shadow_version:
            return "SHADOW"
        if e.state is None:
            return "UNLOADED"
        return "PREVIOUS" if version == self.previous else "STANDBY"

    def loaded_count(self) -> int:
        return sum(e.state is not None for e in self.entries.values())

    def draining(self) -> list[str]:
        """Versions released here but still held by requests (or evaluations) in flight."""
        self._retired = {v: r for v, r in self._retired.items() if r() is not None}
        return sorted(self._retired)

    # --- lifecycle --------------------------------------------------------------------

    def adopt(self, source: Path) -> Entry:
        """Register the state the server started with as the active bundle."""
        state = self.router.state
        version = state.index.version
        try:
            manifest = bundles.peek_manifest(source)
        except BundleError:
            manifest = {}
        if manifest.get("version") != version:
            manifest = {"version": version, "kind": bundles.ROUTES_KIND}
        entry = self._entry(version, manifest, Path(source), state.config, False, state)
        entry.index_bytes = bundles._faiss_bytes(state.index.index)
        self.entries[version] = entry
        self.active = version
        return entry

    def close(self) -> None:
        """Shutdown began: refuse every further change and stop shadowing."""
        self.closing = True
        self.shadow.stop()
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _check_open(self) -> None:
        if self.closing:
            raise AdminError("UNAVAILABLE", "the server is shutting down; index changes refused")

    # --- load -------------------------------------------------------------------------

    async def load(
        self, path: str | Path, config_path: str | Path | None = None
    ) -> tuple[Entry, bool]:
        """Load, verify and warm a bundle off the hot path; returns (entry, already_loaded).

        Nothing changes for the serving path: activation is a separate step.
        """
        self._check_open()
        source = Path(path).expanduser()
        if not source.is_absolute():
            source = source.resolve()
        if not source.exists():
            raise self._reject("NOT_FOUND", f"{source}: no such bundle directory or archive")
        async with self._load_lock:
            self._check_open()
            routing = self.router.state.config
            recent = self._hot()
            loop = asyncio.get_running_loop()
            try:
                entry, already = await loop.run_in_executor(
                    self._executor, self._load_sync, source, config_path, routing, recent
                )
            except AdminError as e:
                raise self._reject(e.code, e.message) from None
            except (BundleError, ConfigError) as e:
                raise self._reject("FAILED_PRECONDITION", f"bundle refused: {e}") from None
            except RuntimeError as e:
                if self.closing:
                    raise AdminError("UNAVAILABLE", "the server is shutting down") from None
                raise self._reject("FAILED_PRECONDITION", f"bundle refused: {e}") from None
            except Exception as e:  # faiss, numpy, yaml: any unreadable content
                raise self._reject(
                    "FAILED_PRECONDITION", f"bundle refused: {type(e).__name__}: {e}"
                ) from None
            self._check_open()
            if not already:
                self.entries[entry.version] = entry
                self.entries.move_to_end(entry.version)
                self._trim(loading=entry.version)
                log.info(
                    "bundle loaded",
                    extra={
                        "fields": {
                            "version": entry.version,
                            "path": str(source),
                            "load_ms": round(entry.load_ms, 1),
                            "self_contained": entry.self_contained,
                        }
                    },
                )
            return entry, already

    def _load_sync(
        self,
        source: Path,
        config_path: str | Path | None,
        routing: Config,
        recent: list[RouteQuery] | None = None,
    ) -> tuple[Entry, bool]:
        t0 = time.perf_counter()
        staged: Path | None = None
        try:
            bundle_dir = source
            if source.is_file():
                if not bundles.is_archive(source):
                    raise BundleError(f"{source}: neither a bundle directory nor a .tar.gz")
                bundle_dir = bundles.unpack_archive(
                    source, self.staging_root, self.spec.max_archive_bytes
                )
                staged = bundles.staging_dir_of(bundle_dir, self.staging_root)
            peek = bundles.peek_manifest(bundle_dir)
            known = self.entries.get(peek["version"])
            if known is not None and known.state is not None:
                bundles.check_same_files(bundle_dir, peek, known.manifest)
                return known, True
            loader = bundles.loader_for(peek.get("kind"))
            enc = self.router.encoder
            manifest = read_manifest(bundle_dir, kind=loader.kind, encoder_id=enc.id, dim=enc.dim)
            if config_path:
                routing = load_config(config_path)
            elif known is not None:
                routing = known.config  # a reload decides with the config it had
            ctx = bundles.LoadContext(
                encoder=enc,
                static_encoder=getattr(self.router, "static_encoder", None),
                base_config=self.base_config,
                routing_config=routing,
            )
            loaded = loader.load(bundle_dir, manifest, ctx)
            if loaded.state.index.version != manifest["version"]:
                raise BundleError(f"{source}: the index version differs from the manifest's")
            self._warm(loaded.state)
            entry = self._entry(
                manifest["version"],
                manifest,
                source,
                loaded.config,
                loaded.self_contained,
                loaded.state,
            )
            entry.index_bytes = loaded.index_bytes
            entry.primed = self._prime(loaded.state, recent or [])
            entry.load_ms = (time.perf_counter() - t0) * 1000
            return entry, False
        finally:
            if staged is not None:
                shutil.rmtree(staged, ignore_errors=True)

    def _warm(self, state: RoutingState) -> None:
        """Decide a few prompts on the new state: it must work end to end before it serves."""
        router = self.router
        if self._warm_embeddings is None:
            self._warm_embeddings = [router.encode(p) for p in WARM_PROMPTS]
        for prompt, emb in zip(WARM_PROMPTS, self._warm_embeddings, strict=True):
            _yield_gil()
            d = router.route(RouteQuery(text=prompt), state, lambda e=emb: e)
            if d.index_version != state.index.version or not d.model:
                raise BundleError("warm-up decision came out inconsistent; bundle refused")

    def _hot(self) -> list[RouteQuery]:
        """The requests behind the most recently used decision-cache entries (on the loop).

        More than `prime_cache` are taken: several may share one cache key."""
        if self.primer is None or not self.spec.prime_cache:
            return []
        return self.primer.hot_requests(PRIME_OVERSAMPLE * self.spec.prime_cache)

    def _prime(
        self,
        state: RoutingState,
        queries: list[RouteQuery],
        skip: frozenset[bytes] = frozenset(),
    ) -> list[tuple[bytes, bytes, RouteQuery]]:
        """The state's decisions for the hot requests (up to `prime_cache` distinct cache
        keys, those in `skip` aside), as decision-cache entries.

        Without them, the hot requests all miss the cache after a swap (its key
        holds the index version) and reach the encoder at once: on a slow CPU its
        expected wait then trips admission and cache hits turn into refusals.
        """
        if not queries:
            return []

        todo: dict[bytes, RouteQuery] = {}
        for q in queries:
            if len(todo) >= self.spec.prime_cache:
                break
            try:
                key = cache_key(q, state.policy.knob(q), state.config.version, state.index.version)
            except RoutingError:
                continue
            if key not in skip:
                todo.setdefault(key, q)
        router = self.router
        memo = self._embeddings
        needed = dict.fromkeys(q.text for q in todo.values())
        for text in needed:
            if text in memo:
                memo.move_to_end(text)
        missing = [t for t in needed if t not in memo]
        for i in range(0, len(missing), PRIME_BATCH):
            chunk = missing[i : i + PRIME_BATCH]
            rows = router.encoder.encode(chunk)
            for j, text in enumerate(chunk):
                memo[text] = (rows[j : j + 1], 0)
        while len(memo) > max(4 * len(needed), EMBED_MEMO_MIN):  # needed ones are the newest
            memo.popitem(last=False)
        out = []
        for key, q in todo.items():
            _yield_gil()
            try:
                d = router.route(q, state, lambda t=q.text: memo[t])
            except RoutingError:
                continue
            out.append((key, cache_template(decision_to_proto(d)), q))
        return out

    async def _prime_rest(self, entry: Entry) -> None:
        """Before `entry` is activated: prime the hot requests its load did not (those
        that became hot since, or all of them when it was loaded and activated before)."""
        hot = self._hot()
        if not hot or entry.state is None:
            return
        done = frozenset(k for k, _, _ in entry.primed)
        loop = asyncio.get_running_loop()
        try:
            more = await loop.run_in_executor(self._executor, self._prime, entry.state, hot, done)
        except RuntimeError:  # the executor shut down: the server is stopping
            self._check_open()
            raise
        entry.primed.extend(more)

    def _entry(
        self,
        version: str,
        manifest: dict[str, Any],
        source: Path,
        config: Config,
        self_contained: bool,
        state: RoutingState,
    ) -> Entry:
        self._seq += 1
        return Entry(
            version=version,
            kind=str(manifest.get("kind", "")),
            source=source,
            manifest=manifest,
            config=config,
            self_contained=self_contained,
            state=state,
            loaded_at=_now(),
            seq=self._seq,
        )

    def _reject(self, code: str, message: str) -> AdminError:
        self.rejected += 1
        self.last_error = message
        log.warning("bundle refused", extra={"fields": {"code": code, "error": message}})
        return AdminError(code, message)

    # --- activation -------------------------------------------------------------------

    async def _ensure_loaded(self, version: str) -> Entry:
        entry = self.entries.get(version)
        if entry is None:
            known = ", ".join(self.entries) or "none"
            raise AdminError("NOT_FOUND", f"no bundle {version!r} loaded (known: {known})")
        if entry.state is None:  # released earlier: reload it from where it came from
            entry, _ = await self.load(entry.source)
            if entry.version != version:
                raise AdminError(
                    "FAILED_PRECONDITION",
                    f"{entry.source} now holds {entry.version}, not {version}",
                )
        return entry

    async def activate(self, version: str) -> tuple[str, str, float]:
        """Make `version` active (one atomic swap); returns (active, previous, swap ms)."""
        t0 = time.perf_counter()
        self._check_open()
        async with self._switch_lock:
            entry = await self._ensure_loaded(version)
            self._check_open()
            if version != self.active:
                await self._prime_rest(entry)
                self._check_open()
                self._swap(entry, push=True)
                await self._record(entry)
        return self.active, self.previous, (time.perf_counter() - t0) * 1000

    async def rollback(self, to_version: str = "") -> tuple[str, str]:
        """Re-activate the version active before the current one (or `to_version`)."""
        self._check_open()
        async with self._switch_lock:
            target = to_version or self.previous
            if not target:
                raise AdminError("FAILED_PRECONDITION", "nothing to roll back to")
            if target == self.active:
                raise AdminError("FAILED_PRECONDITION", f"{target} is already active")
            entry = await self._ensure_loaded(target)
            self._check_open()
            await self._prime_rest(entry)
            self._check_open()
            current = self.active
            self._swap(entry, push=False)
            await self._record(entry)
            for i in range(len(self.history) - 1, -1, -1):
                if self.history[i] == target:
                    del self.history[i]
                    break
            self._trim()
            return self.active, current

    async def _record(self, entry: Entry) -> None:
        """Write the active bundle to `state_file` (atomically, off the loop); a failure
        is logged, never undoes the swap."""
        if self.state_file is None:
            return
        data = json.dumps({"version": entry.version, "path": str(entry.source)}).encode()
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(None, atomic.write_bytes, self.state_file, data)
        except OSError as e:
            log.warning("cannot record the active bundle", extra={"fields": {"error": str(e)}})

    def _swap(self, entry: Entry, *, push: bool) -> None:
        assert entry.state is not None
        old = self.active
        if self.primer is not None:  # keyed by the new version: invisible until the swap
            self.primer.prime(entry.primed)
        primed, entry.primed = len(entry.primed), []
        self.router.swap(entry.state)  # the only change the serving path sees
        self.active = entry.version
        if push and old:
            kept = [v for v in self.history if v != old][-(MAX_HISTORY - 1) :]
            self.history = [*kept, old]
        if self.shadow_version == entry.version:
            self.shadow.stop()  # promoted: its figures were the evidence
        self.swaps += 1
        self.last_swap_at = _now()
        log.info(
            "index activated",
            extra={
                "fields": {
                    "version": entry.version,
                    "previous": old,
                    "swaps": self.swaps,
                    "primed": primed,
                }
            },
        )
        self._trim()

    async def start_shadow(self, version: str, rate: float | None) -> None:
        self._check_open()
        async with self._switch_lock:
            if version == self.active:
                raise AdminError("FAILED_PRECONDITION", f"{version} is the active index")
            entry = await self._ensure_loaded(version)
            self._check_open()
            assert entry.state is not None
            rate = self.spec.shadow_sample_rate if rate is None else rate
            if not 0.0 <= rate <= 1.0:
                raise AdminError("INVALID_ARGUMENT", "shadow_sample_rate must be within 0-1")
            self.shadow.start(version, entry.state, rate)
            log.info("shadow started", extra={"fields": {"version": version, "rate": rate}})

    def stop_shadow(self) -> dict[str, Any] | None:
        return self.shadow.stop()

    # --- release ----------------------------------------------------------------------

    def unload(self, version: str) -> bool:
        """Release a loaded bundle; True when its memory is already free (nothing in flight)."""
        entry = self.entries.get(version)
        if entry is None:
            raise AdminError("NOT_FOUND", f"no bundle {version!r}")
        if version == self.active:
            raise AdminError("FAILED_PRECONDITION", f"{version} is active; activate another first")
        if version == self.shadow_version:
            raise AdminError("FAILED_PRECONDITION", f"{version} is shadowed; StopShadow first")
        self._release(entry)
        return version not in self.draining()

    def _release(self, entry: Entry) -> None:
        state, entry.state = entry.state, None
        entry.loaded_at = ""
        entry.primed = []
        if state is not None:
            # A state type without weak references: nothing to track.
            with contextlib.suppress(TypeError):
                self._retired[entry.version] = weakref.ref(state)
            del state
            log.info("bundle released", extra={"fields": {"version": entry.version}})

    def _trim(self, loading: str = "") -> None:
        """Release bundles beyond what is kept: the previous one unless keep_previous, then
        the oldest unused ones past max_loaded; forget released ones past the history.

        `loading` (just loaded, maybe to be activated or rolled back to) is kept too:
        releasing it here would hand its caller an unloaded entry.
        """
        keep = {self.active, self.shadow_version, loading}
        if self.spec.keep_previous:
            keep.add(self.previous)
        loaded = [e for e in self.entries.values() if e.state is not None and e.version not in keep]
        if not self.spec.keep_previous and self.previous and self.previous not in keep:
            prev = self.entries.get(self.previous)
            if prev is not None and prev.state is not None:
                self._release(prev)
                loaded = [e for e in loaded if e is not prev]
        excess = self.loaded_count() - self.spec.max_loaded
        for e in sorted(loaded, key=lambda e: e.seq)[: max(0, excess)]:
            self._release(e)
        remembered = set(self.history) | keep
        unloaded = [
            e for e in self.entries.values() if e.state is None and e.version not in remembered
        ]
        for e in unloaded[: max(0, len(self.entries) - 4 * self.spec.max_loaded)]:
            del self.entries[e.version]

    # --- reporting --------------------------------------------------------------------

    def info(self, entry: Entry) -> dict[str, Any]:
        m = entry.manifest
        return {
            "version": entry.version,
            "kind": entry.kind,
            "state": self.state_of(entry.version),
            "path": str(entry.source),
            "encoder_id": str(m.get("encoder_id", self.router.encoder.id)),
            "dim": int(m.get("dim", self.router.encoder.dim) or 0),
            "created_at": str(m.get("created_at", "")),
            "config_version": entry.config.version,
            "entries": int(m.get("count", 0) or 0),
            "eval": bundles.eval_figures(m),
            "load_ms": entry.load_ms,
            "loaded_at": entry.loaded_at,
            "index_bytes": entry.index_bytes if entry.state is not None else 0,
            "self_contained": entry.self_contained,
            "primed_decisions": len(entry.primed),
        }
