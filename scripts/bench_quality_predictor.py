#!/usr/bin/env python3
"""Per-request latency of QualityPredictor.predict (one prompt per call, embedding given).

    python scripts/bench_quality_predictor.py var/bundles/learned [--calls 3000]

Prints p50/p99 in microseconds with and without the text head, plus the machine's load
average (a shared box moves these figures a lot: compare runs made side by side).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from semroute.encoder import Encoder, default_model_dir
from semroute.predictor import QualityPredictor

TEXTS = (
    "What is the derivative of x^2 sin x?",
    "Write a haiku about the sea.",
    "Which amendment to the US constitution abolished slavery?",
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("bundle")
    ap.add_argument("--calls", type=int, default=3000)
    args = ap.parse_args()
    enc = Encoder(default_model_dir(), device="cpu")
    pred = QualityPredictor.for_encoder(args.bundle, enc)
    emb = enc.encode(list(TEXTS))
    out: dict[str, object] = {"examples": int(pred.index.ntotal), "k": pred.k}
    for use_text in (False, True):
        times = []
        for i in range(args.calls + 200):
            j = i % len(TEXTS)
            t0 = time.perf_counter_ns()
            pred.predict(emb[j : j + 1], [TEXTS[j]] if use_text else None)
            times.append(time.perf_counter_ns() - t0)
        us = np.array(times[200:]) / 1000
        out["with_text" if use_text else "embedding_only"] = {
            "p50_us": float(np.percentile(us, 50)),
            "p99_us": float(np.percentile(us, 99)),
        }
    out["load_average"] = os.getloadavg()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
