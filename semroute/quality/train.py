"""``semroute train``: labelled prompts -> a versioned ``learned`` bundle.

The bundle (a directory, written atomically by :mod:`semroute.bundle`):

* ``index.faiss``: the labelled prompts' normalised embeddings (inner product; flat up to
  50,000 prompts, HNSW above);
* ``scores.npy``: (n, n_models) float32 quality in [0, 1], row i for the index's vector i;
* ``head.npz``: the learned heads the blend uses (logistic on the embedding, logistic on hashed
  word n-grams with its IDF vector);
* ``manifest.json``: kind ``learned``, version, encoder id and dim, models, prices, the chosen
  hyper-parameters and blend weights, the search report, and the knob calibration table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import faiss
import numpy as np

from semroute.bundle import write_bundle
from semroute.predictor import HEAD_FILE, INDEX_FILE, KIND, SCORES_FILE
from semroute.quality.calibrate import knob_table
from semroute.quality.datasets import Dataset
from semroute.quality.learn import Fitted, fit_with_search

HNSW_ABOVE = 50_000


def model_prices(models: list[str], prices: dict[str, float]) -> np.ndarray:
    """Price vector in model order; models without a price are ordered by nothing else, so
    every model needs one (two models without prices: the less accurate is taken as cheap)."""
    missing = [m for m in models if m not in prices]
    if missing:
        raise ValueError(f"no price for {', '.join(missing)}: pass --price MODEL=USD_PER_MTOK")
    return np.array([prices[m] for m in models], dtype=np.float64)


def build_index(x: np.ndarray) -> faiss.Index:
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.shape[0] > HNSW_ABOVE:
        index = faiss.IndexHNSWFlat(x.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 80
    else:
        index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    return index


def fit(
    ds: Dataset,
    emb: np.ndarray,
    tokens: np.ndarray,
    prices: np.ndarray,
    *,
    inner_folds: int | None = None,
    seed: int = 0,
    use_text: bool = True,
    progress: bool = True,
) -> Fitted:
    return fit_with_search(
        emb,
        ds.scores,
        ds.prompts,
        prices,
        tokens.astype(np.float64),
        inner_folds=inner_folds,
        seed=seed,
        use_text=use_text,
        progress=progress,
    )


def write_learned_bundle(
    out_dir: Path,
    fitted: Fitted,
    ds: Dataset,
    tokens: np.ndarray,
    prices: dict[str, float],
    *,
    encoder_id: str,
    dim: int,
    data_source: str = "",
    encoder_max_tokens: int | None = None,
    eval_summary: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write the bundle for a fitted predictor; returns its manifest."""
    h = fitted.hyper
    price_vec = model_prices(ds.models, prices)
    costs = tokens.astype(np.float64)[:, None] * price_vec[None, :] / 1e6
    calibration: dict[str, Any] = {}
    if fitted.oof is not None:
        calibration["knob_table"] = knob_table(fitted.oof, ds.scores, price_vec, costs)
        calibration["knob_meaning"] = (
            "quality target: the share of the gap between the cheapest model and the best "
            "single model kept, measured out-of-fold on the training data"
        )

    def files(tmp: Path) -> None:
        faiss.write_index(build_index(fitted.x), str(tmp / INDEX_FILE))
        np.save(tmp / SCORES_FILE, fitted.y.astype(np.float32))
        heads: dict[str, np.ndarray] = {}
        if h.w_emb > 0 and fitted.emb_w is not None and fitted.emb_b is not None:
            heads |= {"emb_w": fitted.emb_w, "emb_b": fitted.emb_b}
        if h.w_text > 0 and fitted.text_w is not None and fitted.text_b is not None:
            assert fitted.idf is not None
            heads |= {"idf": fitted.idf, "text_w": fitted.text_w, "text_b": fitted.text_b}
        if heads:
            np.savez_compressed(tmp / HEAD_FILE, **heads)

    meta = {
        "encoder_id": encoder_id,
        "dim": int(dim),
        "encoder_max_tokens": encoder_max_tokens,
        "models": list(ds.models),
        "prices": {m: float(prices[m]) for m in ds.models},
        "predictor": {
            "k": int(h.k),
            "power": float(h.power),
            "prior": [float(v) for v in fitted.prior],
            "prior_count": 1.0,
            "weights": {"knn": h.w_knn, "emb_head": h.w_emb, "text_head": h.w_text},
            "emb_l2": h.emb_l2,
            "text_l2": h.text_l2,
            "uses_text": h.w_text > 0,
        },
        "training": {
            "examples": len(ds),
            "data": data_source,
            "prompts_sha256": ds.fingerprint(),
            "score_scale": ds.scale,
            "mean_quality": {
                m: float(v) for m, v in zip(ds.models, ds.scores.mean(0), strict=True)
            },
            "search": fitted.search,
        },
        "eval": eval_summary or {},
        "calibration": calibration,
    }
    return write_bundle(Path(out_dir), KIND, files, meta)
