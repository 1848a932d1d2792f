"""One client process: its own event loop (uvloop), gRPC channel, prompt shard and histograms.

A Python grpc.aio client costs about as much CPU per call as the server it
measures, so one process cannot load a server; the parent runs several of these
and merges what they send back. Every process works on the same timeline
(``t0_ns`` on CLOCK_MONOTONIC, shared by all processes of the machine):
warm-up until ``t0 + warmup``, then measurement until ``t0 + warmup + duration``
or until its share of the request budget is spent, whichever comes first.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import resource
import time
import traceback
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from typing import Any

import grpc

from benchmarks.loadgen import hist
from benchmarks.loadgen.senders import ItemFailed, make_sender, pushback_s
from benchmarks.prompts import PromptMix, RequestFactory, load_pool
from semroute.v1 import router_pb2, router_pb2_grpc

now_ns = time.monotonic_ns


def _is_repeated(f: Any) -> bool:
    """protobuf >= 5.28 has is_repeated; older versions only the (since removed) label."""
    if hasattr(f, "is_repeated"):
        return bool(f.is_repeated)
    return bool(f.label == f.LABEL_REPEATED)


# Decision fields worth tallying if the server sets them: cache / tier flags are
# picked up by name so the report follows the proto as it grows.
_TALLY_FIELDS = tuple(
    f
    for f in router_pb2.RouteDecision.DESCRIPTOR.fields
    if ("cache" in f.name or "tier" in f.name) and f.type != f.TYPE_MESSAGE and not _is_repeated(f)
)
# Enum values are tallied by name (TIER_CACHE), others by str(value).
_TALLY_NAMES = {
    f.name: {v.number: v.name for v in f.enum_type.values} if f.enum_type else None
    for f in _TALLY_FIELDS
}
_TIMING_FIELDS = tuple(f.name for f in router_pb2.Timing.DESCRIPTOR.fields)


@dataclass
class WorkerConfig:
    """Everything one client process needs; picklable (spawned processes)."""

    index: int
    n_workers: int
    target: str
    mode: str  # "open" | "closed"
    concurrency: int  # closed loop: in-flight calls in this process
    rate: float  # open loop: total offered rate of ALL processes, requests/s
    arrival: str  # "uniform" (fixed timeline) | "poisson"
    warmup_s: float
    duration_s: float
    max_requests: int  # this process's share of the measured-request budget
    timeout_s: float
    max_inflight: int
    mix: str
    seed: int
    hit_set: int
    repeat_share: float
    knobs: str
    tags: list[str] = field(default_factory=list)
    data_dir: str | None = None
    use_uvloop: bool = True
    rpc: str = "route"  # route | batch | stream (benchmarks.loadgen.senders)
    batch_size: int = 16
    # Closed loop, after a refusal: wait what the server's pushback says (as a gRPC client
    # with a retry policy does), or retry after 1 ms whatever it says ("ignore").
    pushback: str = "honour"


class _Stats:
    """What one process measured, for the measured window only."""

    def __init__(self) -> None:
        self.latency = hist.new_histogram()  # OK calls: done - scheduled (open) / sent (closed)
        self.service = hist.new_histogram()  # OK calls: done - actually sent
        self.lag = hist.new_histogram()  # open loop: sent - scheduled (client falling behind)
        self.timing = {name: hist.new_histogram() for name in _TIMING_FIELDS}
        self.ok = 0
        self.errors: Counter[str] = Counter()
        self.reasons: Counter[str] = Counter()
        self.models: Counter[str] = Counter()
        self.routes: Counter[str] = Counter()
        self.rules: Counter[str] = Counter()
        self.tallies: dict[str, Counter[str]] = {n: Counter() for n in _TALLY_NAMES}
        self.kinds: Counter[str] = Counter()
        self.first_send_ns = 0
        self.last_done_ns = 0

    def done(
        self, sched_ns: int, sent_ns: int, end_ns: int, resp: router_pb2.RouteDecision
    ) -> None:
        self.ok += 1
        # Event-loop timers are ms-granular, so a send can fire slightly early:
        # never count from a time before the request actually left.
        hist.record(self.latency, (end_ns - min(sched_ns, sent_ns)) // 1000)
        hist.record(self.service, (end_ns - sent_ns) // 1000)
        if end_ns > self.last_done_ns:
            self.last_done_ns = end_ns
        self.reasons[router_pb2.DecisionReason.Name(resp.reason)] += 1
        self.models[resp.model] += 1
        if resp.route:
            self.routes[resp.route] += 1
        if resp.rule:
            self.rules[resp.rule] += 1
        if resp.HasField("timing"):
            t = resp.timing
            for name, h in self.timing.items():
                hist.record(h, getattr(t, name))
        for name, names in _TALLY_NAMES.items():
            value = getattr(resp, name)
            self.tallies[name][names.get(value, str(value)) if names else str(value)] += 1

    def failed(self, code: str, end_ns: int) -> None:
        self.errors[code] += 1
        if end_ns > self.last_done_ns:
            self.last_done_ns = end_ns


def _cpu_s() -> float:
    """This process's user+system CPU, every thread included (gRPC's C-core threads too)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


