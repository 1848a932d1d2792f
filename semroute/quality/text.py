"""Training of the lexical head (the features themselves are request-time code in
:mod:`semroute.text_features`)."""

from __future__ import annotations

import numpy as np

from semroute.text_features import N_FEATURES, Sparse


def fit_sparse_logistic(
    x: Sparse, y: np.ndarray, l2: float, max_iter: int = 200
) -> tuple[np.ndarray, np.ndarray]:
    """One L2-regularised logistic regression per column of ``y`` (soft labels in [0, 1]) on
    the hashed features. Returns (W (N_FEATURES, m) float32, b (m,) float32)."""
    from scipy.optimize import minimize

    from semroute.quality.learn import single_threaded_blas

    m = y.shape[1]
    w_out = np.zeros((N_FEATURES, m), dtype=np.float32)
    b_out = np.zeros(m, dtype=np.float32)
    used = np.unique(x.indices[x.data != 0])
    remap = np.full(N_FEATURES, -1, dtype=np.int64)
    remap[used] = np.arange(used.shape[0])
    d = used.shape[0]
    keep = remap[x.indices] >= 0
    row_of = np.repeat(np.arange(x.n_rows), np.diff(x.indptr))[keep]
    cols = remap[x.indices][keep]
    vals = x.data[keep]
    n = x.n_rows

    for j in range(m):
        t = y[:, j].astype(np.float64)

        def loss(theta: np.ndarray, t: np.ndarray = t) -> tuple[float, np.ndarray]:
            w, b = theta[:d], theta[d]
            z = np.bincount(row_of, weights=vals * w[cols], minlength=n) + b
            # log(1 + e^z) - t z, stably
            ll = np.logaddexp(0.0, z) - t * z
            p = 0.5 * (1.0 + np.tanh(0.5 * z))
            g = p - t
            gw = np.bincount(cols, weights=vals * g[row_of], minlength=d) + l2 * w
            return float(ll.sum() + 0.5 * l2 * (w @ w)), np.concatenate([gw, [g.sum()]])

        with single_threaded_blas():
            res = minimize(
                loss, np.zeros(d + 1), jac=True, method="L-BFGS-B", options={"maxiter": max_iter}
            )
        w_out[used, j] = res.x[:d]
        b_out[j] = res.x[d]
    return w_out, b_out
