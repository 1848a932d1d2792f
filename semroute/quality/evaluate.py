"""``semroute eval``: cross-validated (or held-out) routing quality, beside the baselines.

Every prompt is scored by a router that never saw it: k-fold cross-validation (identical
prompts always share a fold) or a held-out test file. Hyper-parameters are chosen inside each
training part only (see :mod:`semroute.quality.learn`). Reported beside the learned router:

* ``knn``: the reference similarity-weighted nearest-neighbour vote (k = 100, untuned);
* ``random``: random routing, mean and spread over >= 10 seeds (APGR ~ 0.5 checks the metric);
* ``oracle``: routing by the true scores (an upper bound).

Two models: APGR, CPT(50%), CPT(80%) and, at PGR 50/80/90/95%, the strong calls and the cost
saved versus always-strong (prompt tokens x price). Any number of models: the cost-quality
curve and the share of the best single model's quality reached at each cost budget.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from semroute.quality import learn
from semroute.quality.datasets import Dataset
from semroute.quality.metrics import (
    CostQualityCurve,
    area_under_quality_cost,
    cost_quality_curve,
    oracle_curve,
    quality_share_at_cost,
    strong_share_curve,
    two_model_report,
)

ROUTERS = ("learned", "knn", "random")
BUDGETS = tuple(round(b, 2) for b in np.linspace(0.1, 1.0, 10))


@dataclass
class Predictions:
    """Out-of-sample predictions for every evaluated prompt."""

    router: np.ndarray  # (n, m) the evaluated router's predicted quality
    knn: np.ndarray  # (n, m) the reference kNN baseline
    fold: np.ndarray  # (n,) fold id of each prompt
    folds: list[dict[str, Any]] = field(default_factory=list)


def _predict_fold(
    router: str,
    x_tr: np.ndarray,
    y_tr: np.ndarray,
    p_tr: Sequence[str],
    tok_tr: np.ndarray,
    x_te: np.ndarray,
    p_te: Sequence[str],
    prices: np.ndarray,
    *,
    seed: int,
    inner_folds: int | None,
    use_text: bool,
    progress: bool,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    knn = learn.knn_baseline(x_tr, y_tr, x_te, 100)
    if router == "knn":
        return knn, knn, {"router": "knn"}
    if router == "random":
        rng = np.random.default_rng(seed)
        return rng.random(knn.shape).astype(np.float32), knn, {"router": "random"}
    fitted = learn.fit_with_search(
        x_tr,
        y_tr,
        p_tr,
        prices,
        tok_tr.astype(np.float64),
        inner_folds=inner_folds,
        seed=seed,
        use_text=use_text,
        progress=progress,
    )
    info = {"hyper": fitted.hyper.to_dict(), "inner_objective": fitted.search["best_objective"]}
    return fitted.predict(x_te, p_te), knn, info


def cross_validate(
    ds: Dataset,
    emb: np.ndarray,
    tokens: np.ndarray,
    prices: np.ndarray,
    folds: list[np.ndarray],
    *,
    router: str = "learned",
    seed: int = 0,
    inner_folds: int | None = None,
    use_text: bool = True,
    progress: bool = True,
) -> Predictions:
    n, m = ds.scores.shape
    out = Predictions(
        router=np.zeros((n, m), np.float32),
        knn=np.zeros((n, m), np.float32),
        fold=np.zeros(n, np.int64),
    )
    for f, test in enumerate(learn._progress(folds, "outer folds", enabled=progress)):
        train = np.setdiff1d(np.arange(n), test)
        r, k, info = _predict_fold(
            router,
            emb[train],
            ds.scores[train],
            [ds.prompts[i] for i in train],
            tokens[train],
            emb[test],
            [ds.prompts[i] for i in test],
            prices,
            seed=seed + f,
            inner_folds=inner_folds,
            use_text=use_text,
            progress=progress,
        )
        out.router[test], out.knn[test], out.fold[test] = r, k, f
        out.folds.append({"fold": f, "train": len(train), "test": len(test), **info})
    return out


def holdout(
    train: Dataset,
    train_emb: np.ndarray,
    train_tokens: np.ndarray,
    test: Dataset,
    test_emb: np.ndarray,
    prices: np.ndarray,
    *,
    router: str = "learned",
    seed: int = 0,
    inner_folds: int | None = None,
    use_text: bool = True,
    progress: bool = True,
) -> Predictions:
    """Train on one labelled set, score another (test prompts found in training are dropped
    from training first)."""
    test_set = {p.strip() for p in test.prompts}
    keep = np.array([i for i, p in enumerate(train.prompts) if p.strip() not in test_set])
    r, k, info = _predict_fold(
        router,
        train_emb[keep],
        train.scores[keep],
        [train.prompts[i] for i in keep],
        train_tokens[keep],
        test_emb,
        test.prompts,
        prices,
        seed=seed,
        inner_folds=inner_folds,
        use_text=use_text,
        progress=progress,
    )
    info |= {"fold": 0, "train": len(keep), "test": len(test)}
    return Predictions(router=r, knn=k, fold=np.zeros(len(test), np.int64), folds=[info])


# ---------------------------------------------------------------------------------------------
# summaries


def _downsample(xs: np.ndarray, ys: np.ndarray, points: int = 101) -> dict[str, list[float]]:
    grid = np.linspace(0.0, 1.0, points)
    idx = np.clip(np.round(grid * (len(xs) - 1)).astype(int), 0, len(xs) - 1)
    return {"x": [float(v) for v in xs[idx]], "y": [float(v) for v in ys[idx]]}


def _two_model(
    y: np.ndarray,
    preds: dict[str, np.ndarray],
    costs: np.ndarray,
    weak: int,
    strong: int,
    fold: np.ndarray,
    random_seeds: int,
    seed: int,
) -> dict[str, Any]:
    qw, qs = y[:, weak], y[:, strong]
    cw, cs = costs[:, weak], costs[:, strong]
    routers: dict[str, Any] = {}
    curves: dict[str, Any] = {}
    for name, p in preds.items():
        score = p[:, strong] - p[:, weak]
        c = strong_share_curve(score, qw, qs, cw, cs)
        rep = two_model_report(c).to_dict()
        per_fold = []
        for f in np.unique(fold):
            t = fold == f
            if t.sum() >= 2 and qs[t].mean() != qw[t].mean():
                r = two_model_report(strong_share_curve(score[t], qw[t], qs[t]))
                per_fold.append((r.apgr, r.cpt50, r.cpt80))
        if len(per_fold) > 1:
            arr = np.array(per_fold)
            rep["per_fold"] = {
                "apgr_mean": float(arr[:, 0].mean()),
                "apgr_std": float(arr[:, 0].std()),
                "cpt50_mean": float(np.nanmean(arr[:, 1])),
                "cpt80_mean": float(np.nanmean(arr[:, 2])),
            }
        routers[name] = rep
        curves[name] = _downsample(c.shares, c.pgr)
    oc = oracle_curve(qw, qs, cw, cs)
    routers["oracle"] = two_model_report(oc).to_dict()
    curves["oracle"] = _downsample(oc.shares, oc.pgr)
    # random routing, many seeds
    rng = np.random.default_rng(seed)
    reps, pgrs = [], []
    for _ in range(random_seeds):
        c = strong_share_curve(rng.random(len(qw)), qw, qs, cw, cs)
        reps.append(two_model_report(c))
        pgrs.append(c.pgr)
    ops = [
        {
            key: float(np.nanmean([r.operating_points[i].get(key, np.nan) for r in reps]))
            for key in reps[0].operating_points[i]
            if key != "pgr_target"
        }
        | {"pgr_target": reps[0].operating_points[i]["pgr_target"]}
        for i in range(len(reps[0].operating_points))
    ]
    routers["random"] = {
        "seeds": random_seeds,
        "apgr": float(np.mean([r.apgr for r in reps])),
        "apgr_std": float(np.std([r.apgr for r in reps])),
        "cpt50": float(np.mean([r.cpt50 for r in reps])),
        "cpt50_std": float(np.std([r.cpt50 for r in reps])),
        "cpt80": float(np.mean([r.cpt80 for r in reps])),
        "q_weak": reps[0].q_weak,
        "q_strong": reps[0].q_strong,
        "n": reps[0].n,
        "operating_points": ops,
    }
    curves["random"] = _downsample(np.linspace(0, 1, len(qw) + 1), np.mean(pgrs, axis=0))
    return {"routers": routers, "pgr_curves": curves}


def _n_model(
    y: np.ndarray,
    preds: dict[str, np.ndarray],
    costs: np.ndarray,
    prices: np.ndarray,
    random_seeds: int,
    seed: int,
) -> dict[str, Any]:
    best = int(np.argmax(y.mean(axis=0)))
    q_best = float(y[:, best].mean())
    c_lo = float(costs[:, int(np.argmin(prices))].sum())
    c_hi = float(costs.sum(axis=0).max())
    c_best = float(costs[:, best].sum())
    tols = np.unique(np.concatenate((np.linspace(-1, 1, 401), [0.0])))
    curves: dict[str, CostQualityCurve] = {
        name: cost_quality_curve(p, y, costs, prices, tols) for name, p in preds.items()
    }
    curves["oracle"] = cost_quality_curve(y, y, costs, prices, tols)
    rng = np.random.default_rng(seed)
    rand = [
        cost_quality_curve(rng.random(y.shape), y, costs, prices, tols) for _ in range(random_seeds)
    ]
    out: dict[str, Any] = {
        "best_model": best,
        "best_quality": q_best,
        "cost_of_best_model": c_best,
        "cost_range": [c_lo, c_hi],
        "single_models": [
            {"quality": float(y[:, j].mean()), "cost": float(costs[:, j].sum())}
            for j in range(y.shape[1])
        ],
        "routers": {},
        "curves": {},
    }
    budgets = np.array(BUDGETS) * c_best
    for name, c in curves.items():
        out["routers"][name] = {
            "area": area_under_quality_cost(c, c_lo, c_hi),
            "quality_share_at_cost": {
                f"{b:.1f}": float(v)
                for b, v in zip(BUDGETS, quality_share_at_cost(c, q_best, budgets), strict=True)
            },
        }
        out["curves"][name] = {"cost": c.cost.tolist(), "quality": c.quality.tolist()}
    out["routers"]["random"] = {
        "seeds": random_seeds,
        "area": float(np.mean([area_under_quality_cost(c, c_lo, c_hi) for c in rand])),
        "quality_share_at_cost": {
            f"{b:.1f}": float(v)
            for b, v in zip(
                BUDGETS,
                np.nanmean([quality_share_at_cost(c, q_best, budgets) for c in rand], axis=0),
                strict=True,
            )
        },
    }
    rc = rand[0]
    out["curves"]["random"] = {"cost": rc.cost.tolist(), "quality": rc.quality.tolist()}
    return out


def summarize(
    ds: Dataset,
    tokens: np.ndarray,
    prices: dict[str, float],
    preds: Predictions,
    *,
    protocol: dict[str, Any],
    router_name: str = "learned",
    random_seeds: int = 100,
    seed: int = 0,
) -> dict[str, Any]:
    price_vec = np.array([prices[m] for m in ds.models], dtype=np.float64)
    costs = tokens.astype(np.float64)[:, None] * price_vec[None, :] / 1e6
    named = {"router": preds.router, "knn": preds.knn}
    out: dict[str, Any] = {
        "router": router_name,
        "n": len(ds),
        "models": list(ds.models),
        "prices_usd_per_mtok": {m: float(prices[m]) for m in ds.models},
        "mean_quality": {m: float(v) for m, v in zip(ds.models, ds.scores.mean(0), strict=True)},
        "score_scale": ds.scale,
        "protocol": protocol,
        "folds": preds.folds,
    }
    if len(ds.models) == 2:
        weak, strong = int(np.argmin(price_vec)), int(np.argmax(price_vec))
        out["two_model"] = {
            "weak": ds.models[weak],
            "strong": ds.models[strong],
            **_two_model(ds.scores, named, costs, weak, strong, preds.fold, random_seeds, seed),
        }
    out["n_model"] = _n_model(ds.scores, named, costs, price_vec, random_seeds, seed)
    return out


def _pct(v: float | None) -> str:
    return "   n/a" if v is None or not np.isfinite(v) else f"{100 * v:5.1f}%"


def text_table(summary: dict[str, Any]) -> str:
    """A short fixed-width table of the headline figures."""
    lines = [
        f"{summary['n']} prompts; models: {', '.join(summary['models'])}; "
        f"protocol: {summary['protocol'].get('description', '')}"
    ]
    tm = summary.get("two_model")
    if tm:
        lines.append(f"weak = {tm['weak']}, strong = {tm['strong']}")
        head = (
            f"{'router':<10} {'APGR':>7} {'CPT(50%)':>9} {'CPT(80%)':>9} "
            f"{'strong calls @PGR80':>20} {'cost saved @PGR80':>18}"
        )
        lines += [head, "-" * len(head)]
        for name in ("router", "knn", "random", "oracle"):
            r = tm["routers"][name]
            op = next((p for p in r["operating_points"] if p["pgr_target"] == 0.8), {})
            label = {"router": summary.get("router", "router")}.get(name, name)
            apgr_s = f"{r['apgr']:.3f}" + (f"±{r['apgr_std']:.3f}" if name == "random" else "")
            calls = op.get("strong_calls")
            lines.append(
                f"{label:<10} {apgr_s:>7} {_pct(r['cpt50']):>9} {_pct(r['cpt80']):>9} "
                f"{'n/a' if calls is None or not np.isfinite(calls) else round(calls):>20} "
                f"{_pct(op.get('cost_saved_vs_strong')):>18}"
            )
    nm = summary["n_model"]
    lines.append(
        "share of the best model's quality within a cost budget (x cost of the best model):"
    )
    budgets = ["0.1", "0.2", "0.3", "0.5", "1.0"]
    lines.append(f"{'router':<10} {'area':>7} " + " ".join(f"{b:>6}" for b in budgets))
    for name in ("router", "knn", "random", "oracle"):
        r = nm["routers"][name]
        qs = r["quality_share_at_cost"]
        label = {"router": summary.get("router", "router")}.get(name, name)
        lines.append(f"{label:<10} {r['area']:7.3f} " + " ".join(_pct(qs.get(b)) for b in budgets))
    return "\n".join(lines)
