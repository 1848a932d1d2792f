"""CPU per `Pipeline.decide()` on an exact-bytes (wire) cache hit, in-process.

The load generator's server CPU per request is ~250 µs on the shared 2-core box,
almost all of it gRPC, and moves by ±10% between identical runs; a change of
under a microsecond to the hit path is invisible there. This measures the
pipeline's own part alone (process CPU time, so other jobs on the box matter
less): 16 requests decided once, then answered from their cached bytes.
Run it on two checkouts (PYTHONPATH=OTHER_CHECKOUT for the other) and compare.

    python -m benchmarks.hit_path --index var/index/default --out benchmarks/results/X.json
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from semroute.config import load_config
from semroute.pipeline import Pipeline
from semroute.server.app import load_router
from semroute.v1 import router_pb2 as pb


async def measure(index: Path | None, calls: int, rounds: int, metrics: bool) -> dict[str, Any]:
    config = load_config()
    router = load_router(config, index)
    pool = ThreadPoolExecutor(2)
    kwargs: dict[str, Any] = {}
    has_metrics = "metrics" in inspect.signature(Pipeline.__init__).parameters
    if metrics and has_metrics:
        from semroute.metrics import Recorder

        kwargs["metrics"] = Recorder()
    pipeline = Pipeline(config, pool, **kwargs)
    pipeline.set_router(router)
    requests = [
        pb.RouteRequest(prompt=f"what are your opening hours on day {i}?", request_id=f"r{i}")
        for i in range(16)
    ]
    for r in requests:  # decided once: every call below is a wire hit
        await pipeline.decide(r)
    per_call = []
    for _ in range(rounds):
        t0 = time.process_time_ns()
        for i in range(calls):
            await pipeline.decide(requests[i & 15])
        per_call.append((time.process_time_ns() - t0) / calls / 1000)
    pool.shutdown()
    return {
        "variant": "metrics on" if kwargs else ("metrics off" if has_metrics else "no metrics"),
        "cpu_us_per_decide_min": round(min(per_call), 3),
        "cpu_us_per_decide": [round(x, 3) for x in per_call],
        "wire_hits": pipeline.wire_hits,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--index", type=Path, help="index bundle (default: the config's)")
    p.add_argument("--calls", type=int, default=20_000)
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--no-metrics", action="store_true", help="the pipeline's default recorder")
    p.add_argument("--out", type=Path, help="append the result (a JSON line) here")
    args = p.parse_args()
    result = asyncio.run(measure(args.index, args.calls, args.rounds, not args.no_metrics))
    result["pipeline"] = inspect.getsourcefile(Pipeline)
    line = json.dumps(result)
    print(line)
    if args.out:
        with args.out.open("a") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
