"""Hot-swap benchmark: open-loop Route traffic while the index is swapped every second.

    python -m benchmarks.hot_swap --rate 1000 --swaps 100            # ~2.5 min
    python -m benchmarks.hot_swap --rate 400 --swaps 100 --encoder-delay-ms 30   # slow CPU

Builds two real, self-contained "routes" bundles (A from configs/default.yaml,
B from a variant whose routes differ slightly), starts `semroute serve` on A
with an admin token, and drives it with the load generator's open loop
(benchmarks/loadgen: same prompt mixes, same schedule, several client
processes) through four phases on one timeline:

1. baseline: no swaps;
2. shadow: B evaluated beside A on a sample of live traffic (answers unchanged);
3. swapping: every `--swap-interval` s the idle bundle is loaded from disk
   (B from its .tar.gz, A from its directory: unpack, verify every checksum,
   build, warm), activated with one atomic swap, and the bundle it replaced is
   unloaded (its memory returns once its requests drain);
4. tail: no swaps again.

Every response is recorded (send and done times, the version stamp, model
and route) and checked afterwards: no failed request, every stamp is one of
the two bundles' (index version, config version) pairs, every decision is
exactly what that version decides for that request (recomputed in-process),
and no request sent after a swap was acknowledged (and answered before the
next one began) carries the old version. Latency percentiles are reported per
phase; p99 during swaps beside p99 without them. Server RSS is sampled after
every swap.

The full encoder path cannot sustain 1,000 requests/s on a 2-core machine, so
the default traffic is the cache-friendly `hit` mix (16 repeated requests,
each with its own caller options): it exercises the swap, the per-version
decision cache (each swap changes the cache key) and the server's request
path; `--mix mix` at a lower `--rate` exercises the encoder path.

`--encoder-delay-ms 30` runs the server (and the bundles' builds) with the
test-only `encoder.test_delay_ms`: every encoder pass takes 30 ms longer, as
on a slow CPU, so the swap's effect on admission (expected encoder wait) is
measured the same way on any machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing as mp
import os
import queue
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import yaml

from benchmarks.loadgen import procstat
from benchmarks.loadgen.cli import host_info
from benchmarks.loadgen.senders import UnarySender
from benchmarks.loadgen.servers import start_server, stop_server
from benchmarks.loadgen.worker import WorkerConfig, _open_loop, _Stats, connected_on_timeline
from benchmarks.prompts import KNOBS, MIXES, PromptMix, RequestFactory, load_pool
from semroute.v1 import admin_pb2 as apb
from semroute.v1 import admin_pb2_grpc, router_pb2

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "benchmarks" / "results"
TOKEN_ENV = "SEMROUTE_ADMIN_TOKEN"
# Latency right after a swap starts: the window reported as "just after a swap".
AFTER_SWAP_MS = 250
MAX_TEMPLATES = 20_000
now_ns = time.monotonic_ns


# --- client processes (the load generator's open loop, recording every response) ---------


class _Recorder(_Stats):
    """The load generator's per-process stats, plus one row per response for the checks."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[tuple[int, int, int, int, int, int]] = []
        self.ids: dict[str, dict[str, int]] = {"stamp": {}, "decision": {}}
        self.template_of: dict[str, int] = {}

    def _id(self, kind: str, value: str) -> int:
        table = self.ids[kind]
        return table.setdefault(value, len(table))

    def done(
        self, sched_ns: int, sent_ns: int, end_ns: int, resp: router_pb2.RouteDecision
    ) -> None:
        super().done(sched_ns, sent_ns, end_ns, resp)
        stamp = self._id("stamp", f"{resp.index_version}|{resp.config_version}")
        decision = self._id("decision", f"{resp.model}|{resp.route}|{resp.reason}")
        tid = self.template_of.pop(resp.request_id, -1)
        self.rows.append((min(sched_ns, sent_ns), sent_ns, end_ns, stamp, decision, tid))

    def failed(self, code: str, end_ns: int) -> None:
        super().failed(code, end_ns)
        self.rows.append((end_ns, end_ns, end_ns, -1, -1, -1))


