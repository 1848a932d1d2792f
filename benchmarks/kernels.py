"""Encoder kernels per CPU (issue 12, item 3) and the token budget (item 2).

1. **Kernels**: every shipped variant of the route classifier (models/build_variants.py) at
   1, 2 and all-cores intra-op threads, one real corpus prompt per call (the serving shape),
   rounds interleaved so that background load hits every candidate alike. Reported per
   candidate: ms per prompt (median of the round means), per-call p50/p90, and the ratio to
   int8-block64 at 1 thread measured in the same run.
2. **Token budget**: route accuracy (argmax of the route head against the corpus labels, strict
   and "accepted") and speed at ``max_tokens`` 32, 64 and 128, head+tail truncation (serving)
   against head only. Accuracy is measured on prompts the shipped model never trained on: the
   in-source validation groups build_classifier.py holds out of every corpus source (its
   ``split``, same seed), plus all of MT-Bench (evaluation only).

    python -m benchmarks.kernels            # writes benchmarks/results/kernels-<UTC>.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from semroute.encoder import Encoder, default_model_dir, read_metadata
from semroute.encoder.onnx_backend import OnnxBackend
from semroute.encoder.tokenize import HEAD, HEAD_TAIL, TextTokenizer
from semroute.encoder.variants import available_cores, cpu_signature, model_variants

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "models"))

BUDGETS = (32, 64, 128)
SERVING_MAX_TOKENS = 128


def kernel_prompts(shared: Path, n: int) -> list[str]:
    from build_variants import corpus_sample

    return [e.text for e in corpus_sample(shared, n)]


def time_candidates(
    backends: dict[str, OnnxBackend], batches: list[Any], rounds: int
) -> dict[str, dict[str, float]]:
    """Interleaved rounds; per candidate the median round mean and per-call p50/p90 (ms)."""
    for b in backends.values():
        for batch in batches[:3]:
            b.run(batch)
    means: dict[str, list[float]] = {k: [] for k in backends}
    calls: dict[str, list[float]] = {k: [] for k in backends}
    for r in range(rounds):
        order = list(backends.items())
        if r % 2:
            order.reverse()
        for k, b in order:
            start = time.perf_counter()
            for batch in batches:
                t = time.perf_counter()
                b.run(batch)
                calls[k].append((time.perf_counter() - t) * 1000)
            means[k].append((time.perf_counter() - start) * 1000 / len(batches))
    return {
        k: {
            "ms_per_prompt": round(statistics.median(means[k]), 3),
            "call_p50_ms": round(float(np.percentile(calls[k], 50)), 3),
            "call_p90_ms": round(float(np.percentile(calls[k], 90)), 3),
        }
        for k in backends
    }


def bench_kernels(
    model_dir: Path, prompts: list[str], rounds: int, extra: dict[str, Path]
) -> dict[str, Any]:
    variants = {n: v.path for n, v in model_variants(model_dir, read_metadata(model_dir)).items()}
    variants.update(extra)
    cores = available_cores()
    threads = sorted({1, 2, cores} & set(range(1, cores + 1)))
    tok = TextTokenizer(model_dir / "tokenizer.json", SERVING_MAX_TOKENS)
    batches = [tok.encode_batch([p]) for p in prompts]
    backends = {
        f"{n}@{t}": OnnxBackend(path, intra_op_threads=t, output_normalized=True)
        for n, path in variants.items()
        for t in threads
    }
    table = time_candidates(backends, batches, rounds)
    base = table[f"{next(iter(variants))}@1"]["ms_per_prompt"]
    for row in table.values():
        row["vs_default_1_thread"] = round(row["ms_per_prompt"] / base, 3)
    return {
        "prompts": len(prompts),
        "mean_tokens": round(float(np.mean([int(b.lengths[0]) for b in batches])), 1),
        "max_tokens": SERVING_MAX_TOKENS,
        "threads": threads,
        "rounds": rounds,
        "unshipped": {n: str(p) for n, p in extra.items()},
        "table": table,
    }


def held_out(shared: Path, per_source: int) -> list[Any]:
    """Corpus prompts the shipped model never trained on (see the module docstring), at most
    ``per_source`` from each source (the first by a fixed hash), so no source dominates."""
    import hashlib

    import build_classifier as bc
    from route_corpus import load_mt_bench

    _, val = bc.split(bc.collect(shared, bc.SEED), set(), bc.SEED)
    pool = [e for e in val if not e.source.startswith("semroute_")]
    pool += load_mt_bench(shared / "routellm")
    pool.sort(key=lambda e: hashlib.sha256(f"budget:{e.source}:{e.text}".encode()).hexdigest())
    taken: dict[str, int] = {}
    out = []
    for e in pool:
        if taken.get(e.source, 0) < per_source:
            taken[e.source] = taken.get(e.source, 0) + 1
            out.append(e)
    return out


def bench_budget(
    model_dir: Path, shared: Path, speed_prompts: list[str], rounds: int, per_source: int
) -> dict[str, Any]:
    from route_corpus import ROUTES

    items = held_out(shared, per_source)
    texts = [e.text for e in items]
    encoders = {
        f"{trunc}@{m}": Encoder(model_dir, intra_op_threads=1, max_tokens=m, truncation=trunc)
        for m in BUDGETS
        for trunc in (HEAD_TAIL, HEAD)
    }
    full = encoders[f"{HEAD_TAIL}@{BUDGETS[-1]}"]
    lengths = np.array([full.count_tokens(t) for t in texts])
    accuracy: dict[str, Any] = {}
    for key, enc in encoders.items():
        assert enc.route_head is not None
        pred = [ROUTES[i] for i in enc.route_head.logits(enc.encode(texts)).argmax(1)]
        strict = np.array([p == e.route for p, e in zip(pred, items, strict=True)])
        accepted = np.array([e.accepts(p) for p, e in zip(pred, items, strict=True)])
        row: dict[str, Any] = {
            "strict": round(float(strict.mean()), 4),
            "accepted": round(float(accepted.mean()), 4),
        }
        for cut in (*BUDGETS[:-1], SERVING_MAX_TOKENS):
            long = lengths > cut
            if long.any():
                row[f"accepted_over_{cut}_tokens"] = round(float(accepted[long].mean()), 4)
        accuracy[key] = row
    # Speed: the same prompts as the kernel table, one per call, shipped default graph.
    batches: dict[str, list[Any]] = {}
    backends: dict[str, OnnxBackend] = {}
    for key, enc in encoders.items():
        batches[key] = [enc._tokenizer.encode_batch([p]) for p in speed_prompts]
        backends[key] = enc._backend
    speed: dict[str, dict[str, float]] = {k: {} for k in encoders}
    for r in range(rounds):
        order = list(encoders) if r % 2 == 0 else list(reversed(encoders))
        for k in order:
            start = time.perf_counter()
            for b in batches[k]:
                backends[k].run(b)
            speed[k].setdefault("rounds", []).append(  # type: ignore[arg-type]
                (time.perf_counter() - start) * 1000 / len(speed_prompts)
            )
    base = statistics.median(speed[f"{HEAD_TAIL}@{SERVING_MAX_TOKENS}"]["rounds"])  # type: ignore[arg-type]
    speed_out = {
        k: {
            "ms_per_prompt": round(statistics.median(v["rounds"]), 3),  # type: ignore[arg-type]
            "vs_128": round(statistics.median(v["rounds"]) / base, 3),  # type: ignore[arg-type]
            "mean_tokens": round(float(np.mean([int(b.lengths[0]) for b in batches[k]])), 1),
        }
        for k, v in speed.items()
    }
    by_source: dict[str, int] = {}
    for e in items:
        by_source[e.source] = by_source.get(e.source, 0) + 1
    return {
        "held_out": "build_classifier.split(collect(...), seed 20261201) validation groups of "
        f"every external corpus source + MT-Bench first turns, at most {per_source} per source",
        "prompts": len(items),
        "by_source": dict(sorted(by_source.items())),
        "prompts_over_tokens": {str(c): int((lengths > c).sum()) for c in BUDGETS},
        "variant": full.variant,
        "accuracy": accuracy,
        "speed": speed_out,
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model-dir", type=Path, default=default_model_dir())
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--prompts", type=int, default=48, help="corpus prompts timed per round")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--skip-budget", action="store_true", help="kernel table only")
    ap.add_argument("--per-source", type=int, default=60, help="token budget: prompts per source")
    ap.add_argument(
        "--extra-variant",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="also time an unshipped graph (e.g. build_variants.py --variants int8-dynamic)",
    )
    ap.add_argument("--out", type=Path, help="result JSON (default: benchmarks/results/...)")
    args = ap.parse_args(argv)

    extra = {n: Path(p) for n, _, p in (e.partition("=") for e in args.extra_variant)}
    prompts = kernel_prompts(args.shared, args.prompts)
    started = datetime.now(timezone.utc)
    result: dict[str, Any] = {
        "when": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "cpu": cpu_signature(),
        "kernels": bench_kernels(args.model_dir, prompts, args.rounds, extra),
    }
    print(json.dumps({"cpu": result["cpu"], "kernels": result["kernels"]}, indent=1), flush=True)
    if not args.skip_budget:
        result["token_budget"] = bench_budget(
            args.model_dir, args.shared, prompts, args.rounds, args.per_source
        )
        print(json.dumps(result["token_budget"], indent=1), flush=True)
    out = args.out or RESULTS / f"kernels-{started.strftime('%Y%m%dT%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
