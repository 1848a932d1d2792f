"""Run one scenario: maybe start the server, fan out client processes, merge their results."""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import queue
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from benchmarks.loadgen import hist, procstat
from benchmarks.loadgen.senders import RPCS
from benchmarks.loadgen.servers import (
    ServerHandle,
    check_health,
    parse_target,
    start_server,
    stop_server,
)
from benchmarks.loadgen.worker import WorkerConfig, worker_main
from benchmarks.prompts import KNOBS, MIXES

MODES = ("closed", "open", "sequential")
SERVER_KINDS = ("echo", "semroute")
RSS_SAMPLE_S = 0.5
# Hard ceilings, whatever a scenario asks for: every run is bounded in time and count.
MAX_DURATION_S = 3600.0
MAX_REQUESTS = 50_000_000


@dataclass
class Scenario:
    """One load run. Field names are the CLI flags (``--max-inflight`` -> max_inflight)."""

    name: str = ""
    target: str | None = None
    start_server: str | None = None
    server_config: str | None = None
    server_workers: int = 1
    server_cmd: str | None = None
    server_pid: int | None = None
    server_start_timeout: float = 180.0
    mode: str = "closed"
    rate: float = 1000.0
    arrival: str = "uniform"
    concurrency: int = 32
    processes: int = 2
    duration: float | None = None  # default: 10 s (300 s cap for sequential)
    warmup: float = 2.0
    requests: int | None = None  # default: 1,000,000 (1,000 for sequential)
    timeout: float = 5.0
    max_inflight: int = 4096
    mix: str = "unique"
    seed: int = 0
    hit_set: int = 16
    repeat_share: float = 0.35
    knobs: str = "vary"
    tags: list[str] = field(default_factory=list)
    data_dir: str | None = None
    uvloop: bool = True
    baseline: bool = False
    rpc: str = "route"  # route | batch (client-side batches of batch_size) | stream
    batch_size: int = 16
    pushback: str = "honour"  # closed loop after a refusal: honour | ignore (retry in 1 ms)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Scenario:
        known = {f.name for f in fields(cls)}
        norm = {k.replace("-", "_"): v for k, v in d.items()}
        unknown = sorted(set(norm) - known)
        if unknown:
            raise ValueError(f"unknown scenario keys: {', '.join(unknown)}")
        if isinstance(norm.get("tags"), str):
            norm["tags"] = [t for t in norm["tags"].split(",") if t]
        return cls(**norm)

    def resolved(self) -> Scenario:
        """Apply per-mode defaults and check every bound; returns a new Scenario."""
        sc = Scenario(**asdict(self))
        if sc.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {sc.mode!r}")
        if sc.mix not in MIXES:
            raise ValueError(f"mix must be one of {MIXES}, got {sc.mix!r}")
        if sc.knobs not in KNOBS:
            raise ValueError(f"knobs must be one of {KNOBS}, got {sc.knobs!r}")
        if sc.pushback not in ("honour", "ignore"):
            raise ValueError("pushback must be honour or ignore")
        if sc.rpc not in RPCS:
            raise ValueError(f"rpc must be one of {RPCS}, got {sc.rpc!r}")
        if not 1 <= sc.batch_size <= 256:
            raise ValueError("batch_size must be within [1, 256] (server.max_batch_items)")
        if sc.arrival not in ("uniform", "poisson"):
            raise ValueError("arrival must be uniform or poisson")
        if sc.mode == "sequential":
            sc.processes, sc.concurrency = 1, 1
            sc.requests = 1000 if sc.requests is None else sc.requests
            sc.duration = 300.0 if sc.duration is None else sc.duration
        sc.duration = 10.0 if sc.duration is None else sc.duration
        sc.requests = 1_000_000 if sc.requests is None else sc.requests
        if not 0 < sc.duration <= MAX_DURATION_S:
            raise ValueError(f"duration must be within (0, {MAX_DURATION_S:.0f}] s")
        if not 0 < sc.requests <= MAX_REQUESTS:
            raise ValueError(f"requests must be within [1, {MAX_REQUESTS}]")
        if sc.warmup < 0 or sc.warmup > MAX_DURATION_S:
            raise ValueError("warmup must be within [0, 3600] s")
        if sc.mode == "open" and not sc.rate > 0:
            raise ValueError("open loop needs --rate > 0")
        if sc.mode == "closed":
            sc.processes = max(1, min(sc.processes, sc.concurrency))
        if sc.processes < 1 or sc.concurrency < 1 or sc.max_inflight < 1:
            raise ValueError("processes, concurrency and max_inflight must be >= 1")
        if sc.start_server is not None and sc.start_server not in SERVER_KINDS:
            raise ValueError(f"start_server must be one of {SERVER_KINDS}")
        if sc.start_server is None and sc.target is None:
            raise ValueError("give --target 127.0.0.1:PORT or --start-server echo|semroute")
        if sc.target is not None:
            sc.target = parse_target(sc.target)
        if not sc.name:
            sc.name = sc.start_server or f"target-{sc.target}"
        return sc