async def _client(cfg: WorkerConfig, ready_q: Any, start_q: Any) -> dict[str, Any]:
    pool = load_pool(cfg.data_dir)
    mix = PromptMix(
        pool, cfg.mix, cfg.seed, cfg.index, cfg.n_workers, cfg.hit_set, cfg.repeat_share,
        knobs=cfg.knobs,
    )  # fmt: skip
    factory = RequestFactory()
    stats = _Recorder()
    templates: dict[bytes, int] = {}
    counter = [0]

    def next_req() -> tuple[router_pb2.RouteRequest, str]:
        item, kind = mix.next_item()
        req = factory.build(item)
        key = req.SerializeToString(deterministic=True)
        tid = templates.get(key)
        if tid is None and len(templates) < MAX_TEMPLATES:
            tid = templates[key] = len(templates)
        counter[0] += 1
        req.request_id = f"hs{cfg.index}-{counter[0]}"
        if tid is not None:
            stats.template_of[req.request_id] = tid
        return req, kind

    async with connected_on_timeline(cfg, ready_q, start_q, 600) as (stub, t0, t_meas, t_end):
        if t0 > now_ns():
            await asyncio.sleep((t0 - now_ns()) / 1e9)
        await _open_loop(cfg, UnarySender(stub, cfg.timeout_s), next_req, stats, t0, t_meas, t_end)
    rows = np.asarray(stats.rows, dtype=np.int64).reshape(-1, 6)
    return {
        "index": cfg.index,
        "rows": rows,
        "stamps": stats.ids["stamp"],
        "decisions": stats.ids["decision"],
        "templates": {tid: key for key, tid in templates.items()},
        "errors": dict(stats.errors),
        "kinds": dict(stats.kinds),
        "tiers": {k: dict(v) for k, v in stats.tallies.items()},
    }


def _client_main(cfg: WorkerConfig, ready_q: Any, start_q: Any, result_q: Any) -> None:
    try:
        import uvloop

        result_q.put(("result", cfg.index, uvloop.run(_client(cfg, ready_q, start_q))))
    except BaseException:
        tb = traceback.format_exc()
        ready_q.put(("error", cfg.index, tb))
        result_q.put(("error", cfg.index, tb))


# --- bundles -----------------------------------------------------------------------------


def variant_config(base_path: Path, out: Path) -> Path:
    """The default config with slightly different routes: two utterances more for
    summarization, one fewer for faq_lookup, and a higher bar for the default route."""
    data = yaml.safe_load(base_path.read_text())
    for route in data["routes"]:
        if route["name"] == "summarization":
            route["utterances"] = [
                *route["utterances"],
                "boil this thread down to the decisions we made",
                "what is the gist of the attached memo?",
            ]
        elif route["name"] == "faq_lookup":
            route["utterances"] = route["utterances"][1:]
        elif route["name"] == "general":
            route["target_quality"] = round(route["target_quality"] + 0.05, 2)
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return out


def build_pair(work: Path, config_path: Path) -> dict[str, Any]:
    from semroute.admin.bundles import build_bundle, pack_archive
    from semroute.config import load_config
    from semroute.server.app import make_encoder

    base = load_config(config_path)
    variant = load_config(variant_config(config_path, work / "variant.yaml"))
    encoder = make_encoder(base)
    ma = build_bundle(base, encoder, work / "A")
    mb = build_bundle(variant, encoder, work / "B")
    archive = pack_archive(work / "B", work / "B.tar.gz")
    return {
        "A": {"path": str(work / "A"), "version": ma["version"], "config": str(config_path)},
        "B": {
            "path": str(archive),
            "dir": str(work / "B"),
            "version": mb["version"],
            "config": str(work / "variant.yaml"),
        },
        "entries": ma["count"],
    }


# --- analysis ----------------------------------------------------------------------------


def _pcts(lat_us: np.ndarray) -> dict[str, float]:
    if lat_us.size == 0:
        return {"count": 0}
    q = np.percentile(lat_us, [50, 90, 99, 99.9])
    return {
        "count": int(lat_us.size),
        "mean": round(float(lat_us.mean()), 1),
        "p50": round(float(q[0]), 1),
        "p90": round(float(q[1]), 1),
        "p99": round(float(q[2]), 1),
        "p99.9": round(float(q[3]), 1),
        "max": round(float(lat_us.max()), 1),
    }