async def _call(
    sender: Any,
    req: router_pb2.RouteRequest,
    timeout: float,
    sched_ns: int,
    stats: _Stats | None,
) -> float | None:
    """One request (through the run's sender: Route, a batch or a stream); records into
    ``stats`` when it belongs to the measured window. None when it succeeded, else the
    seconds the server's pushback asked to wait before a retry (0: none given)."""
    sent = now_ns()
    if stats is not None:
        if not stats.first_send_ns:
            stats.first_send_ns = sent
        hist.record(stats.lag, (sent - sched_ns) // 1000)
    try:
        resp = await sender.send(req)
    except grpc.aio.AioRpcError as e:
        if stats is not None:
            stats.failed(e.code().name, now_ns())
        return pushback_s(e.trailing_metadata())
    except ItemFailed as e:
        if stats is not None:
            stats.failed(e.code, now_ns())
        return e.retry_after_s
    except Exception as e:  # a client-side failure must not kill the run: count it
        if stats is not None:
            stats.failed(f"CLIENT_{type(e).__name__}", now_ns())
        return 0.0
    if stats is not None:
        stats.done(sched_ns, sent, now_ns(), resp)
    return None


async def _closed_loop(
    cfg: WorkerConfig, sender: Any, next_req: Any, stats: _Stats, t_meas: int, t_end: int
) -> None:
    """``concurrency`` callers, each sending its next request as soon as the last one returns."""
    budget = [cfg.max_requests]

    async def caller() -> None:
        while True:
            start = now_ns()
            if start >= t_end:
                return
            measuring = start >= t_meas
            if measuring:
                if budget[0] <= 0:
                    return
                budget[0] -= 1
            req, kind = next_req()
            if measuring:
                stats.kinds[kind] += 1
            retry = await _call(sender, req, cfg.timeout_s, now_ns(), stats if measuring else None)
            if retry is not None:  # no hot spin against a failing server
                honour = cfg.pushback == "honour"
                await asyncio.sleep(max(retry, 0.001) if honour else 0.001)

    await asyncio.gather(*(caller() for _ in range(cfg.concurrency)))


async def _open_loop(
    cfg: WorkerConfig,
    sender: Any,
    next_req: Any,
    stats: _Stats,
    t0: int,
    t_meas: int,
    t_end: int,
) -> None:
    """Requests sent on a fixed schedule whatever the server does (no coordinated omission).

    Process i takes slots i, i+n, i+2n... of the global timeline (uniform), or
    runs its own Poisson process at rate/n (the superposition is Poisson at
    ``rate``). Latency counts from the scheduled time, so a stalled server (or
    client) shows up in the percentiles instead of silently slowing the offer.
    """
    interval = 1e9 * cfg.n_workers / cfg.rate
    rng = random.Random(f"{cfg.seed}:arrival:{cfg.index}")
    slots = asyncio.Semaphore(cfg.max_inflight)
    tasks: set[asyncio.Task[None]] = set()
    budget = cfg.max_requests
    sched = float(t0) + (cfg.index * 1e9 / cfg.rate if cfg.arrival == "uniform" else 0.0)
    late = 0

    async def one(req: router_pb2.RouteRequest, at: int, measuring: bool) -> None:
        try:
            await _call(sender, req, cfg.timeout_s, at, stats if measuring else None)
        finally:
            slots.release()

    while True:
        sched += interval if cfg.arrival == "uniform" else rng.expovariate(1.0) * interval
        at = int(sched)
        if at >= t_end:
            break
        measuring = at >= t_meas
        if measuring:
            if budget <= 0:
                break
            budget -= 1
        req, kind = next_req()  # built before the wait, not on the clock
        if measuring:
            stats.kinds[kind] += 1
        wait = at - now_ns()
        if wait > 0:
            late = 0
            await asyncio.sleep(wait / 1e9)
        else:
            late += 1
            if late % 8 == 0:  # behind schedule: still let in-flight calls progress
                await asyncio.sleep(0)
        await slots.acquire()
        task = asyncio.create_task(one(req, at, measuring))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks, timeout=cfg.timeout_s + 5.0)


