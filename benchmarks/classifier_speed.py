"""CPU per decision: the route classifier (default config) vs the utterance matcher it replaced.

Both routers decide the same realistic prompts in one process, rounds interleaved so background
load hits both alike: a decision is ``Router.route`` end to end (rules, encoder, route head or
index search, policy), one prompt at a time, with the config's ``intra_op_threads`` (1) and
``max_tokens`` (128). The classifier shares the plain encoder's backbone, so the two should
cost the same; the ratio says whether they do.

    python -m benchmarks.classifier_speed   # writes benchmarks/results/classifier_speed-*.json
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

from benchmarks.prompts import chat_prompts, default_data_dir, load_mmlu, load_mt_bench
from benchmarks.static_tier import round_times
from semroute.cli import _ensure_default_index
from semroute.config import default_config_path, load_config
from semroute.encoder.variants import cpu_signature
from semroute.server.app import load_router
from semroute.types import RouteQuery

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
CONFIGS = {
    "utterance_matcher": ROOT / "configs" / "utterances.yaml",
    "classifier": default_config_path(),
}


def prompts(n: int, seed: int = 7) -> list[str]:
    data = default_data_dir()
    singles, _ = load_mt_bench(data)
    pool = load_mmlu(data)[:2000] + singles + chat_prompts()
    return random.Random(seed).sample(pool, min(n, len(pool)))


def main(argv: Sequence[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--prompts", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--min-s", type=float, default=1.0, help="seconds per timing round")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    texts = prompts(args.prompts)
    routers = {}
    for name, path in CONFIGS.items():
        config = load_config(path)
        _ensure_default_index(config)
        routers[name] = load_router(config)

    def decide_all(router) -> None:  # type: ignore[no-untyped-def]
        for t in texts:
            router.route(RouteQuery(text=t))

    per: dict[str, list[float]] = {n: [] for n in routers}
    for r in routers.values():
        decide_all(r)  # warm-up
    for _ in range(args.rounds):
        for name, r in routers.items():
            per[name] += round_times(lambda r=r: decide_all(r), len(texts), 1, args.min_s)
    base = statistics.median(per["utterance_matcher"])
    clf = statistics.median(per["classifier"])
    result = {
        "when": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "cpu": cpu_signature(),
        "python": platform.python_version(),
        "prompts": len(texts),
        "what": "µs of CPU per Router.route decision (1 intra-op thread, max_tokens 128)",
        "us_per_decision": {n: round(statistics.median(v), 1) for n, v in per.items()},
        "rounds_us": {n: [round(x, 1) for x in v] for n, v in per.items()},
        "classifier_over_matcher": round(clf / base, 3),
        "classifier_over_matcher_per_round": [
            round(c / b, 3)
            for c, b in zip(per["classifier"], per["utterance_matcher"], strict=True)
        ],
    }
    out = args.out or RESULTS / (
        "classifier_speed-" + datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S") + ".json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: result[k] for k in ("cpu", "us_per_decision", "classifier_over_matcher")}))
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
