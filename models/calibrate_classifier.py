#!/usr/bin/env python3
"""Choose ``classifier.min_confidence`` and ``tie_margin`` on out-of-source probabilities.

Why out of source: on its own training sources the classifier is confident and right, so any
threshold looks free. models/eval_loso.py saves, for every scored prompt, the calibrated
probabilities of a model that never saw the prompt's source; this script replays the serving
decision rule (`semroute.route_classifier.ClassifierRoutes.match`, with the default config's
routes and quality bars) over a grid and reports macro accuracy over sources and the
price-weighted error (under-routing to a cheaper model counts double) for each setting.

    python models/calibrate_classifier.py var/loso/route-loso.probs.npz \\
        --out benchmarks/results/classifier-calibration-$(date -u +%Y%m%dT%H%M%S).json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from semroute.config import ClassifierSpec, Config, load_config  # noqa: E402
from semroute.encoder.route_head import RouteHead  # noqa: E402
from semroute.policy import Policy  # noqa: E402
from semroute.route_classifier import ClassifierRoutes  # noqa: E402
from semroute.route_eval import LabelledPrompt, price_weighted_error, route_prices  # noqa: E402

MIN_CONFIDENCE = (0.0, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6)
TIE_MARGIN = (0.0, 0.05, 0.1, 0.15, 0.2)


def replay(
    config: Config,
    probs: np.ndarray,
    taxonomy: Sequence[str],
    min_confidence: float,
    tie_margin: float,
) -> list[str]:
    """The config's route for each row of taxonomy probabilities."""
    spec = ClassifierSpec(min_confidence=min_confidence, tie_margin=tie_margin)
    config = config.model_copy(update={"classifier": spec})
    n = len(taxonomy)
    # An identity head: the embedding *is* the log-probability vector.
    head = RouteHead(
        tuple(taxonomy),
        np.eye(n, dtype=np.float32),
        np.zeros(n, np.float32),
        1.0,
        "replay",
        "route_logits",
    )
    routes = ClassifierRoutes.build(config, head)
    assert routes is not None
    names = [r.name for r in config.routes]
    logp = np.log(np.maximum(probs, 1e-12)).astype(np.float32)
    return [names[routes.match(routes.probabilities(row[None, :]), None)[0]] for row in logp]


def score(z: dict[str, np.ndarray], predicted: list[str], price) -> dict[str, float]:  # type: ignore[no-untyped-def]
    items = [
        LabelledPrompt("", str(lbl), tuple(a for a in str(also).split("|") if a))
        for lbl, also in zip(z["label"], z["also"], strict=True)
    ]
    ok = np.array([i.accepts(p) for i, p in zip(items, predicted, strict=True)])
    sources = z["source"]
    macro = float(np.mean([ok[sources == s].mean() for s in np.unique(sources)]))
    pw = price_weighted_error(items, predicted, price)
    return {
        "macro_accuracy": round(macro, 4),
        "micro_accuracy": round(float(ok.mean()), 4),
        "default_share": round(float(np.mean([p == "general" for p in predicted])), 4),
        **pw,
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("probs", type=Path, help="the .probs.npz models/eval_loso.py wrote")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    z = dict(np.load(args.probs))
    config = load_config()
    price = route_prices(Policy(config), config)
    grid = []
    for mc in MIN_CONFIDENCE:
        for tm in TIE_MARGIN:
            routes = replay(config, z["probs"], [str(r) for r in z["routes"]], mc, tm)
            s = score(z, routes, price)
            grid.append({"min_confidence": mc, "tie_margin": tm, **s})
            print(json.dumps(grid[-1]), flush=True)
    # Best macro accuracy; among settings within half a point of it, the lowest weighted error.
    top = max(g["macro_accuracy"] for g in grid)
    near = [g for g in grid if g["macro_accuracy"] >= top - 0.005]
    best = min(near, key=lambda g: (g["weighted_error"], -g["macro_accuracy"]))
    result = {
        "what": "classifier.min_confidence / tie_margin replayed on leave-sources-out "
        "probabilities (default config's routes and bars)",
        "probs": str(args.probs),
        "chosen": best,
        "grid": grid,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"chosen: {json.dumps(best)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
