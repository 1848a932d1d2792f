#!/usr/bin/env python3
"""Train the static tier's route head and measure the static → classifier cascade out of source.

Why: the route classifier costs a transformer pass (~10 ms of CPU here) per unique prompt, but
many prompts are easy. The static encoder (models/minilm-l6-v2-static) embeds a prompt in
20-90 µs; a small head on that embedding, trained from the classifier (its labels and its
probabilities), can answer the prompts it is sure about and leave the rest to the classifier.

What it trains: with ``--hidden H``, ``softmax(W · relu(H · static_embedding + h) + b)``
over the classifier's 16 routes by AdamW (train_mlp); without it ``softmax(W · x + b)`` by
L-BFGS with L2 chosen on the in-source validation split; cross-entropy on soft targets, on
exactly build_classifier.py's training split (``collect`` + ``split``), temperature fitted on
its in-source validation split. ``--distill A`` mixes a teacher classifier's calibrated
probabilities into every training target with weight A (distillation): under ``--loso`` each
fold's own classifier (eval_loso.py ``--teacher-out``: trained without the fold's sources, so
the evaluation stays clean), for the shipped head the shipped classifier itself.

What it measures (``--loso``): for each of eval_loso.py's 7 folds, a head trained without the
fold's sources scores exactly the prompts eval_loso scored for them, in the same order, so its
rows line up with the classifier's out-of-source probabilities (checked row by row). The cascade
answers with the static head when its top probability is ≥ t and leads the runner-up by ≥ m,
else with the classifier; the default (t, m) is chosen on held-out sources (nested: chosen on
six folds, applied to the seventh) so the cascade stays within 2 points of the classifier.

    python models/build_static_head.py --loso \\
        --out-json benchmarks/results/cascade-$(date -u +%Y%m%dT%H%M%S).json
    python models/build_static_head.py --out models/minilm-l6-v2-static   # the shipped head

    # distilled: fold teachers from eval_loso.py --teacher-out var/loso/teachers
    python models/build_static_head.py --loso --distill 0.5 --teachers var/loso/teachers ...
    python models/build_static_head.py --out models/minilm-l6-v2-static --distill 0.5 \
        --teacher-cache var/teacher-probs.npz --cascade-json ...
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "models"))

import build_classifier as bc  # noqa: E402
from eval_loso import FOLDS, eval_items  # noqa: E402
from route_corpus import EVAL_ONLY_SOURCES, ROUTES, Example  # noqa: E402

from semroute.bundle import sha256_file  # noqa: E402
from semroute.encoder import Encoder, default_model_dir  # noqa: E402
from semroute.encoder.static import StaticEncoder, default_static_dir  # noqa: E402
from semroute.encoder.static_head import HEAD_FILE, HEAD_META, StaticRouteHead  # noqa: E402
from semroute.encoder.variants import cpu_signature  # noqa: E402

DEFAULT_PROBS = ROOT / "benchmarks" / "results" / "route-loso-20261201T023014.probs.npz"
L2_GRID = (1e-5, 1e-4, 1e-3)
LABEL_SMOOTHING = 0.05
MAX_ITER = 300
# The one-hidden-layer head (--hidden): AdamW, soft-target cross-entropy, best epoch kept.
MLP_EPOCHS = 40
MLP_BATCH = 128
MLP_LR = 2e-3
MLP_WEIGHT_DECAY = 1e-4
# Thresholds searched for the cascade.
T_GRID = tuple(round(x, 2) for x in np.arange(0.30, 1.0, 0.01))
M_GRID = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
# The bar: cascade macro accuracy within this of the classifier's, on held-out sources; the
# threshold is chosen with a safety margin below it on the calibration folds.
MAX_DROP = 0.02
CHOOSE_DROP = 0.015


# ----------------------------------------------------------------------------- training


def features(encoder: StaticEncoder, texts: Sequence[str], bs: int = 512) -> dict[str, np.ndarray]:
    """Static embeddings per distinct text (exactly what serving computes)."""
    uniq = sorted(set(texts))
    out: dict[str, np.ndarray] = {}
    for i in range(0, len(uniq), bs):
        chunk = uniq[i : i + bs]
        for t, row in zip(chunk, encoder.encode(chunk), strict=True):
            out[t] = row
    return out


def cached_features(
    encoder: StaticEncoder, texts: Sequence[str], path: Path | None
) -> dict[str, np.ndarray]:
    """``features``, kept in ``path`` between runs (keyed by the table's sha256 and width)."""
    key = f"{encoder.table_sha256}:{encoder.max_tokens}"
    cached: dict[str, np.ndarray] = {}
    if path is not None and path.exists():
        with np.load(path, allow_pickle=False) as z:
            if str(z["key"]) == key:
                cached = dict(zip((str(h) for h in z["sha"]), z["emb"], strict=True))
    feats = {t: cached[_sha(t)] for t in texts if _sha(t) in cached}
    todo = [t for t in texts if t not in feats]
    if todo:
        feats |= features(encoder, todo)
        if path is not None:  # texts stored by digest: some are whole meetings
            path.parent.mkdir(parents=True, exist_ok=True)
            names = sorted(feats)
            np.savez(
                path,
                key=key,
                sha=np.array([_sha(t) for t in names]),
                emb=np.stack([feats[t] for t in names]),
            )
    return feats


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def fold_teacher(path: Path, held: Sequence[str]) -> dict[str, np.ndarray]:
    """A fold classifier's probabilities by text (eval_loso.py --teacher-out), checked to be
    the fold's: a teacher that saw the held-out sources would leak them into the evaluation."""
    with np.load(path, allow_pickle=True) as z:
        if tuple(str(r) for r in z["routes"]) != ROUTES:
            raise SystemExit(f"{path}: routes differ from the classifier's")
        if sorted(str(h) for h in z["held_out"]) != sorted(held):
            raise SystemExit(f"{path}: held out {list(z['held_out'])}, expected {list(held)}")
        return {str(t): p.astype(np.float64) for t, p in zip(z["texts"], z["probs"], strict=True)}


def model_teacher(
    model_dir: Path, texts: Sequence[str], max_tokens: int, cache: Path | None
) -> dict[str, np.ndarray]:
    """The shipped classifier's calibrated probabilities on ``texts`` (ONNX, as it serves),
    kept in ``cache`` keyed by the model's id and head version."""
    enc = Encoder(model_dir, max_tokens=max_tokens)
    head = enc.route_head
    if head is None or head.routes != ROUTES:
        raise SystemExit(f"{model_dir} has no route head over the classifier's routes")
    key = f"{enc.id};{head.version};{max_tokens}"
    have: dict[str, np.ndarray] = {}
    if cache and cache.exists():
        with np.load(cache, allow_pickle=True) as z:
            if str(z["key"]) == key:
                have = {str(t): p for t, p in zip(z["texts"], z["probs"], strict=True)}
    todo = sorted({t for t in texts if t not in have}, key=len)
    t0 = time.perf_counter()
    for i in range(0, len(todo), 32):
        chunk = todo[i : i + 32]
        for t, p in zip(chunk, head.probabilities(enc.encode(chunk)), strict=True):
            have[t] = p
    if todo:
        print(f"teacher: {len(todo)} texts in {time.perf_counter() - t0:.0f} s", flush=True)
    if cache and todo:
        names = sorted(have)
        np.savez_compressed(
            cache,
            key=np.array(key),
            texts=np.array(names, dtype=object),
            probs=np.stack([have[t] for t in names]).astype(np.float32),
        )
    return {t: have[t].astype(np.float64) for t in texts}


def targets(
    examples: Sequence[Example], soft: dict[str, np.ndarray] | None, alpha: float
) -> np.ndarray:
    """Smoothed one-hot labels, mixed with the classifier's probabilities where given."""
    n, k = len(examples), len(ROUTES)
    y = np.full((n, k), LABEL_SMOOTHING / k, np.float64)
    y[np.arange(n), [ROUTES.index(e.route) for e in examples]] += 1.0 - LABEL_SMOOTHING
    if soft and alpha > 0:
        for i, e in enumerate(examples):
            p = soft.get(e.text)
            if p is not None:
                y[i] = (1 - alpha) * y[i] + alpha * p
    return y


def train_head(x: np.ndarray, y: np.ndarray, l2: float) -> tuple[np.ndarray, np.ndarray]:
    """(weight [routes, dim], bias [routes]) minimising mean CE(y, softmax(xW+b)) + l2·|W|²/2.

    L-BFGS on a convex problem from zero: deterministic, no seed needed, no torch.
    """
    from scipy.optimize import minimize

    n, d = x.shape
    k = y.shape[1]
    x = x.astype(np.float64)

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = theta[: d * k].reshape(d, k), theta[d * k :]
        z = x @ w + b
        z -= z.max(1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(1, keepdims=True))
        value = float(-(y * logp).sum() / n + 0.5 * l2 * (w * w).sum())
        g = (np.exp(logp) - y) / n
        grad = np.concatenate([(x.T @ g + l2 * w).ravel(), g.sum(0)])
        return value, grad

    res = minimize(
        loss, np.zeros(d * k + k), jac=True, method="L-BFGS-B", options={"maxiter": MAX_ITER}
    )
    w, b = res.x[: d * k].reshape(d, k), res.x[d * k :]
    return w.T.astype(np.float32), b.astype(np.float32)


def fit(
    train: Sequence[Example],
    val: Sequence[Example],
    feats: dict[str, np.ndarray],
    soft: dict[str, np.ndarray] | None,
    alpha: float,
    l2_grid: Sequence[float] = L2_GRID,
    hidden: int = 0,
    seed: int = bc.SEED,
) -> dict[str, object]:
    """One head: L2 chosen by in-source validation accuracy, then temperature on the same.
    With ``hidden`` units, a one-hidden-layer head trained by train_mlp instead."""
    x = np.stack([feats[e.text] for e in train])
    y = targets(train, soft, alpha)
    xv = np.stack([feats[e.text] for e in val])
    yv = np.array([ROUTES.index(e.route) for e in val])
    if hidden:
        mlp = train_mlp(x, y, xv, yv, hidden, seed)
        mlp["temperature"] = bc.fit_temperature(head_logits(mlp, xv), yv)
        return mlp
    best: dict[str, object] | None = None
    for l2 in l2_grid:
        w, b = train_head(x, y, l2)
        acc = float((head_logits({"weight": w, "bias": b}, xv).argmax(1) == yv).mean())
        print(f"  l2 {l2:g}: in-source validation accuracy {acc:.4f}", flush=True)
        if best is None or acc > best["val_accuracy"]:  # type: ignore[operator]
            best = {"weight": w, "bias": b, "l2": l2, "val_accuracy": acc}
    assert best is not None
    best["temperature"] = bc.fit_temperature(head_logits(best, xv), yv)
    return best


def train_mlp(
    x: np.ndarray, y: np.ndarray, xv: np.ndarray, yv: np.ndarray, hidden: int, seed: int
) -> dict[str, object]:
    """``weight · relu(hidden_weight · x + hidden_bias) + bias`` by AdamW on soft-target
    cross-entropy (torch, build time only); the epoch with the best in-source validation
    accuracy is kept. A linear head on the static embedding answers half the prompts out of
    source; one hidden layer answers ~15 points more at the same accuracy (models/README.md)."""
    import torch

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    xt, yt = torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y.astype(np.float32))
    xvt = torch.from_numpy(xv.astype(np.float32))
    net = torch.nn.Sequential(
        torch.nn.Linear(x.shape[1], hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, y.shape[1])
    )
    opt = torch.optim.AdamW(net.parameters(), lr=MLP_LR, weight_decay=MLP_WEIGHT_DECAY)
    best_acc, best_state = -1.0, None
    for _ in range(MLP_EPOCHS):
        net.train()
        order = torch.randperm(len(xt), generator=gen)
        for i in range(0, len(xt), MLP_BATCH):
            idx = order[i : i + MLP_BATCH]
            loss = -(yt[idx] * torch.log_softmax(net(xt[idx]), -1)).sum(-1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            acc = float((net(xvt).argmax(1).numpy() == yv).mean())
        if acc > best_acc:
            best_acc = acc
            best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    assert best_state is not None
    print(f"  hidden {hidden}: in-source validation accuracy {best_acc:.4f}", flush=True)
    return {
        "hidden_weight": best_state["0.weight"].numpy(),
        "hidden_bias": best_state["0.bias"].numpy(),
        "weight": best_state["2.weight"].numpy(),
        "bias": best_state["2.bias"].numpy(),
        "hidden": hidden,
        "l2": MLP_WEIGHT_DECAY,
        "val_accuracy": best_acc,
    }


def head_logits(head: dict[str, object], x: np.ndarray) -> np.ndarray:
    """Uncalibrated logits computed by serving's own class, so what is evaluated here is
    what serves."""
    hidden = (head["hidden_weight"], head["hidden_bias"]) if "hidden_weight" in head else None
    serving = StaticRouteHead(
        ROUTES,
        head["weight"],
        head["bias"],
        1.0,
        "build",
        0.0,
        0.0,
        hidden,  # type: ignore[arg-type]
    )
    return serving.logits(x.astype(np.float32))


def probabilities(head: dict[str, object], x: np.ndarray) -> np.ndarray:
    return bc.softmax(head_logits(head, x) / float(head["temperature"]))  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- evaluation


def loso_rows(examples: Sequence[Example], seed: int) -> tuple[list[Example], list[int]]:
    """eval_loso's scored rows in its order (external sources only), with each row's fold."""
    rows: list[Example] = []
    fold_of: list[int] = []
    for k, held in enumerate(FOLDS):
        for e in eval_items(examples, set(held) | set(EVAL_ONLY_SOURCES), seed):
            if e.source not in EVAL_ONLY_SOURCES:
                rows.append(e)
                fold_of.append(k)
    return rows, fold_of


def check_alignment(rows: Sequence[Example], z: np.lib.npyio.NpzFile) -> None:
    """Refuse unless the reconstructed rows are the .probs.npz rows (label, also, source, lang)."""
    if len(rows) != len(z["label"]):
        raise SystemExit(f"{len(rows)} reconstructed rows but {len(z['label'])} in the npz")
    if list(z["routes"]) != list(ROUTES):
        raise SystemExit("the npz's route order differs from route_corpus.ROUTES")
    for i, e in enumerate(rows):
        got = (e.route, "|".join(e.also), e.source, e.lang)
        want = (str(z["label"][i]), str(z["also"][i]), str(z["source"][i]), str(z["lang"][i]))
        if got != want:
            raise SystemExit(f"row {i}: reconstructed {got} but the npz has {want}")


def scores(
    rows: Sequence[Example], predicted: np.ndarray, mask: np.ndarray | None = None
) -> dict[str, float]:
    """Accepted accuracy: macro over sources (eval_loso's figure), macro over labels, plain."""
    ok = np.array([e.accepts(ROUTES[p]) for e, p in zip(rows, predicted, strict=True)])
    src = np.array([e.source for e in rows])
    lab = np.array([e.route for e in rows])
    if mask is not None:
        ok, src, lab = ok[mask], src[mask], lab[mask]
    return {
        "macro_sources": float(np.mean([ok[src == s].mean() for s in np.unique(src)])),
        "macro_routes": float(np.mean([ok[lab == r].mean() for r in np.unique(lab)])),
        "plain": float(ok.mean()),
    }


def accepted(rows: Sequence[Example], predicted: np.ndarray) -> np.ndarray:
    return np.array([e.accepts(ROUTES[p]) for e, p in zip(rows, predicted, strict=True)])


def top_two(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = np.sort(p, axis=1)
    return s[:, -1], s[:, -1] - s[:, -2]


def macro_sources(ok: np.ndarray, src: np.ndarray) -> float:
    return float(np.mean([ok[src == s].mean() for s in np.unique(src)]))


def choose(
    answered_at: dict[tuple[float, float], np.ndarray],
    ok_static: np.ndarray,
    ok_clf: np.ndarray,
    src: np.ndarray,
    rows_mask: np.ndarray,
    max_drop: float,
) -> tuple[float, float]:
    """The (t, m) answering the most rows of ``rows_mask`` whose cascade macro accuracy (over
    the sources of those rows) is within ``max_drop`` of the classifier's; ties: higher t."""
    base = macro_sources(ok_clf[rows_mask], src[rows_mask])
    best, best_share = (1.0, 1.0), -1.0
    for (t, m), ans in answered_at.items():
        ok = np.where(ans, ok_static, ok_clf)[rows_mask]
        if macro_sources(ok, src[rows_mask]) >= base - max_drop:
            share = float(ans[rows_mask].mean())
            if share > best_share or (share == best_share and (t, m) > best):
                best, best_share = (t, m), share
    return best


def cascade_report(
    rows: Sequence[Example],
    fold_of: np.ndarray,
    static_probs: np.ndarray,
    clf_probs: np.ndarray,
) -> dict[str, object]:
    """The coverage/accuracy curve, the nested threshold choice and the chosen default."""
    src = np.array([e.source for e in rows])
    s_pred, c_pred = static_probs.argmax(1), clf_probs.argmax(1)
    ok_static, ok_clf = accepted(rows, s_pred), accepted(rows, c_pred)
    top, margin = top_two(static_probs)
    answered_at = {(t, m): (top >= t) & (margin >= m) for t in T_GRID for m in M_GRID}
    clf = scores(rows, c_pred)

    def point(t: float, m: float, mask: np.ndarray | None = None) -> dict[str, object]:
        ans = answered_at[(t, m)]
        pred = np.where(ans, s_pred, c_pred)
        sel = np.ones(len(rows), bool) if mask is None else mask
        a = ans & sel
        return {
            "min_probability": t,
            "min_margin": m,
            "share_answered": round(float(a.sum() / sel.sum()), 4),
            "static_accuracy_on_answered": round(float(ok_static[a].mean()), 4)
            if a.any()
            else None,
            "classifier_accuracy_on_same": round(float(ok_clf[a].mean()), 4) if a.any() else None,
            "cascade": {k: round(v, 4) for k, v in scores(rows, pred, sel).items()},
        }

    curve = [point(t, 0.0) for t in T_GRID]
    grid = [point(t, m) for t in T_GRID[::5] for m in M_GRID]
    # Nested: choose on six folds' sources, apply to the seventh; every row is then decided
    # by a threshold chosen without its sources (and scored by models that never saw them).
    nested_pred = np.empty(len(rows), np.int64)
    nested_ans = np.zeros(len(rows), bool)
    per_fold = []
    for k in range(len(FOLDS)):
        calib, test = fold_of != k, fold_of == k
        t, m = choose(answered_at, ok_static, ok_clf, src, calib, CHOOSE_DROP)
        ans = answered_at[(t, m)]
        nested_pred[test] = np.where(ans, s_pred, c_pred)[test]
        nested_ans[test] = ans[test]
        per_fold.append(
            {
                "held_out": list(FOLDS[k]),
                "chosen_on_other_folds": {"min_probability": t, "min_margin": m},
                "share_answered": round(float(ans[test].mean()), 4),
                "static_accuracy_on_answered": round(float(ok_static[ans & test].mean()), 4)
                if (ans & test).any()
                else None,
            }
        )
    nested = scores(rows, nested_pred)
    t, m = choose(answered_at, ok_static, ok_clf, src, np.ones(len(rows), bool), CHOOSE_DROP)
    chosen = point(t, m)
    per_source = {}
    ans = answered_at[(t, m)]
    pred = np.where(ans, s_pred, c_pred)
    ok_cascade = accepted(rows, pred)
    for s in sorted(set(src)):
        sel = src == s
        per_source[s] = {
            "n": int(sel.sum()),
            "share_answered": round(float(ans[sel].mean()), 3),
            "static_accuracy_on_answered": round(float(ok_static[ans & sel].mean()), 3)
            if (ans & sel).any()
            else None,
            "cascade": round(float(ok_cascade[sel].mean()), 3),
            "classifier": round(float(ok_clf[sel].mean()), 3),
            "static_alone": round(float(ok_static[sel].mean()), 3),
        }
    return {
        "classifier_alone": {k: round(v, 4) for k, v in clf.items()},
        "static_alone": {k: round(v, 4) for k, v in scores(rows, s_pred).items()},
        "agreement_static_vs_classifier": round(float((s_pred == c_pred).mean()), 4),
        "curve_margin_0": curve,
        "grid": grid,
        "nested": {
            "what": "(t, m) chosen on 6 folds' sources (cascade macro within "
            f"{CHOOSE_DROP} of the classifier there), applied to the 7th",
            "per_fold": per_fold,
            "share_answered": round(float(nested_ans.mean()), 4),
            "static_accuracy_on_answered": round(float(ok_static[nested_ans].mean()), 4),
            "cascade": {k: round(v, 4) for k, v in nested.items()},
            "drop_vs_classifier_macro_sources": round(
                clf["macro_sources"] - nested["macro_sources"], 4
            ),
            "within_bar": bool(clf["macro_sources"] - nested["macro_sources"] <= MAX_DROP),
        },
        "chosen_default": chosen | {"chosen_on": "all 7 folds, same rule"},
        "per_source_at_default": per_source,
    }


def plot(report: dict[str, object], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = report["curve_margin_0"]  # type: ignore[index]
    share = [p["share_answered"] for p in curve]
    casc = [p["cascade"]["macro_sources"] for p in curve]
    stat = [p["static_accuracy_on_answered"] or np.nan for p in curve]
    base = report["classifier_alone"]["macro_sources"]  # type: ignore[index]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(share, casc, label="cascade, macro over sources")
    ax.plot(share, stat, label="static head on what it answers (plain)", alpha=0.7)
    ax.axhline(base, color="k", ls="--", lw=1, label="classifier alone")
    ax.axhline(base - MAX_DROP, color="r", ls=":", lw=1, label="classifier − 2 points")
    d = report["chosen_default"]  # type: ignore[index]
    ax.plot(
        [d["share_answered"]],
        [d["cascade"]["macro_sources"]],
        "o",
        color="r",
        label=f"default t={d['min_probability']}, m={d['min_margin']}",
    )
    ax.set_xlabel("share answered by the static tier (out of source, 7,522 prompts)")
    ax.set_ylabel("accepted accuracy")
    ax.set_title("static route head → classifier cascade, leave-sources-out (margin 0)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


# ----------------------------------------------------------------------------- main


def digest(examples: Sequence[Example]) -> str:
    return bc.data_digest(examples)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", type=Path, help="write route_head.npz/.json into this static dir")
    ap.add_argument("--loso", action="store_true", help="leave-sources-out cascade evaluation")
    ap.add_argument("--out-json", type=Path, help="with --loso: the result JSON (+ .png)")
    ap.add_argument("--probs", type=Path, default=DEFAULT_PROBS, help="eval_loso's .probs.npz")
    ap.add_argument("--static-dir", type=Path, default=default_static_dir())
    ap.add_argument("--max-tokens", type=int, default=bc.TRAIN_MAX_TOKENS)
    ap.add_argument("--distill", type=float, default=0.0, help="weight of the soft targets")
    ap.add_argument(
        "--hidden", type=int, default=0, help="units of one hidden layer (0: linear; needs torch)"
    )
    ap.add_argument("--teachers", type=Path, help="with --loso --distill: fold-K.npz teachers")
    ap.add_argument(
        "--teacher-model",
        type=Path,
        default=default_model_dir(),
        help="with --out --distill: the classifier whose probabilities are the soft targets",
    )
    ap.add_argument("--teacher-cache", type=Path, help="keep the teacher's probabilities here")
    ap.add_argument("--version", default=time.strftime("%Y%m%d"))
    ap.add_argument("--cascade-json", type=Path, help="with --out: thresholds from this result")
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--seed", type=int, default=bc.SEED)
    ap.add_argument(
        "--russian-supplement", action="store_true", help="as build_classifier.py's: same data"
    )
    ap.add_argument("--feature-cache", type=Path, help="keep the static embeddings here")
    ap.add_argument("--l2", type=float, nargs="+", default=list(L2_GRID), help="L2 grid")
    args = ap.parse_args(argv)
    if not (args.out or args.loso):
        ap.error("give --out and/or --loso")
    started = time.perf_counter()

    examples = bc.collect(args.shared, args.seed, args.russian_supplement)
    encoder = StaticEncoder(args.static_dir, max_tokens=args.max_tokens)
    z = np.load(args.probs)
    rows, fold_of = loso_rows(examples, args.seed)
    check_alignment(rows, z)
    print(f"{len(rows)} out-of-source rows line up with {args.probs.name}", flush=True)
    if args.distill and args.loso and not args.teachers:
        ap.error("--loso with --distill needs --teachers (eval_loso.py --teacher-out)")
    full_train, full_val = bc.split(examples, set(), args.seed)
    splits = {held: bc.split(examples, set(held), args.seed) for held in FOLDS}
    texts = {e.text for e in [*full_train, *full_val, *rows]}
    for train, val in splits.values():
        texts |= {e.text for e in [*train, *val]}
    t0 = time.perf_counter()
    feats = cached_features(encoder, sorted(texts), args.feature_cache)
    feat_seconds = time.perf_counter() - t0
    print(f"static embeddings of {len(feats)} texts in {feat_seconds:.1f} s", flush=True)

    result: dict[str, object] = {}
    if args.loso:
        static_probs = np.zeros((len(rows), len(ROUTES)), np.float32)
        fold_of_arr = np.array(fold_of)
        folds = []
        for k, held in enumerate(FOLDS):
            train, val = splits[held]
            print(f"fold {k}: held out {held}; train {len(train)}", flush=True)
            soft = fold_teacher(args.teachers / f"fold-{k}.npz", held) if args.distill else None
            head = fit(train, val, feats, soft, args.distill, args.l2, args.hidden, args.seed)
            sel = fold_of_arr == k
            x = np.stack([feats[rows[i].text] for i in np.flatnonzero(sel)])
            static_probs[sel] = probabilities(head, x)
            folds.append(
                {
                    "held_out": list(held),
                    "train_examples": len(train),
                    "l2": head["l2"],
                    "temperature": round(float(head["temperature"]), 3),  # type: ignore[arg-type]
                    "val_accuracy_in_source": round(float(head["val_accuracy"]), 4),  # type: ignore[arg-type]
                }
            )
        report = cascade_report(rows, fold_of_arr, static_probs, z["probs"])
        result = {
            "what": "static route head → route classifier cascade, leave-sources-out: each "
            "prompt scored by a static head and a classifier that never saw its source",
            "classifier_probs": os.path.relpath(args.probs.resolve(), ROOT),
            "accepted": "label or also (models/route_corpus.py), argmax of each model as in "
            "models/eval_loso.py",
            "distill": args.distill,
            "hidden": args.hidden,
            "distill_note": "soft targets from each fold's own classifier, trained without "
            "the fold's held-out sources (eval_loso.py --teacher-out)"
            if args.distill
            else "labels only: no classifier output used",
            "static_model": encoder.id,
            "max_tokens": args.max_tokens,
            "seed": args.seed,
            "folds": folds,
            **report,
            "cpu": cpu_signature(),
            "wall_seconds": round(time.perf_counter() - started, 1),
        }
        if args.out_json:
            args.out_json.parent.mkdir(parents=True, exist_ok=True)
            args.out_json.write_text(json.dumps(result, indent=1) + "\n")
            plot(result, args.out_json.with_suffix(".png"))
            np.savez_compressed(args.out_json.with_suffix(".probs.npz"), static_probs=static_probs)
            print(f"wrote {args.out_json}", flush=True)
        c, n = result["classifier_alone"], result["nested"]
        d = result["chosen_default"]
        print(f"classifier alone {c}; static alone {result['static_alone']}")
        print(f"nested: {json.dumps({k: n[k] for k in n if k != 'per_fold'})}")
        print(f"default: {json.dumps(d)}")

    if args.out:
        print("shipped head: all training sources", flush=True)
        soft = None
        if args.distill:
            texts = [e.text for e in full_train]
            soft = model_teacher(args.teacher_model, texts, args.max_tokens, args.teacher_cache)
        head = fit(full_train, full_val, feats, soft, args.distill, args.l2, args.hidden, args.seed)
        cascade = json.loads(args.cascade_json.read_text()) if args.cascade_json else result
        if not cascade:
            raise SystemExit("--out needs --loso or --cascade-json for the thresholds")
        d = cascade["chosen_default"]
        write_head(args, encoder, head, d, cascade, full_train, full_val, started)
    return 0


def write_head(
    args: argparse.Namespace,
    encoder: StaticEncoder,
    head: dict[str, object],
    default: dict[str, object],
    cascade: dict[str, object],
    train: Sequence[Example],
    val: Sequence[Example],
    started: float,
) -> None:
    """route_head.npz (weight, bias) and route_head.json (routes, thresholds, provenance)."""
    out: Path = args.out
    arrays = {k: head[k] for k in ("weight", "bias", "hidden_weight", "hidden_bias") if k in head}
    np.savez(out / HEAD_FILE, **arrays)  # type: ignore[arg-type]
    table = encoder.model_dir / "static.npz"
    meta = {
        "version": f"static-routes/{args.version}",
        "routes": list(ROUTES),
        "dim": encoder.dim,
        "temperature": round(float(head["temperature"]), 4),  # type: ignore[arg-type]
        "static_model": {"id": encoder.id, "static.npz_sha256": sha256_file(table)},
        "thresholds": {
            "min_probability": default["min_probability"],
            "min_margin": default["min_margin"],
            "chosen": "leave-sources-out: the most prompts answered with the cascade's macro "
            f"accuracy within {CHOOSE_DROP} of the classifier's (bar {MAX_DROP})",
            "out_of_source": {
                k: cascade["nested"][k]  # type: ignore[index]
                for k in ("share_answered", "static_accuracy_on_answered", "cascade")
            }
            | {"classifier_alone": cascade["classifier_alone"]},
        },
        "training": {
            "script": "models/build_static_head.py",
            "method": (
                f"one hidden layer of {args.hidden} ReLU units on the static embedding (torch "
                f"AdamW lr {MLP_LR}, weight decay {MLP_WEIGHT_DECAY}, batch {MLP_BATCH}, best "
                f"of {MLP_EPOCHS} epochs by in-source validation accuracy)"
                if args.hidden
                else "softmax regression on the static embedding (L-BFGS, numpy/scipy), "
                "L2 by in-source validation"
            )
            + f"; targets: label smoothing {LABEL_SMOOTHING}, mixed with the classifier's "
            f"probabilities with weight {args.distill}",
            "hidden": args.hidden,
            "seed": args.seed,
            "l2": head["l2"],
            "distill": args.distill,
            "max_tokens": args.max_tokens,
            "train_examples": len(train),
            "train_data_sha256": digest(train),
            "val_examples": len(val),
            "val_data_sha256": digest(val),
            "val_accuracy_in_source": round(float(head["val_accuracy"]), 4),  # type: ignore[arg-type]
            "never_trained_on": sorted(EVAL_ONLY_SOURCES),
            "wall_seconds": round(time.perf_counter() - started, 1),
        },
        "sha256": {HEAD_FILE: sha256_file(out / HEAD_FILE)},
    }
    (out / HEAD_META).write_text(json.dumps(meta, indent=2) + "\n")
    print(f"wrote {out / HEAD_FILE} ({meta['version']})", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