def _share(counter: dict[str, int], total: int, top: int = 20) -> dict[str, float]:
    """Shares of the ``top`` most common values (the rest summed as '(other)')."""
    if total <= 0:
        return {}
    items = Counter(counter).most_common()
    out = {k or "(empty)": round(v / total, 4) for k, v in items[:top]}
    rest = sum(v for _, v in items[top:])
    if rest:
        out["(other)"] = round(rest / total, 4)
    return out


def _sum_counters(dicts: list[dict[str, int]]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for d in dicts:
        total.update(d)
    return dict(total)


def _split(total: int, n: int, i: int) -> int:
    return total // n + (1 if i < total % n else 0)


class _RssSampler:
    def __init__(self, pid: int | None, t0: float):
        self.pid, self.t0 = pid, t0
        self.samples: list[tuple[float, float]] = []
        self.next_at = 0.0

    def maybe(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.pid is None or (not force and now < self.next_at):
            return
        self.next_at = now + RSS_SAMPLE_S
        rss = procstat.tree_rss_bytes(self.pid)
        if rss is not None:
            self.samples.append((round(now - self.t0, 2), round(rss / 2**20, 1)))

    def summary(self) -> dict[str, Any] | None:
        if not self.samples:
            return None
        mb = [s[1] for s in self.samples]
        step = max(1, math.ceil(len(self.samples) / 120))
        return {
            "start_mb": mb[0],
            "end_mb": mb[-1],
            "max_mb": max(mb),
            "growth_mb": round(mb[-1] - mb[0], 1),
            "samples": self.samples[::step],
        }


def _drive(sc: Scenario, target: str, server_pid: int | None) -> dict[str, Any]:
    """Spawn the client processes, run the shared timeline, merge their results."""
    ctx = mp.get_context("spawn")  # fresh interpreters: no gRPC state crosses a fork
    ready_q, start_q, result_q = ctx.Queue(), ctx.Queue(), ctx.Queue()
    n = sc.processes
    assert sc.duration is not None and sc.requests is not None
    cfgs = [
        WorkerConfig(
            index=i,
            n_workers=n,
            target=target,
            mode="closed" if sc.mode == "sequential" else sc.mode,
            concurrency=_split(sc.concurrency, n, i),
            rate=sc.rate,
            arrival=sc.arrival,
            warmup_s=sc.warmup,
            duration_s=sc.duration,
            max_requests=_split(sc.requests, n, i),
            timeout_s=sc.timeout,
            max_inflight=sc.max_inflight,
            mix=sc.mix,
            seed=sc.seed,
            hit_set=sc.hit_set,
            repeat_share=sc.repeat_share,
            knobs=sc.knobs,
            tags=list(sc.tags),
            data_dir=sc.data_dir,
            use_uvloop=sc.uvloop,
            rpc=sc.rpc,
            batch_size=sc.batch_size,
            pushback=sc.pushback,
        )
        for i in range(n)
    ]
    procs = [ctx.Process(target=worker_main, args=(c, ready_q, start_q, result_q)) for c in cfgs]
    for p in procs:
        p.daemon = True
        p.start()
    try:
        return _coordinate(sc, procs, ready_q, start_q, result_q, server_pid)
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()
                p.join(timeout=5)


def _coordinate(
    sc: Scenario,
    procs: list[Any],
    ready_q: Any,
    start_q: Any,
    result_q: Any,
    server_pid: int | None,
) -> dict[str, Any]:
    n = len(procs)
    assert sc.duration is not None
    deadline = time.monotonic() + 120
    ready = 0
    while ready < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"client processes not ready after 120 s ({ready}/{n})")
        dead = [i for i, p in enumerate(procs) if p.exitcode not in (None, 0)]
        if dead and ready_q.empty():
            raise RuntimeError(f"client process {dead[0]} died (exit {procs[dead[0]].exitcode})")
        try:
            kind, idx, payload = ready_q.get(timeout=0.5)
        except queue.Empty:
            continue
        if kind == "error":
            raise RuntimeError(f"client process {idx} failed:\n{payload}")
        ready += 1

    t0_ns = time.monotonic_ns() + 200_000_000  # all processes start together
    for _ in range(n):
        start_q.put(t0_ns)
    t0 = t0_ns / 1e9
    t_meas = t0 + sc.warmup
    hard_deadline = t_meas + sc.duration + sc.timeout + 60
    rss = _RssSampler(server_pid, t0)
    rss.maybe(force=True)
    cpu0: float | None = None
    wall0 = 0.0
    results: list[dict[str, Any]] = []
    while len(results) < n:
        now = time.monotonic()
        if now > hard_deadline:
            raise TimeoutError("client processes did not report back in time")
        dead = [i for i, p in enumerate(procs) if p.exitcode not in (None, 0)]
        if dead:
            raise RuntimeError(f"client process {dead[0]} died (exit {procs[dead[0]].exitcode})")
        if cpu0 is None and now >= t_meas and server_pid is not None:
            cpu0, wall0 = procstat.tree_cpu_seconds(server_pid), now
            rss.maybe(force=True)
        rss.maybe()
        wait = RSS_SAMPLE_S if cpu0 is not None or server_pid is None else t_meas - now
        try:
            kind, idx, payload = result_q.get(timeout=min(RSS_SAMPLE_S, max(0.005, wait)))
        except queue.Empty:
            continue
        if kind == "error":
            raise RuntimeError(f"client process {idx} failed:\n{payload}")
        results.append(payload)
    wall1 = time.monotonic()
    cpu1 = procstat.tree_cpu_seconds(server_pid) if server_pid is not None else None
    rss.maybe(force=True)
    return _merge(sc, results, cpu0, cpu1, wall1 - wall0, rss.summary())


def _merge(
    sc: Scenario,
    results: list[dict[str, Any]],
    cpu0: float | None,
    cpu1: float | None,
    server_wall_s: float,
    rss: dict[str, Any] | None,
) -> dict[str, Any]:
    assert sc.duration is not None
    ok = sum(r["ok"] for r in results)
    errors = _sum_counters([r["errors"] for r in results])
    n_err = sum(errors.values())
    total = ok + n_err
    t_meas = min(r["t_meas_ns"] for r in results)
    last = max((r["last_done_ns"] for r in results if r["last_done_ns"]), default=0)
    elapsed = (last - t_meas) / 1e9 if last > t_meas else sc.duration
    client_cpu = sum(r["cpu_s"] for r in results)
    latency = hist.merge(r["latency"] for r in results)
    timing_names = results[0]["timing"].keys() if results else ()
    out: dict[str, Any] = {
        "name": sc.name,
        "mode": sc.mode,
        "mix": sc.mix,
        "rpc": sc.rpc,
        "pushback": sc.pushback if sc.mode == "closed" else None,
        "batch_size": sc.batch_size if sc.rpc == "batch" else None,
        "requests": total,
        "ok": ok,
        "errors": errors,
        "error_total": n_err,
        "elapsed_s": round(elapsed, 3),
        "offered_rps": sc.rate if sc.mode == "open" else None,
        "achieved_rps": round(ok / elapsed, 1) if elapsed > 0 else 0.0,
        "latency_us": hist.summarize(latency),
        "service_us": hist.summarize(hist.merge(r["service"] for r in results)),
        "client_lag_us": (
            hist.summarize(hist.merge(r["lag"] for r in results)) if sc.mode == "open" else None
        ),
        "server_timing_us": {
            name: hist.summarize(hist.merge(r["timing"][name] for r in results))
            for name in timing_names
        },
        "client": {
            "processes": len(results),
            "cpu_s": round(client_cpu, 3),
            "cpu_per_call_us": round(client_cpu / total * 1e6, 1) if total else None,
            "cores": round(client_cpu / elapsed, 2) if elapsed > 0 else None,
        },
        "server_cpu": None,
        "server_rss": rss,
        "decisions": {
            "reason": _share(_sum_counters([r["reasons"] for r in results]), ok),
            "model": _share(_sum_counters([r["models"] for r in results]), ok),
            "route": _share(_sum_counters([r["routes"] for r in results]), ok),
            "rule": _share(_sum_counters([r["rules"] for r in results]), ok),
            **{
                f"{name}": _share(_sum_counters([r["tallies"][name] for r in results]), ok)
                for name in (results[0]["tallies"] if results else {})
            },
        },
        "prompt_kinds": _share(_sum_counters([r["kinds"] for r in results]), total),
        "pool_wraps": sum(r["wraps"] for r in results),
        "histograms": {"latency_us": hist.encode(latency)},
    }
    if cpu0 is not None and cpu1 is not None:
        used = cpu1 - cpu0
        out["server_cpu"] = {
            "cpu_s": round(used, 3),
            "cpu_per_request_us": round(used / total * 1e6, 1) if total else None,
            "cores": round(used / server_wall_s, 2) if server_wall_s > 0 else None,
        }
    cores = os.cpu_count() or 1
    busy = (out["client"]["cores"] or 0) + ((out["server_cpu"] or {}).get("cores") or 0)
    notes = []
    if busy > 0.85 * cores:
        notes.append(
            f"client+server used {busy:.1f} of {cores} cores: the machine, not only the server, "
            "was saturated; compare ratios, not absolute figures"
        )
    lag = out["client_lag_us"]
    if lag and lag["p99"] > 5000:
        notes.append(
            f"client fell behind schedule (send lag p99 {lag['p99'] / 1000:.1f} ms): "
            "add --processes or lower --rate"
        )
    if sc.mode == "sequential" and sc.requests and total < sc.requests:
        notes.append(
            f"stopped by --duration ({sc.duration:g} s) after {total} of {sc.requests} requests"
        )
    if out["pool_wraps"]:
        notes.append(
            f"prompt pools were reused {out['pool_wraps']} times "
            "(texts kept unique by a variant marker)"
        )
    out["notes"] = notes
    return out


def run_scenario(scenario: Scenario) -> dict[str, Any]:
    """Run one scenario end to end; a server it started is always stopped."""
    sc = scenario.resolved()
    handle: ServerHandle | None = None
    pid = sc.server_pid
    started = time.time()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    if sc.start_server:
        handle = start_server(
            sc.start_server,
            config=sc.server_config,
            workers=sc.server_workers,
            template=sc.server_cmd,
            timeout=sc.server_start_timeout,
        )
        target, pid = handle.target, handle.pid
    else:
        assert sc.target is not None
        target = sc.target
        status = check_health(target, timeout=3.0)
        if status not in ("SERVING", "UNIMPLEMENTED"):
            raise RuntimeError(f"{target} health is {status}, not SERVING")
    try:
        result = _drive(sc, target, pid)
    finally:
        exit_code = stop_server(handle) if handle else None
    result["config"] = {k: v for k, v in asdict(sc).items() if k != "baseline"}
    result["target"] = target
    result["started_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started))
    result["loadavg_1m_at_start"] = load  # other work on the machine skews absolute figures
    result["server"] = {
        "kind": sc.start_server or "external",
        "pid": pid,
        "cmd": handle.cmd if handle else None,
        "startup_s": round(handle.startup_s, 2) if handle else None,
        "exit_code": exit_code,
    }
    return result
