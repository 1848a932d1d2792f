"""Where a semroute server's CPU goes under load: py-spy (Python frames), perf (per library).

Starts ``semroute serve`` on 127.0.0.1, drives it with the load generator for ``--duration``
seconds, and samples the server meanwhile with

* ``py-spy record`` (Python stacks of every thread; the time grpc core and uvloop spend in C
  shows up as the event loop's own frame, ``Runner.run``), grouped into pipeline stages;
* ``perf record -e cpu-clock`` when perf is installed and allowed: samples per shared library
  (kernel, libpython, grpc core, onnxruntime, ...), which py-spy cannot see without pausing the
  process.

    python -m benchmarks.profile --mix unique --mode closed --concurrency 16
    python -m benchmarks.profile --mix hit --mode open --rate 2000

Writes benchmarks/results/profile-<mix>-<ts>.json and prints the stage table. py-spy comes
with the dev extras; it needs ptrace permission on the server (same user, as here).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks.loadgen.procstat import tree_cpu_seconds
from benchmarks.loadgen.runner import Scenario, _drive
from benchmarks.loadgen.servers import start_server, stop_server

RESULTS = Path(__file__).resolve().parent / "results"

# Pipeline stages by the first matching frame of a stack (innermost first).
STAGES = [
    ("encoder: onnxruntime run", ("Session.run",)),
    ("encoder: tokenizer", ("TextTokenizer.", "encode_batch")),
    ("static encoder + similar cache", ("StaticEncoder.", "SimilarCache.", "SemanticCache.")),
    ("encoder: other Python", ("Encoder.encode", "MicroBatcher", "_WorkItem.run")),
    ("route search + policy", ("Router.", "RouteIndex.", "Policy.", "_policy")),
    (
        "request handling (validation, caches, proto)",
        (
            "RouterServicer.",
            "Pipeline.",
            "query_from_proto",
            "decision_to_proto",
            "cache_key",
            "DecisionCache.",
            "stamp",
            "wire_key",
        ),
    ),
    ("grpc core + event loop (C, below Python)", ("Runner.run",)),
    ("threads below Python (grpc poller, ...)", ("Thread.run",)),
]


def stage_of(frames: list[str]) -> str:
    for frame in reversed(frames):
        for stage, needles in STAGES:
            if any(n in frame for n in needles):
                return stage
    return "other"


def summarise_pyspy(raw: Path) -> dict[str, Any]:
    stages: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack:
            continue
        count = int(n)
        frames = [f.split(" (")[0] for f in stack.split(";")]
        total += count
        stages[stage_of(frames)] += count
        leaf[frames[-1]] += count
    share = {k: round(v / total, 4) for k, v in stages.most_common()} if total else {}
    top = {k: round(v / total, 4) for k, v in leaf.most_common(15)} if total else {}
    return {"samples": total, "stages": share, "top_leaf_frames": top}


def _wait_for_load(pid: int, running: Future[Any], timeout: float = 120.0) -> None:
    """Return once the server burns CPU (the clients have started), or the run ended."""
    deadline = time.monotonic() + timeout
    last = tree_cpu_seconds(pid) or 0.0
    while time.monotonic() < deadline and not running.done():
        time.sleep(0.2)
        now = tree_cpu_seconds(pid) or 0.0
        if now - last > 0.05:  # > 25% of a core over 0.2 s
            return
        last = now


def summarise_perf(data: Path) -> dict[str, float]:
    r = subprocess.run(
        [
            "perf",
            "report",
            "-i",
            str(data),
            "--no-children",
            "-g",
            "none",
            "--sort",
            "dso",
            "--stdio",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    out: dict[str, float] = {}
    for line in r.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].endswith("%") and not line.startswith("#"):
            out[" ".join(parts[1:])] = round(float(parts[0].rstrip("%")) / 100, 4)
    return dict(list(out.items())[:10])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=None, help="server config (default: the bundled one)")
    ap.add_argument("--mix", choices=["unique", "mix", "hit"], default="unique")
    ap.add_argument("--mode", choices=["closed", "open"], default="closed")
    ap.add_argument("--rate", type=float, default=1000.0, help="open loop: offered requests/s")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--duration", type=float, default=15.0, help="profiled seconds")
    ap.add_argument("--sample-hz", type=int, default=100)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    # The venv's own py-spy when run as .venv/bin/python without the venv on PATH.
    beside = Path(sys.executable).with_name("py-spy")
    pyspy = str(beside) if beside.exists() else shutil.which("py-spy")
    if pyspy is None:
        ap.error("py-spy is not installed (pip install -e .[dev])")

    handle = start_server("semroute", config=args.config)
    tmp = Path(tempfile.mkdtemp(prefix="semroute-profile-"))
    sc = Scenario(
        name=f"profile-{args.mix}",
        target=handle.target,
        server_pid=handle.pid,
        mode=args.mode,
        rate=args.rate,
        concurrency=args.concurrency,
        mix=args.mix,
        duration=args.duration,
        warmup=3.0,
    ).resolved()
    window = max(int(args.duration) - 2, 1)
    try:
        with ThreadPoolExecutor(1) as pool:
            running = pool.submit(_drive, sc, handle.target, handle.pid)
            _wait_for_load(handle.pid, running)
            time.sleep(sc.warmup)  # sample the measured window, not the warm-up
            samplers = [
                subprocess.Popen(
                    [
                        pyspy,
                        "record",
                        "-p",
                        str(handle.pid),
                        "-r",
                        str(args.sample_hz),
                        "-d",
                        str(window),
                        "-f",
                        "raw",
                        "-o",
                        str(tmp / "spy.raw"),
                        "--nonblocking",
                        "--threads",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            ]
            if shutil.which("perf"):
                samplers.append(
                    subprocess.Popen(
                        [
                            "perf",
                            "record",
                            "-e",
                            "cpu-clock",
                            "-F",
                            "499",
                            "-p",
                            str(handle.pid),
                            "-o",
                            str(tmp / "perf.data"),
                            "--",
                            "sleep",
                            str(window),
                        ],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )
            for p in samplers:
                p.wait(window + 60)
            load = running.result()
    finally:
        stop_server(handle)
    spy_summary = summarise_pyspy(tmp / "spy.raw") if (tmp / "spy.raw").exists() else {}
    perf_summary = summarise_perf(tmp / "perf.data") if (tmp / "perf.data").exists() else {}
    result = {
        "benchmark": "profile",
        "load": {
            k: load.get(k)
            for k in ("achieved_rps", "latency_us", "server", "tiers", "errors", "client")
        },
        "scenario": {
            "mix": args.mix,
            "mode": args.mode,
            "rate": args.rate,
            "concurrency": args.concurrency,
            "duration_s": args.duration,
        },
        "loadavg_1m": os.getloadavg()[0],
        "pyspy": spy_summary,
        "perf_by_library": perf_summary,
    }
    print(f"{args.mix} {args.mode}: {load.get('achieved_rps')} req/s")
    print("server CPU by pipeline stage (py-spy samples):")
    for stage, share in spy_summary.get("stages", {}).items():
        print(f"  {share * 100:5.1f}%  {stage}")
    if perf_summary:
        print("server CPU by library (perf cpu-clock):")
        for lib, share in perf_summary.items():
            print(f"  {share * 100:5.1f}%  {lib}")
    out = args.out or RESULTS / f"profile-{args.mix}-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"-> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
