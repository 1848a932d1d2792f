"""CPU per prompt of the cascade's static tier (static embedding + route head) vs the classifier.

Why CPU and not wall time: the dev box is shared (load average often above its 2 cores), so
wall time mostly measures the neighbours; the process's own CPU time per prompt is what the
cascade saves. Both paths run one prompt at a time (the serving shape for a unique prompt),
in interleaved rounds over the same prompts, and both include their route head:

* static tier: ``StaticEncoder.encode([text])`` then the static route head's probabilities;
* classifier: ``Encoder.encode([text])`` (int8 ONNX, ``encoder.intra_op_threads`` from the
  config) then the classifier head's probabilities.

It also routes every prompt through the router with the fast tier on and reports the share the
static tier answered and the CPU of a decision by tier. Prompts (none trained on by either
model): MT-Bench first turns, held-out MMLU questions (models/build_static.py's hold-out) and
the chat/FAQ prompts of benchmarks/prompts.py; those a rule decides are dropped.

    python -m benchmarks.cascade_speed        # writes benchmarks/results/cascade_speed-<ts>.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from benchmarks.prompts import chat_prompts, default_data_dir, load_mmlu, load_mt_bench
from benchmarks.static_tier import is_heldout
from semroute.config import load_config
from semroute.encoder import Encoder, default_model_dir
from semroute.encoder.static import StaticEncoder, default_static_dir
from semroute.encoder.variants import cpu_signature
from semroute.route_index import build_route_index
from semroute.router import Router, RoutingState
from semroute.rules import RuleSet
from semroute.types import RouteQuery, Tier

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def prompts(per_source: int) -> dict[str, list[str]]:
    root = default_data_dir()
    singles, _ = load_mt_bench(root)
    mmlu = [t for t in load_mmlu(root) if is_heldout(t)]
    return {
        "mt_bench": singles[:per_source],
        "mmlu_heldout": mmlu[:per_source],
        "chat": chat_prompts()[:per_source],
    }


def cpu_us_per_prompt(fn: Callable[[str], object], texts: Sequence[str]) -> float:
    t0 = time.process_time_ns()
    for t in texts:
        fn(t)
    return (time.process_time_ns() - t0) / len(texts) / 1e3


def main(argv: Sequence[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--per-source", type=int, default=80)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)

    config = load_config()
    rules = RuleSet(config.rules)
    sets = {
        k: [t.strip() for t in v if t.strip() and rules.first_match(t.strip()) is None]
        for k, v in prompts(args.per_source).items()
    }
    enc = Encoder(
        default_model_dir(),
        max_tokens=config.encoder.max_tokens,
        intra_op_threads=config.encoder.intra_op_threads,
    )
    static = StaticEncoder(default_static_dir(), max_tokens=config.encoder.max_tokens)
    head, clf_head = static.route_head, enc.route_head
    assert head is not None and clf_head is not None

    def static_tier(text: str) -> np.ndarray:
        return head.probabilities(static.encode([text]))

    def classifier(text: str) -> np.ndarray:
        return clf_head.probabilities(enc.encode([text]))

    paths = {"static_tier": static_tier, "classifier": classifier}
    for fn in paths.values():  # warm-up
        for t in next(iter(sets.values()))[:5]:
            fn(t)
    runs: dict[str, dict[str, list[float]]] = {k: {p: [] for p in paths} for k in sets}
    for _ in range(args.rounds):  # interleaved: each round runs every path on every set
        for name, texts in sets.items():
            for path, fn in paths.items():
                runs[name][path].append(cpu_us_per_prompt(fn, texts))
    speed = {}
    for name, by_path in runs.items():
        med = {p: statistics.median(v) for p, v in by_path.items()}
        speed[name] = {
            "prompts": len(sets[name]),
            "cpu_us_per_prompt": {p: round(v, 1) for p, v in med.items()},
            "rounds": {p: [round(x, 1) for x in v] for p, v in by_path.items()},
            "ratio": round(med["classifier"] / med["static_tier"], 1),
        }

    # The router with the fast tier on: which tier answers, and a decision's CPU by tier.
    cfg = config.model_copy(
        update={"fast_tier": config.fast_tier.model_copy(update={"enabled": True})}
    )
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        index = Path(tmp) / "index"
        build_route_index(cfg, enc, index)
        router = Router(enc, RoutingState.load(cfg, enc, index, static), static)
        by_tier: dict[str, list[float]] = {}
        for texts in sets.values():
            for t in texts:
                t0 = time.process_time_ns()
                d = router.route(RouteQuery(text=t))
                us = (time.process_time_ns() - t0) / 1e3
                by_tier.setdefault(Tier(d.tier).name, []).append(us)
    total = sum(len(v) for v in by_tier.values())
    routed = {
        k: {
            "share": round(len(v) / total, 3),
            "cpu_us_per_decision_median": round(statistics.median(v), 1),
        }
        for k, v in sorted(by_tier.items())
    }
    result = {
        "what": "CPU per prompt (process time), one prompt at a time, interleaved rounds",
        "static_model": static.id,
        "static_head": head.version,
        "classifier": enc.id,
        "intra_op_threads": config.encoder.intra_op_threads,
        "max_tokens": config.encoder.max_tokens,
        "speed": speed,
        "router_with_fast_tier": routed,
        "cpu": cpu_signature(),
        "python": platform.python_version(),
        "loadavg": list(np.round(np.array(__import__("os").getloadavg()), 2)),
    }
    out = (
        args.out or RESULTS / f"cascade_speed-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}.json"
    )
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "cpu"}, indent=1))
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
