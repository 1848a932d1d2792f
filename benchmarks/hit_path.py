"""CPU per exact-bytes hit of `Pipeline.decide`, in-process (no gRPC), across source trees.

A hook on the hit path costs tens of nanoseconds, far below what a gRPC load
test on a shared 2-core box can resolve (the call itself is ~250 µs of server
CPU). This times the pipeline alone: each tree (a checkout, e.g. the commit
before a change, with its built extensions) is run in its own process,
interleaved, several rounds; the figure is process CPU per call.

    python -m benchmarks.hit_path --tree before=/tmp/base --tree after=. --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"

# Runs inside the tree under test (PYTHONPATH): prints {"cpu_ns_per_call": ..., "calls": ...}.
CHILD = r"""
import asyncio, json, sys, time
from concurrent.futures import ThreadPoolExecutor
from semroute.config import load_config
from semroute.pipeline import Pipeline
from semroute.server.app import load_router
from semroute.v1 import router_pb2 as pb

async def main(calls):
    config = load_config()
    pool = ThreadPoolExecutor(2)
    pipeline = Pipeline(config, pool)
    pipeline.set_router(load_router(config))
    reqs = [pb.RouteRequest(prompt=p, request_id="x") for p in (
        "what are your opening hours?", "translate this paragraph into French",
        "write a python function that parses a CSV file", "hi there!")]
    for r in reqs:
        await pipeline.decide(r)
    hits0 = pipeline.wire_hits
    for _ in range(2000):
        await pipeline.decide(reqs[0])
    t0 = time.process_time_ns()
    for i in range(calls):
        await pipeline.decide(reqs[i & 3])
    cpu = time.process_time_ns() - t0
    assert pipeline.wire_hits - hits0 == calls + 2000, "not the exact-bytes path"
    print(json.dumps({"cpu_ns_per_call": cpu / calls, "calls": calls}))

asyncio.run(main(int(sys.argv[1])))
"""


def run_tree(path: Path, calls: int) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}  # tracing off
    env["PYTHONPATH"] = str(path)
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(calls)],
        cwd=path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return float(json.loads(out.stdout.strip().splitlines()[-1])["cpu_ns_per_call"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tree", action="append", required=True, help="NAME=PATH (repeatable)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--calls", type=int, default=200_000)
    ap.add_argument("--name", default="hit-path")
    args = ap.parse_args()
    trees = dict(t.split("=", 1) for t in args.tree)
    runs: dict[str, list[float]] = {n: [] for n in trees}
    for r in range(args.rounds):
        for name, path in trees.items():
            ns = run_tree(Path(path).resolve(), args.calls)
            runs[name].append(round(ns, 1))
            print(f"round {r + 1} {name}: {ns:.0f} ns CPU per exact-bytes hit", flush=True)
    first = next(iter(trees))
    medians = {n: statistics.median(v) for n, v in runs.items()}
    result = {
        "tool": "benchmarks.hit_path",
        "calls_per_run": args.calls,
        "trees": trees,
        "cpu_ns_per_call": runs,
        "median_ns": medians,
        "ratio_vs_" + first: {n: round(m / medians[first], 4) for n, m in medians.items()},
        "loadavg_at_end": os.getloadavg(),
    }
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    out = RESULTS / f"{args.name}-{stamp}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["median_ns"]), result["ratio_vs_" + first], f"-> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
