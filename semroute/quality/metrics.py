"""Routing-quality metrics (pure numpy, no encoder).

Two-model case (RouteLLM paper, §3.2):

* ``PGR = (r(router) - r(weak)) / (r(strong) - r(weak))`` where ``r`` is the mean quality on the
  evaluated prompts;
* ``APGR`` is the area under PGR plotted against the share of calls sent to the strong model,
  from 0 to 1 (trapezoid rule). We evaluate the curve *exactly* at every achievable share
  ``k / n`` (``n + 1`` points), not on a coarse threshold grid;
* ``CPT(x%)`` is the smallest share of strong calls at which PGR reaches ``x%``.

A router is given as one score per prompt: the higher, the more the prompt deserves the strong
model. Ties in the score are resolved in expectation (as a random tie-break would on average),
so a constant router yields the straight line between all-weak and all-strong.

N-model case: a router predicts a quality per (prompt, model); the policy picks, per prompt, the
cheapest model whose predicted quality is within ``tol`` of every pricier model's prediction.
Sweeping ``tol`` from -1 (always the priciest) to 1 (always the cheapest) traces the router's
cost-quality curve.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from semroute.scoring import pick_models

__all__ = [
    "CostQualityCurve",
    "StrongShareCurve",
    "TwoModelReport",
    "apgr",
    "cost_quality_curve",
    "cpt",
    "oracle_curve",
    "pick_models",
    "strong_share_curve",
    "two_model_report",
]


@dataclass(frozen=True)
class StrongShareCurve:
    """Quality of a two-model router as a function of the share of strong calls.

    ``shares[k] = k / n``; ``quality[k]`` is the mean quality when the ``k`` highest-scored
    prompts go to the strong model; ``cost[k]`` the total cost of that routing (if costs given).
    """

    shares: np.ndarray
    quality: np.ndarray
    pgr: np.ndarray
    cost: np.ndarray | None
    q_weak: float
    q_strong: float


def _tie_averaged(order_scores: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Replace each value by the mean over its run of equal (sorted) scores."""
    n = order_scores.shape[0]
    if n == 0:
        return values
    boundaries = np.flatnonzero(np.diff(order_scores) != 0) + 1
    starts = np.concatenate(([0], boundaries))
    ends = np.concatenate((boundaries, [n]))
    if starts.shape[0] == n:  # no ties
        return values
    sums = np.add.reduceat(values, starts)
    means = sums / (ends - starts)
    return np.repeat(means, ends - starts)