def _phase(rows: np.ndarray, start: int, end: int) -> dict[str, Any]:
    sel = rows[(rows[:, 0] >= start) & (rows[:, 0] < end)]
    ok = sel[sel[:, 3] >= 0]
    secs = (end - start) / 1e9
    return {
        "seconds": round(secs, 2),
        "requests": int(sel.shape[0]),
        "ok": int(ok.shape[0]),
        "failed": int(sel.shape[0] - ok.shape[0]),
        "achieved_rps": round(ok.shape[0] / secs, 1) if secs > 0 else 0.0,
        "latency_us": _pcts((ok[:, 2] - ok[:, 0]) / 1000.0),
    }


def verify_decisions(
    bundles: dict[str, Any], templates: dict[int, bytes], pairs: set[tuple[int, str]]
) -> dict[tuple[int, str], str]:
    """Recompute, in-process, what each version decides for each request template seen:
    {(template, stamp): "model|route|reason"}."""
    from semroute.admin.bundles import merge_routing
    from semroute.config import load_config
    from semroute.messages import query_from_proto
    from semroute.router import Router, RoutingState
    from semroute.server.app import make_encoder
    from semroute.types import RoutingError

    base = load_config(bundles["A"]["config"])
    encoder = make_encoder(base)
    by_stamp: dict[str, RoutingState] = {}
    for name, bdir in (("A", bundles["A"]["path"]), ("B", bundles["B"]["dir"])):
        cfg = merge_routing(base, load_config(bundles[name]["config"]))
        state = RoutingState.load(cfg, encoder, Path(bdir))
        by_stamp[f"{state.index.version}|{cfg.version}"] = state
    router = Router(encoder, next(iter(by_stamp.values())))
    out: dict[tuple[int, str], str] = {}
    memo: dict[str, Any] = {}
    for tid, stamp in sorted(pairs):
        state = by_stamp.get(stamp)
        if state is None:
            continue
        query = query_from_proto(router_pb2.RouteRequest.FromString(templates[tid]), base.server)

        def embed(text: str = query.text) -> Any:
            if text not in memo:
                memo[text] = router.encode(text)
            return memo[text]

        try:
            d = router.route(query, state, embed)
            out[(tid, stamp)] = f"{d.model}|{d.route}|{int(d.reason)}"
        except RoutingError as e:
            out[(tid, stamp)] = f"error:{e.code}"
    return out


# --- the run ------------------------------------------------------------------------------


class AdminClient:
    def __init__(self, target: str, token: str) -> None:
        self.channel = grpc.insecure_channel(target)
        self.stub = admin_pb2_grpc.AdminServiceStub(self.channel)
        self.md = (("authorization", f"Bearer {token}"),)

    def __call__(self, rpc: str, request: Any, timeout: float = 60) -> Any:
        return getattr(self.stub, rpc)(request, metadata=self.md, timeout=timeout)


def run(args: argparse.Namespace) -> dict[str, Any]:
    host = host_info()  # load average before the run, not after it
    token = os.urandom(24).hex()
    os.environ[TOKEN_ENV] = token  # inherited by the server the load generator starts
    work = Path(tempfile.mkdtemp(prefix="hot-swap-"))
    config_path = Path(args.config).resolve()
    if args.encoder_delay_ms:
        config_path = delayed_config(config_path, args.encoder_delay_ms)
    try:
        return _run(args, host, token, work, config_path)
    finally:
        if args.encoder_delay_ms:
            config_path.unlink(missing_ok=True)


def delayed_config(config_path: Path, delay_ms: float) -> Path:
    """A copy of the config with `encoder.test_delay_ms` set (see `config_variant`)."""
    return config_variant(config_path, "delay", {"encoder": {"test_delay_ms": delay_ms}})


def config_variant(config_path: Path, tag: str, sections: dict[str, dict[str, Any]]) -> Path:
    """A copy of the config with the given keys of each section set, beside it (its
    relative paths stay valid); the caller deletes it."""
    data = yaml.safe_load(config_path.read_text())
    for section, values in sections.items():
        data.setdefault(section, {}).update(values)
    out = config_path.with_name(f".{config_path.stem}.{tag}-{os.getpid()}.yaml")
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return out