@contextlib.asynccontextmanager
async def connected_on_timeline(
    cfg: WorkerConfig, ready_q: Any, start_q: Any, start_timeout_s: float
) -> AsyncIterator[tuple[router_pb2_grpc.RouterServiceStub, int, int, int]]:
    """Connect, report ready, and wait for the coordinator's shared start time.

    Yields (stub, start, measurement start, end) in ns. One connection per
    process: separate processes must not share a subchannel pool.
    """
    options = [("grpc.use_local_subchannel_pool", 1), ("grpc.enable_retries", 0)]
    async with grpc.aio.insecure_channel(cfg.target, options=options) as channel:
        await asyncio.wait_for(channel.channel_ready(), timeout=30)
        ready_q.put(("ready", cfg.index, None))
        loop = asyncio.get_running_loop()
        t0: int = await loop.run_in_executor(None, lambda: start_q.get(timeout=start_timeout_s))
        t_meas = t0 + int(cfg.warmup_s * 1e9)
        t_end = t_meas + int(cfg.duration_s * 1e9)
        yield router_pb2_grpc.RouterServiceStub(channel), t0, t_meas, t_end


async def _run(cfg: WorkerConfig, ready_q: Any, start_q: Any) -> dict[str, Any]:
    pool = load_pool(cfg.data_dir)
    mix = PromptMix(
        pool,
        cfg.mix,
        cfg.seed,
        cfg.index,
        cfg.n_workers,
        cfg.hit_set,
        cfg.repeat_share,
        knobs=cfg.knobs,
        tags=cfg.tags,
    )
    factory = RequestFactory(id_prefix=f"lg{cfg.index}-" if cfg.knobs == "vary" else "")

    def next_req() -> tuple[router_pb2.RouteRequest, str]:
        item, kind = mix.next_item()
        return factory.build(item), kind

    async with connected_on_timeline(cfg, ready_q, start_q, 300) as (stub, t0, t_meas, t_end):
        stats = _Stats()
        cpu_at: dict[str, float] = {}

        async def cpu_mark() -> None:
            await asyncio.sleep(max(0.0, (t_meas - now_ns()) / 1e9))
            cpu_at["start"] = _cpu_s()

        marker = asyncio.create_task(cpu_mark())
        if t0 > now_ns():
            await asyncio.sleep((t0 - now_ns()) / 1e9)
        sender = make_sender(cfg.rpc, stub, cfg.timeout_s, cfg.batch_size)
        if cfg.mode == "closed":
            await _closed_loop(cfg, sender, next_req, stats, t_meas, t_end)
        else:
            await _open_loop(cfg, sender, next_req, stats, t0, t_meas, t_end)
        await sender.close()
        cpu_end = _cpu_s()
        if not marker.done():  # everything ended during warm-up (tiny budgets)
            marker.cancel()
        cpu_start = cpu_at.get("start", cpu_end)

    return {
        "index": cfg.index,
        "ok": stats.ok,
        "errors": dict(stats.errors),
        "kinds": dict(stats.kinds),
        "reasons": dict(stats.reasons),
        "models": dict(stats.models),
        "routes": dict(stats.routes),
        "rules": dict(stats.rules),
        "tallies": {k: dict(v) for k, v in stats.tallies.items()},
        "latency": hist.encode(stats.latency),
        "service": hist.encode(stats.service),
        "lag": hist.encode(stats.lag),
        "timing": {k: hist.encode(h) for k, h in stats.timing.items()},
        "first_send_ns": stats.first_send_ns,
        "last_done_ns": stats.last_done_ns,
        "t_meas_ns": t_meas,
        "t_end_ns": t_end,
        "cpu_s": cpu_end - cpu_start,
        "wraps": mix.wraps(),
        "config": asdict(cfg),
    }


def worker_main(cfg: WorkerConfig, ready_q: Any, start_q: Any, result_q: Any) -> None:
    """Process entry point: always answers on ``result_q``, with a traceback on failure."""
    try:
        if cfg.use_uvloop:
            try:
                import uvloop
            except ImportError:
                result = asyncio.run(_run(cfg, ready_q, start_q))
            else:
                result = uvloop.run(_run(cfg, ready_q, start_q))
        else:
            result = asyncio.run(_run(cfg, ready_q, start_q))
        result_q.put(("result", cfg.index, result))
    except BaseException:
        tb = traceback.format_exc()
        ready_q.put(("error", cfg.index, tb))
        result_q.put(("error", cfg.index, tb))