def strong_share_curve(
    scores: np.ndarray,
    q_weak: np.ndarray,
    q_strong: np.ndarray,
    cost_weak: np.ndarray | None = None,
    cost_strong: np.ndarray | None = None,
) -> StrongShareCurve:
    """Exact quality-vs-strong-share curve for a router giving one score per prompt."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    qw = np.asarray(q_weak, dtype=np.float64).ravel()
    qs = np.asarray(q_strong, dtype=np.float64).ravel()
    n = s.shape[0]
    if not (qw.shape[0] == n and qs.shape[0] == n):
        raise ValueError("scores, q_weak and q_strong must have the same length")
    if n == 0:
        raise ValueError("no prompts to evaluate")
    if not np.all(np.isfinite(s)):
        raise ValueError("router scores must be finite")
    order = np.argsort(-s, kind="stable")
    sorted_scores = s[order]
    gain = _tie_averaged(sorted_scores, (qs - qw)[order])
    quality = qw.mean() + np.concatenate(([0.0], np.cumsum(gain))) / n
    mean_w, mean_s = float(qw.mean()), float(qs.mean())
    denom = mean_s - mean_w
    pgr = np.full(n + 1, np.nan) if abs(denom) < 1e-12 else (quality - mean_w) / denom
    cost = None
    if cost_weak is not None and cost_strong is not None:
        cw = np.asarray(cost_weak, dtype=np.float64).ravel()
        cs = np.asarray(cost_strong, dtype=np.float64).ravel()
        dc = _tie_averaged(sorted_scores, (cs - cw)[order])
        cost = cw.sum() + np.concatenate(([0.0], np.cumsum(dc)))
    shares = np.arange(n + 1, dtype=np.float64) / n
    return StrongShareCurve(shares, quality, pgr, cost, mean_w, mean_s)


def apgr(curve: StrongShareCurve) -> float:
    """Area under the PGR curve over the strong share in [0, 1] (trapezoid rule)."""
    y, x = curve.pgr, curve.shares
    return float(np.sum((y[1:] + y[:-1]) * np.diff(x)) / 2.0)


def cpt(curve: StrongShareCurve, target: float) -> float:
    """Smallest share of strong calls at which PGR reaches ``target`` (e.g. 0.5 for CPT(50%)).

    Returns ``nan`` when the curve never reaches the target (possible only when the
    strong model is not better than the weak one on the evaluated set).
    """
    hit = np.flatnonzero(curve.pgr >= target - 1e-12)
    return float(curve.shares[hit[0]]) if hit.size else float("nan")


def oracle_curve(
    q_weak: np.ndarray,
    q_strong: np.ndarray,
    cost_weak: np.ndarray | None = None,
    cost_strong: np.ndarray | None = None,
) -> StrongShareCurve:
    """The best achievable curve: prompts ordered by the true gain of the strong model."""
    gain = np.asarray(q_strong, dtype=np.float64) - np.asarray(q_weak, dtype=np.float64)
    return strong_share_curve(gain, q_weak, q_strong, cost_weak, cost_strong)


@dataclass
class TwoModelReport:
    """The headline two-model figures for one router."""

    apgr: float
    cpt50: float
    cpt80: float
    q_weak: float
    q_strong: float
    n: int
    operating_points: list[dict[str, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def two_model_report(
    curve: StrongShareCurve, pgr_targets: tuple[float, ...] = (0.5, 0.8, 0.9, 0.95)
) -> TwoModelReport:
    """APGR, CPT(50%), CPT(80%) and, at each PGR target, strong calls and cost saved."""
    n = curve.shares.shape[0] - 1
    points: list[dict[str, float]] = []
    for t in pgr_targets:
        share = cpt(curve, t)
        point: dict[str, float] = {"pgr_target": t, "strong_share": share}
        if np.isfinite(share):
            k = round(share * n)
            point["strong_calls"] = float(k)
            point["quality"] = float(curve.quality[k])
            if curve.cost is not None and curve.cost[-1] > 0:
                point["cost_saved_vs_strong"] = float(1.0 - curve.cost[k] / curve.cost[-1])
        points.append(point)
    return TwoModelReport(
        apgr=apgr(curve),
        cpt50=cpt(curve, 0.5),
        cpt80=cpt(curve, 0.8),
        q_weak=curve.q_weak,
        q_strong=curve.q_strong,
        n=n,
        operating_points=points,
    )


# ---------------------------------------------------------------------------------------------
# N models


@dataclass(frozen=True)
class CostQualityCurve:
    """Operating points of an N-model router: mean quality and total cost at each tolerance."""

    tolerances: np.ndarray
    cost: np.ndarray
    quality: np.ndarray
    shares: np.ndarray  # (points, m): share of calls per model

    def to_dict(self) -> dict[str, Any]:
        return {
            "tolerances": self.tolerances.tolist(),
            "cost": self.cost.tolist(),
            "quality": self.quality.tolist(),
            "shares": self.shares.tolist(),
        }


def cost_quality_curve(
    pred: np.ndarray,
    quality: np.ndarray,
    costs: np.ndarray,
    prices: np.ndarray,
    tolerances: np.ndarray | None = None,
) -> CostQualityCurve:
    """Sweep the policy's tolerance and record (total cost, mean quality, model shares).

    ``pred``, ``quality`` and ``costs`` are (n, m): predicted quality, true quality and the
    cost of sending prompt i to model j. Points are sorted by cost.
    """
    q = np.asarray(quality, dtype=np.float64)
    c = np.asarray(costs, dtype=np.float64)
    n, m = q.shape
    if tolerances is None:
        tolerances = np.unique(np.concatenate((np.linspace(-1.0, 1.0, 401), [0.0])))
    rows = np.arange(n)
    costs_out, qual_out, shares_out = [], [], []
    for t in tolerances:
        pick = pick_models(pred, prices, float(t))
        costs_out.append(c[rows, pick].sum())
        qual_out.append(q[rows, pick].mean())
        shares_out.append(np.bincount(pick, minlength=m) / n)
    cost_arr = np.asarray(costs_out)
    order = np.lexsort((np.asarray(qual_out), cost_arr))
    return CostQualityCurve(
        tolerances=np.asarray(tolerances, dtype=np.float64)[order],
        cost=cost_arr[order],
        quality=np.asarray(qual_out)[order],
        shares=np.asarray(shares_out)[order],
    )


def frontier(curve: CostQualityCurve) -> tuple[np.ndarray, np.ndarray]:
    """The upper concave hull of a curve's (cost, quality) points: what mixing two operating
    points at random achieves, so quality is interpolated linearly between hull vertices."""
    pts = sorted(zip(curve.cost.tolist(), curve.quality.tolist(), strict=True))
    hull: list[tuple[float, float]] = []
    for c, q in pts:
        if hull and q <= hull[-1][1]:
            continue  # dominated: costs at least as much for no more quality
        while len(hull) >= 2:
            (c1, q1), (c2, q2) = hull[-2], hull[-1]
            # drop the middle point when it lies on or under the chord
            if (q2 - q1) * (c - c1) <= (q - q1) * (c2 - c1):
                hull.pop()
            else:
                break
        hull.append((c, q))
    xs, ys = zip(*hull, strict=True)
    return np.asarray(xs), np.asarray(ys)


def quality_share_at_cost(
    curve: CostQualityCurve, best_quality: float, cost_budgets: np.ndarray
) -> np.ndarray:
    """Share of the best single model's quality reached within each cost budget, on the
    curve's frontier (nan below the cheapest point)."""
    xs, ys = frontier(curve)
    b = np.asarray(cost_budgets, dtype=np.float64)
    out = np.interp(b, xs, ys) / best_quality if best_quality else np.full(b.shape, np.nan)
    return np.where(b < xs[0] * (1 - 1e-12), np.nan, out)


def area_under_quality_cost(curve: CostQualityCurve, cost_lo: float, cost_hi: float) -> float:
    """Mean frontier quality over the cost range [cost_lo, cost_hi]."""
    if cost_hi <= cost_lo:
        return float("nan")
    xs, ys = frontier(curve)
    grid = np.linspace(cost_lo, cost_hi, 401)
    vals = np.interp(grid, xs, ys)
    return float(np.sum(vals[1:] + vals[:-1]) / (2 * (grid.shape[0] - 1)))