def _run(
    args: argparse.Namespace, host: dict[str, Any], token: str, work: Path, config_path: Path
) -> dict[str, Any]:
    print(f"building bundles in {work} ...", flush=True)
    bundles = build_pair(work, config_path)
    va, vb = bundles["A"]["version"], bundles["B"]["version"]
    cmd = (
        "{python} -m semroute serve --host {host} --port {port} "
        f"--config {config_path} --index {bundles['A']['path']}"
    )
    handle = start_server("semroute", template=cmd, timeout=180)
    print(f"server {handle.target} pid {handle.pid} (start {handle.startup_s:.1f} s)", flush=True)
    admin = AdminClient(handle.target, token)
    try:
        result = _drive(args, handle, admin, bundles, work)
        result["host"] = host
        return result
    finally:
        admin.channel.close()
        code = stop_server(handle)
        print(f"server stopped (exit {code}); bundles {va} / {vb}", flush=True)


def _drive(
    args: argparse.Namespace, handle: Any, admin: AdminClient, bundles: dict[str, Any], work: Path
) -> dict[str, Any]:
    va, vb = bundles["A"]["version"], bundles["B"]["version"]
    n = args.processes
    swap_span = args.swaps * args.swap_interval
    duration = args.baseline + args.shadow + swap_span + args.tail
    ctx = mp.get_context("spawn")
    ready_q, start_q, result_q = ctx.Queue(), ctx.Queue(), ctx.Queue()
    cfgs = [
        WorkerConfig(
            index=i,
            n_workers=n,
            target=handle.target,
            mode="open",
            concurrency=1,
            rate=args.rate,
            arrival="uniform",
            warmup_s=args.warmup,
            duration_s=duration,
            max_requests=int(args.rate * (duration + 5) / n) + 1,
            timeout_s=args.timeout,
            max_inflight=4096,
            mix=args.mix,
            seed=args.seed,
            hit_set=args.hit_set,
            repeat_share=0.35,
            knobs=args.knobs,
            data_dir=args.data_dir,
        )
        for i in range(n)
    ]
    procs = [ctx.Process(target=_client_main, args=(c, ready_q, start_q, result_q)) for c in cfgs]
    for p in procs:
        p.daemon = True
        p.start()
    try:
        for _ in range(n):
            kind, idx, payload = ready_q.get(timeout=120)
            if kind == "error":
                raise RuntimeError(f"client {idx} failed:\n{payload}")
        t0 = now_ns() + 300_000_000
        for _ in range(n):
            start_q.put(t0)
        t_meas = t0 + int(args.warmup * 1e9)
        marks = {"baseline": t_meas}
        marks["shadow"] = t_meas + int(args.baseline * 1e9)
        marks["swapping"] = marks["shadow"] + int(args.shadow * 1e9)
        marks["tail"] = marks["swapping"] + int(swap_span * 1e9)
        marks["end"] = marks["tail"] + int(args.tail * 1e9)
        pid = handle.pid
        rss: list[tuple[float, float, str]] = []

        def sample(label: str) -> None:
            b = procstat.tree_rss_bytes(pid)
            if b is not None:
                rss.append((round((now_ns() - t_meas) / 1e9, 2), round(b / 2**20, 1), label))

        _sleep_until(t_meas)
        sample("baseline start")
        cpu0 = procstat.tree_cpu_seconds(pid)
        _sleep_until(marks["shadow"])
        sample("before shadow")
        admin(
            "LoadIndex",
            apb.LoadIndexRequest(
                path=bundles["B"]["path"],
                activate=apb.ACTIVATION_MODE_SHADOW,
                shadow_sample_rate=args.shadow_rate,
            ),
        )
        _sleep_until(marks["swapping"])
        shadow_report = admin("StopShadow", apb.StopShadowRequest()).report
        admin("UnloadIndex", apb.UnloadIndexRequest(version=vb))
        time.sleep(0.05)
        sample("before swaps")
        swaps: list[dict[str, Any]] = []
        active, idle = va, vb
        paths = {va: bundles["A"]["path"], vb: bundles["B"]["path"]}
        for k in range(args.swaps):
            _sleep_until(marks["swapping"] + int(k * args.swap_interval * 1e9))
            t_start = now_ns()
            rec: dict[str, Any] = {"k": k, "to": idle, "start_ns": t_start}
            try:
                r = admin(
                    "LoadIndex",
                    apb.LoadIndexRequest(path=paths[idle], activate=apb.ACTIVATION_MODE_ACTIVE),
                )
                rec["ack_ns"] = now_ns()
                rec["load_ms"] = round(r.index.load_ms, 2)
                un = admin("UnloadIndex", apb.UnloadIndexRequest(version=active))
                rec["released_at_once"] = un.released
                active, idle = idle, active
            except grpc.RpcError as e:
                rec["error"] = f"{e.code().name}: {e.details()}"
                rec["ack_ns"] = now_ns()
            rec["rpc_ms"] = round((rec["ack_ns"] - t_start) / 1e6, 2)
            swaps.append(rec)
            sample(f"after swap {k + 1}")
        _sleep_until(marks["tail"] + 500_000_000)
        sample("after swaps (drained)")
        status = admin("GetStatus", apb.GetStatusRequest())
        results = []
        deadline = time.monotonic() + duration + args.timeout + 120
        while len(results) < n:
            try:
                kind, idx, payload = result_q.get(timeout=max(1.0, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError("client processes did not report back") from None
            if kind == "error":
                raise RuntimeError(f"client {idx} failed:\n{payload}")
            results.append(payload)
        cpu1 = procstat.tree_cpu_seconds(pid)
        sample("end")
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()
    return _report(args, bundles, results, marks, swaps, rss, status, shadow_report, cpu0, cpu1)


def _sleep_until(t_ns: int) -> None:
    delay = (t_ns - now_ns()) / 1e9
    if delay > 0:
        time.sleep(delay)


def _report(
    args: argparse.Namespace,
    bundles: dict[str, Any],
    results: list[dict[str, Any]],
    marks: dict[str, int],
    swaps: list[dict[str, Any]],
    rss: list[tuple[float, float, str]],
    status: apb.GetStatusResponse,
    shadow_report: apb.ShadowReport,
    cpu0: float | None,
    cpu1: float | None,
) -> dict[str, Any]:
    from semroute.admin.cli import to_plain

    # Merge the processes' rows into one table with global ids.
    stamps: dict[str, int] = {}
    decisions: dict[str, int] = {}
    templates: dict[int, bytes] = {}
    template_ids: dict[bytes, int] = {}
    parts = []
    errors: Counter[str] = Counter()
    tiers: Counter[str] = Counter()
    for r in results:
        rows = r["rows"].copy()
        smap = {i: stamps.setdefault(s, len(stamps)) for s, i in r["stamps"].items()}
        dmap = {i: decisions.setdefault(d, len(decisions)) for d, i in r["decisions"].items()}
        tmap = {}
        for tid, key in r["templates"].items():
            tmap[tid] = template_ids.setdefault(key, len(template_ids))
            templates[tmap[tid]] = key
        ok = rows[:, 3] >= 0
        rows[ok, 3] = [smap[int(x)] for x in rows[ok, 3]]
        rows[ok, 4] = [dmap[int(x)] for x in rows[ok, 4]]
        has_t = rows[:, 5] >= 0
        rows[has_t, 5] = [tmap[int(x)] for x in rows[has_t, 5]]
        parts.append(rows)
        errors.update(r["errors"])
        for counts in r["tiers"].values():
            tiers.update(counts)
    rows = np.concatenate(parts) if parts else np.zeros((0, 6), dtype=np.int64)
    rows = rows[np.argsort(rows[:, 0], kind="stable")]
    stamp_name = {i: s for s, i in stamps.items()}
    decision_name = {i: d for d, i in decisions.items()}

    va, vb = bundles["A"]["version"], bundles["B"]["version"]
    ok = rows[rows[:, 3] >= 0]
    by_version = Counter(stamp_name[int(s)].split("|")[0] for s in ok[:, 3])
    unknown = {v: c for v, c in by_version.items() if v not in (va, vb)}

    # Every decision exactly what its stamped version decides for that request.
    pairs = {
        (int(t), stamp_name[int(s)]) for t, s in zip(ok[:, 5], ok[:, 3], strict=True) if t >= 0
    }
    expect = verify_decisions(bundles, templates, pairs)
    verified = mismatched = 0
    mismatch_examples: list[str] = []
    for t, s, d in zip(ok[:, 5], ok[:, 3], ok[:, 4], strict=True):
        key = (int(t), stamp_name[int(s)])
        if t < 0 or key not in expect:
            continue
        verified += 1
        if expect[key] != decision_name[int(d)]:
            mismatched += 1
            if len(mismatch_examples) < 5:
                mismatch_examples.append(
                    f"{key}: got {decision_name[int(d)]}, expected {expect[key]}"
                )
    differing_templates = sum(
        1
        for t in {t for t, _ in pairs}
        if len({expect.get((t, s)) for s in stamps if (t, s) in expect}) > 1
    )

    # Causality: sent after swap k was acknowledged and done before swap k+1 started,
    # the decision must carry swap k's version.
    stale = checked = 0
    good = [s for s in swaps if "error" not in s]
    for k, s in enumerate(good):
        nxt = good[k + 1]["start_ns"] if k + 1 < len(good) else marks["end"] + 10**10
        sel = ok[(ok[:, 1] > s["ack_ns"]) & (ok[:, 2] < nxt)]
        versions = np.array([stamp_name[int(x)].split("|")[0] for x in sel[:, 3]])
        checked += int(sel.shape[0])
        stale += int((versions != s["to"]).sum())

    phases = {
        name: _phase(rows, marks[name], marks[nxt])
        for name, nxt in (
            ("baseline", "shadow"),
            ("shadow", "swapping"),
            ("swapping", "tail"),
            ("tail", "end"),
        )
    }
    no_swap = rows[
        ((rows[:, 0] >= marks["baseline"]) & (rows[:, 0] < marks["shadow"]))
        | ((rows[:, 0] >= marks["tail"]) & (rows[:, 0] < marks["end"]))
    ]
    no_swap_ok = no_swap[no_swap[:, 3] >= 0]
    phases["without_swaps"] = {
        "note": "baseline + tail phases",
        "requests": int(no_swap.shape[0]),
        "failed": int((no_swap[:, 3] < 0).sum()),
        "latency_us": _pcts((no_swap_ok[:, 2] - no_swap_ok[:, 0]) / 1000.0),
    }
    window = int(AFTER_SWAP_MS * 1e6)
    near = np.zeros(ok.shape[0], dtype=bool)
    for s in swaps:
        near |= (ok[:, 0] >= s["start_ns"]) & (ok[:, 0] < s["start_ns"] + window)
    phases[f"within_{AFTER_SWAP_MS}ms_of_a_swap"] = {
        "requests": int(near.sum()),
        "latency_us": _pcts((ok[near, 2] - ok[near, 0]) / 1000.0),
    }
    timeline = []  # per second of the measured run: [second, p99 ms, max ms]
    sec = ((ok[:, 0] - marks["baseline"]) // 1_000_000_000).astype(np.int64)
    for t in range(int((marks["end"] - marks["baseline"]) // 1_000_000_000)):
        lat = (ok[sec == t, 2] - ok[sec == t, 0]) / 1e6
        if lat.size:
            timeline.append(
                [t, round(float(np.percentile(lat, 99)), 1), round(float(lat.max()), 1)]
            )
    per_swap = []
    for s in swaps:
        w = ok[(ok[:, 0] >= s["start_ns"]) & (ok[:, 0] < s["start_ns"] + window)]
        lat = (w[:, 2] - w[:, 0]) / 1e6
        per_swap.append(
            {
                "k": s["k"],
                "to": "A" if s["to"] == va else "B",
                "load_ms": s.get("load_ms"),
                "rpc_ms": s["rpc_ms"],
                "n": int(w.shape[0]),
                "p99_ms": round(float(np.percentile(lat, 99)), 2) if lat.size else None,
                "max_ms": round(float(lat.max()), 2) if lat.size else None,
            }
        )

    load_ms = np.array([s["load_ms"] for s in swaps if "load_ms" in s])
    rpc_ms = np.array([s["rpc_ms"] for s in swaps])
    mb = {label: v for _, v, label in rss}
    after = [v for _, v, label in rss if label.startswith("after swap")]
    total = int(rows.shape[0])
    duration_s = (marks["end"] - marks["baseline"]) / 1e9
    used = (cpu1 - cpu0) if cpu0 is not None and cpu1 is not None else None
    result: dict[str, Any] = {
        "benchmark": "hot_swap",
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": host_info(),
        "loadavg_at_end": list(os.getloadavg()),
        "config": {k: v for k, v in vars(args).items() if k not in ("func",)},
        "traffic_note": (
            f"open loop at {args.rate:g} requests/s offered, '{args.mix}' prompt mix "
            f"({args.hit_set} repeated requests for 'hit'): cache-friendly traffic, because "
            "the full encoder path alone cannot do 1,000 requests/s on this 2-core machine; "
            "each swap changes the decision-cache key (index version): the new index's "
            "decisions for the hot requests (admin.prime_cache most recently used cache "
            "entries) are put in the cache just before the swap"
            if args.mix == "hit"
            else f"open loop at {args.rate:g} requests/s offered, '{args.mix}' prompt mix"
        ),
        "bundles": {
            "A": {"version": va, "source": "configs/default.yaml", "loaded_from": "directory"},
            "B": {
                "version": vb,
                "source": "variant: summarization +2 utterances, faq_lookup -1, general bar +0.05",
                "loaded_from": ".tar.gz archive",
            },
            "entries": bundles["entries"],
        },
        "summary": {
            "offered_rps": args.rate,
            "achieved_rps": round(ok.shape[0] / duration_s, 1),
            "requests": total,
            "failed": int(total - ok.shape[0]),
            "errors": dict(errors),
            "swaps": len(good),
            "swap_errors": [s["error"] for s in swaps if "error" in s],
            "p99_us_without_swaps": phases["without_swaps"]["latency_us"].get("p99"),
            "p99_us_during_swaps": phases["swapping"]["latency_us"].get("p99"),
            f"p99_us_within_{AFTER_SWAP_MS}ms_of_a_swap": phases[
                f"within_{AFTER_SWAP_MS}ms_of_a_swap"
            ]["latency_us"].get("p99"),
            "p99_us_with_shadow": phases["shadow"]["latency_us"].get("p99"),
            "rss_mb_before_swaps": mb.get("before swaps"),
            "rss_mb_after_swaps": mb.get("after swaps (drained)"),
            "rss_mb_max_during_swaps": max(after) if after else None,
        },
        "stamps": {
            "by_version": dict(by_version),
            "unknown_versions": unknown,
            "stamp_pairs": sorted(stamps),
            "decisions_verified": verified,
            "decisions_mismatched": mismatched,
            "mismatch_examples": mismatch_examples,
            "request_templates": len(templates),
            "templates_deciding_differently_on_A_and_B": differing_templates,
            "stale_after_ack_checked": checked,
            "stale_after_ack": stale,
        },
        "phases": phases,
        "per_swap": per_swap,
        "timeline_p99_max_ms": {
            "phase_starts_s": {
                k: round((v - marks["baseline"]) / 1e9, 1) for k, v in marks.items()
            },
            "per_second": timeline,
        },
        "swap_timing_ms": {
            "load_verify_warm": _pcts(load_ms) if load_ms.size else {},
            "admin_rpc_load_activate_unload": _pcts(rpc_ms) if rpc_ms.size else {},
        },
        "server_memory_mb": {
            "samples": [{"t_s": t, "rss_mb": v, "at": label} for t, v, label in rss][
                :: max(1, math.ceil(len(rss) / 150))
            ],
            "growth_over_swaps_mb": (
                round(mb["after swaps (drained)"] - mb["before swaps"], 1)
                if "before swaps" in mb and "after swaps (drained)" in mb
                else None
            ),
        },
        "server_cpu": {
            "cpu_s": round(used, 2) if used is not None else None,
            "cores": round(used / duration_s, 2) if used is not None else None,
            "us_per_request": round(used / total * 1e6, 1) if used is not None and total else None,
        },
        "tiers": dict(tiers),
        "shadow": to_plain(shadow_report),
        "final_status": to_plain(status),
    }
    return result


def _print(result: dict[str, Any]) -> None:
    s, st = result["summary"], result["stamps"]
    print(f"\n{result['traffic_note']}\n")
    print(f"offered {s['offered_rps']:g}/s  achieved {s['achieved_rps']:g}/s  "
          f"requests {s['requests']}  failed {s['failed']}  swaps {s['swaps']}")  # fmt: skip
    for name, ph in result["phases"].items():
        lat = ph["latency_us"]
        if lat.get("count"):
            print(f"  {name:<28} n={lat['count']:>7}  p50 {lat['p50'] / 1000:7.2f} ms  "
                  f"p99 {lat['p99'] / 1000:7.2f} ms  max {lat['max'] / 1000:7.1f} ms")  # fmt: skip
    print(f"stamps {st['by_version']}  unknown {st['unknown_versions']}  "
          f"verified {st['decisions_verified']} mismatched {st['decisions_mismatched']}  "
          f"stale {st['stale_after_ack']}/{st['stale_after_ack_checked']}")  # fmt: skip
    print(f"rss MB before swaps {s['rss_mb_before_swaps']}  after {s['rss_mb_after_swaps']}  "
          f"max {s['rss_mb_max_during_swaps']}")  # fmt: skip
    tl = result["timeline_p99_max_ms"]["per_second"]
    print("worst seconds [s, p99, max]:", sorted(tl, key=lambda x: -x[2])[:6])
    worst = sorted(result["per_swap"], key=lambda s: -(s["max_ms"] or 0))[:5]
    print("worst swaps:", [(s["k"], s["to"], s["max_ms"]) for s in worst])
    t = result["swap_timing_ms"]["load_verify_warm"]
    if t:
        print(f"swap load+verify+warm p50 {t['p50']} ms  p99 {t['p99']} ms")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.hot_swap", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--config", default=str(REPO / "configs" / "default.yaml"))
    ap.add_argument("--rate", type=float, default=1000.0, help="offered requests/s (open loop)")
    ap.add_argument("--processes", type=int, default=2, help="client processes")
    ap.add_argument("--mix", choices=MIXES, default="hit")
    ap.add_argument("--hit-set", type=int, default=16)
    ap.add_argument("--knobs", choices=KNOBS, default="vary", help="callers' options per request")
    ap.add_argument("--encoder-delay-ms", type=float, default=0.0,
                    help="test-only: added to every encoder pass (a slow CPU)")  # fmt: skip
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--swaps", type=int, default=100)
    ap.add_argument("--swap-interval", type=float, default=1.0, help="seconds between swaps")
    ap.add_argument("--warmup", type=float, default=5.0)
    ap.add_argument("--baseline", type=float, default=30.0, help="seconds without swaps first")
    ap.add_argument("--shadow", type=float, default=15.0, help="seconds shadowing B before swaps")
    ap.add_argument("--shadow-rate", type=float, default=0.05)
    ap.add_argument("--tail", type=float, default=10.0, help="seconds without swaps after")
    ap.add_argument("--timeout", type=float, default=5.0, help="per-call deadline, s")
    ap.add_argument("--out-dir", default=str(RESULTS_DIR))
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args(argv)
    total = args.warmup + args.baseline + args.shadow + args.swaps * args.swap_interval + args.tail
    if not (0 < args.rate <= 20_000 and 1 <= args.swaps <= 2_000 and total <= 3_600):
        ap.error("bounded runs only: rate <= 20000/s, swaps <= 2000, total <= 1 h")
    result = run(args)
    _print(result)
    if not args.no_save:
        out = Path(args.out_dir) / f"hot_swap-{time.strftime('%Y%m%dT%H%M%S')}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1, default=str) + "\n")
        print(f"saved {out}")
    s = result["summary"]
    ok = not s["failed"] and not result["stamps"]["stale_after_ack"] and not s["swap_errors"]
    return 0 if ok and not result["stamps"]["decisions_mismatched"] else 1


if __name__ == "__main__":
    sys.exit(main())
