"""Encoder throughput by run size: does micro-batching pay on this CPU?

The server's encoder (default config: kernel variant and intra-op threads as chosen at start)
encodes the same prompts on `server.inference_threads` threads, split into runs the way the
micro-batcher forms them (`semroute.batcher._next_run`: the oldest text and up to
`max_batch - 1` others of similar length). Texts per second and CPU per text are reported
per (max_batch, bucket_ratio), each as a ratio to one text per run measured in the same
rounds (rounds interleaved, median of `--rounds`), for long prompts (MMLU questions with their
choices, MT-Bench turns) and short chat prompts.

    python -m benchmarks.encoder_batching   # ~1 min; writes results/encoder_batching-*.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from benchmarks.classifier_speed import RESULTS
from benchmarks.prompts import chat_prompts, default_data_dir, load_mmlu, load_mt_bench
from semroute.batcher import _next_run
from semroute.config import default_config_path, load_config
from semroute.encoder.variants import cpu_signature
from semroute.server.app import make_encoder

SHAPES = ((1, 2.0), (4, 1.2), (8, 1.2), (8, 2.0), (32, 1.2), (32, 2.0))


def prompt_sets(n: int, seed: int = 7) -> dict[str, list[str]]:
    data = default_data_dir()
    singles, _ = load_mt_bench(data)
    rng = random.Random(seed)
    long = load_mmlu(data)[:3000] + singles
    short = [t for t in chat_prompts() if len(t) < 160]
    return {
        "long": rng.sample(long, min(n, len(long))),
        "short": [rng.choice(short) + f" #{i}" for i in range(n)],
    }


def runs_of(texts: list[str], max_batch: int, ratio: float) -> list[list[str]]:
    """The runs the micro-batcher would form with every text already waiting."""

    async def split() -> list[list[str]]:
        loop = asyncio.get_running_loop()
        pending: list[Any] = [(t, loop.create_future()) for t in texts]
        out = []
        while pending:
            run, pending = _next_run(pending, max_batch, ratio)
            out.append([t for t, _ in run])
        return out

    return asyncio.run(split())


def measure(encode: Any, runs: list[list[str]], threads: int) -> tuple[float, float]:
    """(texts per second, CPU ms per text) of encoding `runs` on `threads` threads."""
    n = sum(len(r) for r in runs)
    wall, cpu = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(encode, runs))
    return n / (time.perf_counter() - wall), (time.process_time() - cpu) * 1000 / n


def main(argv: Sequence[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--prompts", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    config = load_config(default_config_path())
    encoder = make_encoder(config)
    threads = config.server.inference_threads
    sets = prompt_sets(args.prompts)
    results: dict[str, list[dict[str, Any]]] = {}
    for name, texts in sets.items():
        encoder.encode(texts[:16])  # warm-up
        plans = {shape: runs_of(texts, *shape) for shape in SHAPES}
        samples: dict[tuple[int, float], list[tuple[float, float]]] = {s: [] for s in SHAPES}
        for _ in range(args.rounds):
            for shape, runs in plans.items():
                samples[shape].append(measure(encoder.encode, runs, threads))
        base = statistics.median(rate for rate, _ in samples[SHAPES[0]])
        rows = []
        for (max_batch, ratio), got in samples.items():
            rate = statistics.median(r for r, _ in got)
            cpu_ms = statistics.median(c for _, c in got)
            rows.append({
                "max_batch": max_batch,
                "bucket_ratio": ratio,
                "runs": len(plans[(max_batch, ratio)]),
                "texts_per_s": round(rate, 1),
                "cpu_ms_per_text": round(cpu_ms, 2),
                "ratio_to_one_per_run": round(rate / base, 3),
            })  # fmt: skip
            print(f"{name:<5} max_batch {max_batch:>2} ratio {ratio:<3}  {rate:7.1f} texts/s  "
                  f"{cpu_ms:6.2f} ms CPU/text  {rate / base:5.2f}x one per run")  # fmt: skip
        results[name] = rows
    out = {
        "benchmark": "encoder_batching",
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu_signature(),
        "encoder": {"kernel": getattr(encoder, "kernel", None), "threads": threads},
        "prompts": {k: len(v) for k, v in sets.items()},
        "mean_chars": {k: round(statistics.mean(map(len, v)), 1) for k, v in sets.items()},
        "rounds": args.rounds,
        "results": results,
    }
    path = args.out or RESULTS / f"encoder_batching-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps(out, indent=1, default=str) + "\n")
    print(f"-> {path}")
    return out


if __name__ == "__main__":
    main()
