"""Similar-prompt cache calibration: how many light edits it catches, and at what agreement.

For every held-out prompt of benchmarks/static_tier.py (chat/FAQ, MT-Bench, held-out MMLU,
route probes) one light edit is made with the load generator's own ``paraphrase`` (a greeting,
a "thanks", a word swapped, case or final punctuation changed). Both are routed by the encoder
(``Router.route``, default constraints and knob) and embedded by the static encoder. Per
threshold it reports:

* ``edits_caught``: share of edits whose static cosine to their original reaches the threshold;
* ``edit_agreement``: among those, how often the original's decision (route and model) equals
  the encoder's own decision for the edit;
* ``encoder_self_agreement``: the same equality over all edits, i.e. how stable the encoder
  itself is under such edits (the ceiling of the line above);
* ``distinct_pairs``/``distinct_agreement``: pairs of *different* prompts (each prompt and its
  nearest other prompt) at or above the threshold, and how often their decisions agree: what a
  false match would cost.

    python -m benchmarks.similar_cache      # writes benchmarks/results/similar_cache-<ts>.json
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np

from benchmarks.prompts import default_data_dir, paraphrase
from benchmarks.static_tier import RESULTS, prompt_set
from semroute.config import load_config
from semroute.encoder.static import StaticEncoder, default_static_dir
from semroute.server.app import load_router
from semroute.types import RouteQuery

THRESHOLDS = [0.90, 0.93, 0.95, 0.96, 0.97, 0.98, 0.985, 0.99, 0.995]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=None, help="semroute config (default: the bundled one)")
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="JSON path (default: results dir)")
    args = ap.parse_args(argv)

    config = load_config(args.config)
    config = config.model_copy(
        update={"fast_tier": config.fast_tier.model_copy(update={"enabled": False})}
    )
    router = load_router(config)
    static = StaticEncoder(default_static_dir(), max_tokens=config.encoder.max_tokens)
    prompts = prompt_set(config, args.data_dir or default_data_dir())
    rng = random.Random(args.seed)
    texts = [t for _, t in prompts]
    edits = [paraphrase(t, rng) for t in texts]

    t0 = time.perf_counter()

    def decide(text: str) -> tuple[str, str]:
        d = router.route(RouteQuery(text=text))
        return d.route, d.model

    original = [decide(t) for t in texts]
    edited = [decide(t) for t in edits]
    routed_s = time.perf_counter() - t0
    e_orig, e_edit = static.encode(texts), static.encode(edits)
    edit_cos = (e_orig * e_edit).sum(1)
    same_edit = np.array([a == b for a, b in zip(original, edited, strict=True)])
    sims = e_orig @ e_orig.T
    np.fill_diagonal(sims, -1.0)
    nearest = sims.argmax(1)
    distinct_cos = sims[np.arange(len(texts)), nearest]
    same_distinct = np.array([original[i] == original[j] for i, j in enumerate(nearest)])

    rows = []
    for t in THRESHOLDS:
        caught, close = edit_cos >= t, distinct_cos >= t
        rows.append(
            {
                "threshold": t,
                "edits_caught": round(float(caught.mean()), 4),
                "edit_agreement": round(float(same_edit[caught].mean()), 4)
                if caught.any()
                else None,
                "distinct_pairs": int(close.sum()),
                "distinct_agreement": (
                    round(float(same_distinct[close].mean()), 4) if close.any() else None
                ),
            }
        )
    result = {
        "benchmark": "similar_cache",
        "prompts": len(texts),
        "sources": {s: sum(1 for p, _ in prompts if p == s) for s in {p for p, _ in prompts}},
        "encoder_self_agreement": round(float(same_edit.mean()), 4),
        "routed_s": round(routed_s, 1),
        "static_encoder": static.id,
        "thresholds": rows,
    }
    print(
        f"{len(texts)} prompts + one light edit each; encoder self-agreement under edits "
        f"{result['encoder_self_agreement']:.3f}"
    )
    print(
        f"{'threshold':>9} {'edits caught':>12} {'agreement':>9} {'distinct pairs':>14} "
        f"{'agreement':>9}"
    )
    for r in rows:
        ea = "-" if r["edit_agreement"] is None else f"{r['edit_agreement']:.3f}"
        da = "-" if r["distinct_agreement"] is None else f"{r['distinct_agreement']:.3f}"
        print(
            f"{r['threshold']:>9} {r['edits_caught']:>12.3f} {ea:>9} "
            f"{r['distinct_pairs']:>14} {da:>9}"
        )
    out = args.out or RESULTS / f"similar_cache-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"-> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
