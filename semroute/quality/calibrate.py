"""Calibration: from the request's knob to a policy tolerance, and from a traffic share to one.

Two tables, both stored in the bundle manifest under ``calibration``:

* ``knob_table`` (written by ``semroute train``): the knob is a *quality target*. Knob ``k``
  asks for a mean quality of ``q_cheap + k * (q_best - q_cheap)``, where ``q_cheap`` is the
  cheapest model's and ``q_best`` the best single model's mean quality on the labelled data
  (for two models this is a PGR target of ``k``). Its tolerance is the cheapest policy setting
  that reaches the target on the router's out-of-fold predictions for the training set.
* ``traffic`` (written by ``semroute calibrate``, RouteLLM's calibration): on a sample of real
  prompts, the tolerance at which a given share of requests goes to a model other than the
  cheapest (for two models: to the strong model), with the knob that corresponds to it.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from semroute.scoring import pick_models

TOLERANCES = np.unique(np.concatenate((np.linspace(-1.0, 1.0, 801), [0.0])))
KNOBS = np.round(np.linspace(0.0, 1.0, 21), 4)


def expensive_share(pred: np.ndarray, prices: np.ndarray, tol: float) -> float:
    """Share of prompts routed to a model other than the cheapest."""
    pick = pick_models(pred, prices, tol)
    return float(np.mean(pick != int(np.argmin(prices))))


def knob_table(
    pred: np.ndarray,
    y: np.ndarray,
    prices: np.ndarray,
    costs: np.ndarray,
    knobs: Sequence[float] = tuple(KNOBS),
) -> list[dict[str, float]]:
    """For each knob, the cheapest tolerance whose out-of-fold quality meets the knob's target."""
    rows = np.arange(y.shape[0])
    cheap = int(np.argmin(prices))
    q_cheap = float(y[:, cheap].mean())
    q_best = float(y.mean(axis=0).max())
    qual, cost, share = [], [], []
    for t in TOLERANCES:
        pick = pick_models(pred, prices, float(t))
        qual.append(y[rows, pick].mean())
        cost.append(costs[rows, pick].sum())
        share.append(np.mean(pick != cheap))
    qual_a, cost_a, share_a = np.array(qual), np.array(cost), np.array(share)
    cost_best = float(costs[:, int(np.argmax(y.mean(axis=0)))].sum())
    out: list[dict[str, float]] = []
    prev_tol = float("inf")
    for k in knobs:
        target = q_cheap + float(k) * (q_best - q_cheap)
        ok = np.flatnonzero(qual_a >= target - 1e-9)
        if ok.size == 0:  # unreachable: the highest-quality setting
            i = int(np.argmax(qual_a))
        else:  # cheapest among those meeting the target; ties -> the larger tolerance
            c = cost_a[ok]
            cands = ok[c <= c.min() * (1 + 1e-9) + 1e-12]
            i = int(cands[np.argmax(TOLERANCES[cands])])
        tol = min(float(TOLERANCES[i]), prev_tol)  # monotone: more knob, never less quality
        prev_tol = tol
        i = int(np.argmin(np.abs(TOLERANCES - tol)))
        gap = q_best - q_cheap
        out.append(
            {
                "knob": float(k),
                "quality_target": target,
                "tolerance": tol,
                "expected_quality": float(qual_a[i]),
                "expected_pgr": float((qual_a[i] - q_cheap) / gap) if gap > 0 else float("nan"),
                "expensive_share": float(share_a[i]),
                "cost_vs_best_model": float(cost_a[i] / cost_best)
                if cost_best > 0
                else float("nan"),
            }
        )
    return out


def tolerance_for_share(pred: np.ndarray, prices: np.ndarray, share: float) -> float:
    """Tolerance at which ``share`` of the prompts go to a model other than the cheapest
    (bisection: that share never grows with the tolerance)."""
    lo, hi = -1.0, 1.0  # share(lo) = 1, share(hi) = 0
    for _ in range(50):
        mid = (lo + hi) / 2
        if expensive_share(pred, prices, mid) > share:
            lo = mid
        else:
            hi = mid
    return hi


def traffic_calibration(
    pred: np.ndarray,
    prices: np.ndarray,
    target_share: float,
    knob_rows: list[dict[str, float]],
    sample: str,
) -> dict[str, Any]:
    """RouteLLM-style calibration on a sample of real prompts."""
    tol = tolerance_for_share(pred, prices, target_share)
    got = expensive_share(pred, prices, tol)
    table = [
        {"expensive_share": float(s), "tolerance": tolerance_for_share(pred, prices, float(s))}
        for s in np.round(np.linspace(0.05, 0.95, 19), 2)
    ]
    # the knob whose tolerance is nearest (knob tolerances decrease with the knob)
    knob = None
    if knob_rows:
        tols = np.array([r["tolerance"] for r in knob_rows])
        knob = float(knob_rows[int(np.argmin(np.abs(tols - tol)))]["knob"])
    for r in knob_rows:
        r["traffic_expensive_share"] = expensive_share(pred, prices, float(r["tolerance"]))
    return {
        "sample": sample,
        "sample_size": int(pred.shape[0]),
        "target_share": float(target_share),
        "tolerance": float(tol),
        "achieved_share": got,
        "equivalent_knob": knob,
        "share_table": table,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def update_manifest_calibration(bundle_dir: Path, calibration: dict[str, Any]) -> None:
    """Rewrite manifest.json atomically with a new ``calibration`` section (the data files and
    their checksums are untouched)."""
    path = Path(bundle_dir) / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["calibration"] = calibration
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".manifest.", suffix=".json")
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
