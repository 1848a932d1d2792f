"""Metrics: recorded in the serving core, exposed as Prometheus text in one place.

Recording (`Recorder`) is plain Python on the event loop: int counters, dicts
keyed by bounded labels, and histograms as preallocated lists indexed by
`bisect` on precomputed bounds. A prometheus-client `labels().inc()` or
`observe()` costs microseconds (locks, label lookups); the cached-bytes hit path
costs a few microseconds in all, so it must not pay that per request. A cache
hit records its decision by the cached template's bytes (one dict increment);
the template is parsed into route, model and reason labels only when folded,
off the request path, once per distinct template.

Exposition (`serve`, `SnapshotCollector`) turns a `Snapshot` (a plain,
JSON-able dict) into metric families when Prometheus scrapes:

- one process: the scrape thread asks the event loop for a snapshot (taken on
  the loop, so it never races the request path) and reads the live router's
  versions then, so the info metric follows hot swaps at once;
- `--workers N`: each worker writes its snapshot to its own file in a directory
  the parent made, every `metrics.snapshot_interval_s` (1 s) and on shutdown;
  the parent serves `/metrics` with the sum over the files. prometheus-client's
  own multiprocess mode (PROMETHEUS_MULTIPROC_DIR) would put an mmap write and a
  lock behind every `inc()`/`observe()`, on the hot path, and does not carry
  custom collectors' values across processes; a per-worker snapshot file keeps
  the hot path plain and costs one small write per worker per second. Counters
  of a worker that has exited stay in the sum; its gauges and versions drop out
  once its file is older than `STALE_INTERVALS` intervals. Sums lag by up to one
  interval.

Labels stay bounded: route and model names come from the config, reason, tier,
cache and cause from fixed sets; never request ids, tenants or prompt text.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import os
import tempfile
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator
from pathlib import Path
from time import perf_counter_ns
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIServer

from semroute.v1 import router_pb2 as pb

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from semroute.router import Router

log = logging.getLogger("semroute.metrics")

# Decision latency bucket bounds (seconds): a cache hit takes a few µs, an encoder pass ms.
LATENCY_BOUNDS_S = (
    25e-6, 50e-6, 100e-6, 250e-6, 500e-6,
    1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 1.0,
)  # fmt: skip
_LATENCY_BOUNDS_NS = tuple(round(b * 1e9) for b in LATENCY_BOUNDS_S)
BATCH_BOUNDS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

# Caches counted (index into the hit and miss lists).
WIRE, DECISION, SIMILAR, RESPONSE = range(4)
CACHES = ("wire", "decision", "similar", "response")

# Why a Route call was not answered. RESOURCE_EXHAUSTED is counted where its cause
# is known (the concurrency limit in the pipeline, the encoder's admission in the
# batcher), every other failure by its status code; `malformed` is the transport's.
OVERLOAD = "overload"
QUEUE_FULL = "encoder_queue_full"
SATURATED = "encoder_saturated"
DEADLINE = "deadline"
LOADING = "loading"
INTERNAL = "internal"
MALFORMED = "malformed"
_CODE_CAUSES = {
    "INVALID_ARGUMENT": "invalid_argument",
    "FAILED_PRECONDITION": "no_eligible_model",
    "UNAVAILABLE": LOADING,
    "INTERNAL": INTERNAL,
}
CAUSES = (
    OVERLOAD, QUEUE_FULL, SATURATED, DEADLINE, LOADING,
    "invalid_argument", "no_eligible_model", INTERNAL, MALFORMED, "other",
)  # fmt: skip

_TIERS = {v.number: v.name.removeprefix("TIER_").lower() for v in pb.Tier.DESCRIPTOR.values}
_REASONS = {
    v.number: v.name.removeprefix("DECISION_REASON_").lower()
    for v in pb.DecisionReason.DESCRIPTOR.values
}
_CACHE_TIER = pb.TIER_CACHE
# Distinct cached templates whose labels are remembered between folds.
MAX_KNOWN_TEMPLATES = 4096
# A worker's gauges and versions count while its snapshot is this many intervals old.
STALE_INTERVALS = 5

# What one process (or the sum over workers) reports; JSON-able.
Snapshot = dict[str, Any]


class Recorder:
    """Counts decisions, latencies, cache results, refusals and batch sizes.

    Every method runs on the event loop (or the batcher's callbacks on it) and
    costs a few hundred nanoseconds at most; nothing here locks or formats.
    """

    def __init__(self) -> None:
        self._latency = [[0] * (len(LATENCY_BOUNDS_S) + 1) for _ in range(max(_TIERS) + 1)]
        self._latency_ns = [0] * (max(_TIERS) + 1)
        self._cache_latency = self._latency[pb.TIER_CACHE]
        self._hits = [0] * len(CACHES)
        self._misses = [0] * len(CACHES)
        self._refusals = dict.fromkeys(CAUSES, 0)
        self._batches = [0] * (len(BATCH_BOUNDS) + 1)
        self._batch_texts = 0
        # (route, model, reason, tier) -> decisions, folded; and cache hits by template.
        self._decisions: dict[tuple[str, str, int, int], int] = {}
        self._hit_templates: dict[bytes, int] = {}
        self._known: dict[bytes, tuple[str, str, int, int]] = {}

    # --- the request path ---------------------------------------------------------------

    def cache_hit(self, cache: int, template: bytes, t0: int) -> None:
        """A decision answered from `cache` with the cached `template` (tier cache)."""
        self._hits[cache] += 1
        hits = self._hit_templates
        hits[template] = hits.get(template, 0) + 1
        dt = perf_counter_ns() - t0
        self._cache_latency[bisect_left(_LATENCY_BOUNDS_NS, dt)] += 1
        self._latency_ns[_CACHE_TIER] += dt

    def cache_miss(self, cache: int) -> None:
        self._misses[cache] += 1

    def cache_result(self, cache: int, hit: bool) -> None:
        """A lookup whose hit is counted as a decision elsewhere (or is no decision)."""
        if hit:
            self._hits[cache] += 1
        else:
            self._misses[cache] += 1

    def decided(self, decision: pb.RouteDecision, t0: int) -> None:
        """A decision made (not replayed from the decision cache), `t0` its request's start."""
        tier = decision.tier
        key = (decision.route, decision.model, decision.reason, tier)
        self._decisions[key] = self._decisions.get(key, 0) + 1
        dt = perf_counter_ns() - t0
        self._latency[tier][bisect_left(_LATENCY_BOUNDS_NS, dt)] += 1
        self._latency_ns[tier] += dt

    def refused(self, cause: str) -> None:
        self._refusals[cause] += 1

    def failed(self, code: str) -> None:
        """A RoutingError by its status code; RESOURCE_EXHAUSTED was counted by its cause."""
        if code != "RESOURCE_EXHAUSTED":
            self._refusals[_CODE_CAUSES.get(code, "other")] += 1

    def batch(self, size: int) -> None:
        self._batches[bisect_left(BATCH_BOUNDS, size)] += 1
        self._batch_texts += size

    # --- off the request path -----------------------------------------------------------

    def fold(self) -> None:
        """Move cache hits counted by template into the decision counts (labels parsed
        once per distinct template); bounds the memory the hit path uses."""
        hits, self._hit_templates = self._hit_templates, {}
        known = self._known
        for template, n in hits.items():
            key = known.get(template)
            if key is None:
                d = pb.RouteDecision.FromString(template)
                key = (d.route, d.model, d.reason, pb.TIER_CACHE)
                if len(known) >= MAX_KNOWN_TEMPLATES:
                    known.clear()
                known[template] = key
            self._decisions[key] = self._decisions.get(key, 0) + n

    def snapshot(
        self,
        *,
        queue_depth: int = 0,
        malformed: int = 0,
        versions: dict[str, str] | None = None,
        ext_proc: dict[str, int] | None = None,
    ) -> Snapshot:
        """Everything counted so far, with the process's gauges and active versions."""
        self.fold()
        refusals = dict(self._refusals)
        refusals[MALFORMED] += malformed
        return {
            "time": time.time(),
            "processes": 1,
            "decisions": [
                [route, model, _REASONS.get(reason, str(reason)), _TIERS.get(tier, str(tier)), n]
                for (route, model, reason, tier), n in self._decisions.items()
            ],
            "latency": {
                _TIERS[t]: {"buckets": list(b), "sum_s": self._latency_ns[t] / 1e9}
                for t, b in enumerate(self._latency)
                if t in _TIERS and t != pb.TIER_UNSPECIFIED
            },
            "cache_hits": dict(zip(CACHES, self._hits, strict=True)),
            "cache_misses": dict(zip(CACHES, self._misses, strict=True)),
            "refusals": refusals,
            "batch_sizes": {"buckets": list(self._batches), "sum": self._batch_texts},
            "queue_depth": queue_depth,
            "versions": [versions] if versions else [],
            # Envoy ext_proc requests by outcome (routed, or why they passed through).
            "ext_proc": dict(ext_proc or {}),
        }


class NullRecorder(Recorder):
    """What the core calls when metrics are off: every record is a no-op."""

    def cache_hit(self, cache: int, template: bytes, t0: int) -> None:
        pass

    def cache_miss(self, cache: int) -> None:
        pass

    def cache_result(self, cache: int, hit: bool) -> None:
        pass

    def decided(self, decision: pb.RouteDecision, t0: int) -> None:
        pass

    def refused(self, cause: str) -> None:
        pass

    def failed(self, code: str) -> None:
        pass

    def batch(self, size: int) -> None:
        pass


NULL_RECORDER = NullRecorder()


def router_versions(router: Router | None) -> dict[str, str] | None:
    """The versions deciding now (read at snapshot time, so hot swaps show at once)."""
    if router is None:
        return None
    state = router.state
    return {
        "index_version": state.index.version,
        "config_version": state.config.version,
        "classifier_version": state.classifier.version if state.classifier else "",
        "encoder_id": router.encoder.id,
    }


# --- several processes ------------------------------------------------------------------


def merge(snapshots: list[Snapshot], stale_before: float = 0.0) -> Snapshot:
    """The sum of workers' snapshots. Counters always add up (an exited worker's
    count does not vanish); gauges and versions only from snapshots newer than
    `stale_before` (unix time)."""
    out = Recorder().snapshot()
    out["processes"] = 0
    decisions: dict[tuple[str, str, str, str], int] = {}
    for s in snapshots:
        for *labels, n in s["decisions"]:
            key = tuple(labels)
            decisions[key] = decisions.get(key, 0) + n  # type: ignore[index]
        for tier, h in s["latency"].items():
            mine = out["latency"].setdefault(tier, {"buckets": [0] * len(h["buckets"]), "sum_s": 0})
            mine["buckets"] = _add(mine["buckets"], h["buckets"])
            mine["sum_s"] += h["sum_s"]
        for field in ("cache_hits", "cache_misses", "refusals", "ext_proc"):
            for k, n in s.get(field, {}).items():
                out[field][k] = out[field].get(k, 0) + n
        batches = out["batch_sizes"]
        batches["buckets"] = _add(batches["buckets"], s["batch_sizes"]["buckets"])
        batches["sum"] += s["batch_sizes"]["sum"]
        if s["time"] >= stale_before:
            out["processes"] += 1
            out["queue_depth"] += s["queue_depth"]
            out["versions"].extend(v for v in s["versions"] if v not in out["versions"])
    out["decisions"] = [[*k, n] for k, n in decisions.items()]
    return out


def _add(a: list[int], b: list[int]) -> list[int]:
    return [x + y for x, y in zip(a, b, strict=True)]


def write_snapshot(directory: Path, snapshot: Snapshot) -> None:
    """Replace this process's snapshot file (renamed into place: a reader sees a whole one)."""
    path = directory / f"worker-{os.getpid()}.json"
    fd, tmp = tempfile.mkstemp(prefix=".snapshot-", dir=directory)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(snapshot, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_snapshots(directory: Path, interval_s: float) -> Snapshot:
    """The sum of the workers' snapshot files in `directory`."""
    snapshots = []
    for p in directory.glob("worker-*.json"):
        try:
            snapshots.append(json.loads(p.read_text()))
        except (OSError, ValueError) as e:  # replaced while read: the next scrape has it
            log.warning("unreadable metrics snapshot %s: %s", p.name, e)
    return merge(snapshots, stale_before=time.time() - STALE_INTERVALS * interval_s)


async def write_periodically(
    directory: Path, interval_s: float, snapshot: Callable[[], Snapshot]
) -> None:
    """A worker's loop: its snapshot to `directory` every `interval_s` (taken on the
    event loop, written from the default executor)."""
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(interval_s)
        try:
            await loop.run_in_executor(None, write_snapshot, directory, snapshot())
        except OSError as e:
            log.warning("cannot write metrics snapshot: %s", e)


async def fold_periodically(recorder: Recorder, interval_s: float) -> None:
    """One process with no scrapes for a while still folds, so cache hits counted by
    template never pile up."""
    while True:
        await asyncio.sleep(interval_s)
        recorder.fold()


def on_loop(loop: asyncio.AbstractEventLoop, fn: Callable[[], Snapshot]) -> Callable[[], Snapshot]:
    """`fn` called from another thread (the scrape's) but run on `loop`."""

    def call() -> Snapshot:
        done: concurrent.futures.Future[Snapshot] = concurrent.futures.Future()

        def run() -> None:
            try:
                done.set_result(fn())
            except BaseException as e:
                done.set_exception(e)

        loop.call_soon_threadsafe(run)
        return done.result(timeout=10)

    return call


# --- exposition -------------------------------------------------------------------------


class SnapshotCollector:
    """prometheus-client collector over a snapshot taken when scraped."""

    def __init__(self, source: Callable[[], Snapshot]) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
            InfoMetricFamily,
        )

        s = self._source()
        decisions = CounterMetricFamily(
            "semroute_decisions",
            "Route decisions answered, by route, model, reason and tier (cache: replayed).",
            labels=("route", "model", "reason", "tier"),
        )
        for route, model, reason, tier, n in s["decisions"]:
            decisions.add_metric((route, model, reason, tier), n)
        yield decisions

        latency = HistogramMetricFamily(
            "semroute_decision_latency_seconds",
            "Time from a Route request reaching the pipeline to its decision, by tier.",
            labels=("tier",),
        )
        for tier, h in s["latency"].items():
            latency.add_metric((tier,), _cumulative(LATENCY_BOUNDS_S, h["buckets"]), h["sum_s"])
        yield latency

        for field, what in (("cache_hits", "hits"), ("cache_misses", "misses")):
            family = CounterMetricFamily(
                f"semroute_cache_{what}",
                f"Cache {what} by cache (wire: exact request bytes; decision: normalised "
                "request; similar: near-identical prompt; response: LookupResponse).",
                labels=("cache",),
            )
            for cache, n in s[field].items():
                family.add_metric((cache,), n)
            yield family

        refusals = CounterMetricFamily(
            "semroute_refusals",
            "Route calls not answered, by cause (malformed: undecodable bodies, any service).",
            labels=("cause",),
        )
        for cause, n in s["refusals"].items():
            refusals.add_metric((cause,), n)
        yield refusals

        yield GaugeMetricFamily(
            "semroute_encoder_queue_depth",
            "Texts waiting for or in the encoder.",
            value=s["queue_depth"],
        )
        batches = HistogramMetricFamily(
            "semroute_encoder_batch_size", "Texts per encoder run (micro-batches)."
        )
        b = s["batch_sizes"]
        batches.add_metric((), _cumulative(BATCH_BOUNDS, b["buckets"]), b["sum"])
        yield batches

        ext_proc = CounterMetricFamily(
            "semroute_ext_proc_requests",
            "Envoy ext_proc requests by outcome: routed, or why they passed through unchanged.",
            labels=("outcome",),
        )
        for outcome, n in s.get("ext_proc", {}).items():
            ext_proc.add_metric((outcome,), n)
        yield ext_proc

        info = InfoMetricFamily(
            "semroute_routing",
            "The active index, config, classifier and encoder (one series per combination "
            "that a live process serves).",
        )
        for v in s["versions"]:
            info.add_metric((), v)
        yield info
        yield GaugeMetricFamily(
            "semroute_processes",
            "Server processes whose counts this scrape holds live gauges of.",
            value=s["processes"],
        )


def _cumulative(bounds: tuple[float, ...], counts: list[int]) -> list[tuple[str, float]]:
    """Per-bucket counts (the last is +Inf) as Prometheus' cumulative buckets."""
    from prometheus_client.utils import floatToGoString

    out, total = [], 0
    for bound, n in zip((*bounds, float("inf")), counts, strict=True):
        total += n
        out.append((floatToGoString(bound), total))
    return out


def serve(host: str, port: int, source: Callable[[], Snapshot]) -> WSGIServer:
    """Serve `/metrics` (Prometheus text) on a thread; returns the server to shut down."""
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(source))  # type: ignore[arg-type]
    server, _ = start_http_server(port, addr=host, registry=registry)
    log.info("metrics", extra={"fields": {"url": f"http://{host}:{port}/metrics"}})
    return server
