"""Request-time scoring shared by serving and training: how predicted quality becomes a pick.

These few functions decide live traffic, so they live outside the training package
(:mod:`semroute.quality`): serving imports them without importing any learner or search.
The training and evaluation code imports the same functions, so what is measured offline
is what serves.
"""

from __future__ import annotations

import numpy as np

# Pseudo-count of the training mean in the nearest-neighbour vote.
PRIOR_COUNT = 1.0


def pick_models(pred: np.ndarray, prices: np.ndarray, tol: float) -> np.ndarray:
    """Per prompt, the cheapest model whose predicted quality is within ``tol`` of every
    pricier model's prediction (the priciest model always qualifies).

    ``pred`` is (n, m); ``prices`` (m,). Returns model indices (n,). ``tol = 0`` picks a cheaper
    model only when it is predicted at least as good as every pricier one; larger ``tol`` trades
    quality for cost; ``tol <= -1`` always picks the priciest model, ``tol >= 1`` the cheapest.
    """
    p = np.asarray(pred, dtype=np.float64)
    order = np.argsort(np.asarray(prices, dtype=np.float64), kind="stable")  # cheap -> pricey
    ps = p[:, order]
    m = ps.shape[1]
    # best prediction among strictly pricier models, for each position in price order
    pricier_max = np.full_like(ps, -np.inf)
    if m > 1:
        rev_cummax = np.maximum.accumulate(ps[:, ::-1], axis=1)[:, ::-1]
        pricier_max[:, :-1] = rev_cummax[:, 1:]
    ok = ps >= pricier_max - tol
    first = np.argmax(ok, axis=1)  # the priciest always qualifies, so argmax finds a True
    return order[first]


def knn_vote(
    sims: np.ndarray,
    idx: np.ndarray,
    y_train: np.ndarray,
    k: int,
    power: float,
    prior: np.ndarray,
    prior_count: float = PRIOR_COUNT,
) -> np.ndarray:
    """Similarity-weighted vote of the k nearest labelled prompts -> (n_q, m) quality."""
    s = np.clip(sims[:, :k].astype(np.float64), 1e-6, 1.0)
    w = s**power
    ys = y_train[idx[:, :k]]  # (n_q, k, m)
    num = np.einsum("qk,qkm->qm", w, ys) + prior_count * prior[None, :]
    den = w.sum(axis=1, keepdims=True) + prior_count
    return (num / den).astype(np.float32)


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def predict_logistic(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    return sigmoid(x.astype(np.float32) @ w + b).astype(np.float32)
