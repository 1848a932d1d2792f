"""The request-time quality predictor, loaded from a ``learned`` bundle.

``predict(embeddings)`` returns each candidate model's predicted quality in [0, 1]: one FAISS
search for the nearest labelled prompts, a similarity-weighted vote of their scores, plus the
learned heads the training chose (a logistic head on the embedding; a logistic head on hashed
word n-grams when the prompt texts are passed too), blended with the weights the training's
inner cross-validation picked.

The policy then takes the cheapest model whose predicted quality is within ``tolerance`` of
every pricier model's (:func:`semroute.scoring.pick_models`); ``tolerance_for_knob``
turns the request's 0-1 knob into that tolerance through the bundle's calibration table, where
the knob is a quality target: the share of the gap between the cheapest model and the best
single model that the routing keeps, as measured out-of-fold on the labelled data.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from semroute.bundle import BundleError, read_manifest
from semroute.scoring import knn_vote, pick_models, predict_logistic

KIND = "learned"
INDEX_FILE = "index.faiss"
SCORES_FILE = "scores.npy"
HEAD_FILE = "head.npz"

__all__ = ["KIND", "BundleError", "QualityPredictor"]


class QualityPredictor:
    """Predicts per-model quality for embedded prompts; immutable after loading."""

    def __init__(
        self,
        bundle_dir: str | Path,
        *,
        encoder_id: str,
        dim: int,
        search_threads: int | None = 1,
    ) -> None:
        """Load and verify a bundle. ``search_threads`` sets FAISS's OpenMP threads for the
        whole process (None leaves them alone): per-request searches are single queries, and
        on a busy 2-core box a multi-threaded flat search of 14k vectors takes ~8 ms instead
        of ~0.5 ms."""
        self.bundle_dir = Path(bundle_dir)
        # Verifies the kind, the encoder (id and dim) and every file's checksum.
        self.manifest: dict[str, Any] = read_manifest(
            self.bundle_dir, kind=KIND, encoder_id=encoder_id, dim=dim
        )
        m = self.manifest
        self.version: str = str(m["version"])
        self.encoder_id: str = encoder_id
        self.dim: int = dim
        self.models: list[str] = list(m["models"])
        self.prices: dict[str, float] = {k: float(v) for k, v in m.get("prices", {}).items()}
        p = m["predictor"]
        self.k: int = int(p["k"])
        self.power: float = float(p["power"])
        self.prior: np.ndarray = np.asarray(p["prior"], dtype=np.float64)
        self.prior_count: float = float(p.get("prior_count", 1.0))
        self.w_knn: float = float(p["weights"]["knn"])
        self.w_emb: float = float(p["weights"]["emb_head"])
        self.w_text: float = float(p["weights"]["text_head"])
        try:
            self.index: faiss.Index = faiss.read_index(str(self.bundle_dir / INDEX_FILE))
            self.scores: np.ndarray = np.load(self.bundle_dir / SCORES_FILE).astype(np.float32)
        except (OSError, RuntimeError, ValueError) as e:
            raise BundleError(f"{self.bundle_dir}: cannot read the index: {e}") from e
        if self.index.d != dim or self.index.ntotal != self.scores.shape[0]:
            raise BundleError(f"{self.bundle_dir}: index and scores disagree with the manifest")
        if self.scores.shape[1] != len(self.models):
            raise BundleError(f"{self.bundle_dir}: scores.npy has {self.scores.shape[1]} models")
        if search_threads is not None:
            faiss.omp_set_num_threads(search_threads)
        if hasattr(self.index, "hnsw"):
            self.index.hnsw.efSearch = max(64, 2 * self.k)
        self.emb_w = self.emb_b = self.idf = self.text_w = self.text_b = None
        if (self.bundle_dir / HEAD_FILE).exists():
            with np.load(self.bundle_dir / HEAD_FILE, allow_pickle=False) as z:
                if "emb_w" in z:
                    self.emb_w, self.emb_b = z["emb_w"], z["emb_b"]
                if "text_w" in z:
                    self.idf, self.text_w, self.text_b = z["idf"], z["text_w"], z["text_b"]
        self._knob_table = _knob_table(m.get("calibration", {}))
        self._price_vec = np.array([self.prices.get(x, np.nan) for x in self.models])

    @classmethod
    def for_encoder(
        cls, bundle_dir: str | Path, encoder: Any, *, search_threads: int | None = 1
    ) -> QualityPredictor:
        """Load a bundle for a running encoder (anything with ``.id`` and ``.dim``)."""
        return cls(
            bundle_dir,
            encoder_id=str(encoder.id),
            dim=int(encoder.dim),
            search_threads=search_threads,
        )

    def predict(self, embeddings: np.ndarray, texts: Sequence[str] | None = None) -> np.ndarray:
        """(n, dim) normalised embeddings -> (n, n_models) float32 predicted quality in [0, 1].

        Pass the prompt ``texts`` too when the bundle has a text head (``uses_text``); without
        them the blend is renormalised over the other estimators.
        """
        q = np.ascontiguousarray(embeddings, dtype=np.float32)
        if q.ndim == 1:
            q = q[None, :]
        parts: list[tuple[float, np.ndarray]] = []
        if self.w_knn > 0:
            sims, idx = self.index.search(q, self.k)
            # HNSW may return fewer than k hits (-1): give those zero weight
            bad = idx < 0
            if bad.any():
                sims = np.where(bad, 0.0, sims)
                idx = np.where(bad, 0, idx)
            parts.append(
                (
                    self.w_knn,
                    knn_vote(
                        sims, idx, self.scores, self.k, self.power, self.prior, self.prior_count
                    ),
                )
            )
        if self.w_emb > 0 and self.emb_w is not None and self.emb_b is not None:
            parts.append((self.w_emb, predict_logistic(q, self.emb_w, self.emb_b)))
        if self.w_text > 0 and texts is not None and self.text_w is not None:
            from semroute import text_features as tx

            assert self.idf is not None and self.text_b is not None
            feats = tx.featurize(texts, self.idf)
            parts.append((self.w_text, tx.predict_sparse_logistic(feats, self.text_w, self.text_b)))
        total = sum(w for w, _ in parts)
        out = sum(w * p for w, p in parts) / total
        return np.clip(out, 0.0, 1.0).astype(np.float32)

    def align(self, pool_models: Sequence[str]) -> np.ndarray:
        """For each model of a serving pool, its column in :meth:`predict`'s output (-1 when
        the bundle has no labels for it). Names match exactly, else by a unique
        case-insensitive substring either way (``gpt-4`` ~ ``gpt-4-1106-preview``)."""
        out = np.full(len(pool_models), -1, dtype=np.int64)
        for i, name in enumerate(pool_models):
            if name in self.models:
                out[i] = self.models.index(name)
                continue
            low = name.lower()
            hits = [j for j, m in enumerate(self.models) if low in m.lower() or m.lower() in low]
            if len(hits) == 1:
                out[i] = hits[0]
        return out

    @property
    def uses_text(self) -> bool:
        return self.w_text > 0 and self.text_w is not None

    def tolerance_for_knob(self, knob: float) -> float:
        """The policy tolerance for a 0-1 knob (0 = cheapest, 1 = best quality), interpolated
        in the bundle's calibration table (the knob is a quality target, see module doc)."""
        knobs, tols = self._knob_table
        return float(np.interp(np.clip(knob, 0.0, 1.0), knobs, tols))

    def choose(
        self, predicted: np.ndarray, tolerance: float, prices: np.ndarray | None = None
    ) -> np.ndarray:
        """Model index per row of ``predicted``: the cheapest whose predicted quality is within
        ``tolerance`` of every pricier model's (prices default to the bundle's)."""
        pr = self._price_vec if prices is None else np.asarray(prices, dtype=np.float64)
        if np.isnan(pr).any():
            raise ValueError("prices unknown for some models; pass prices=")
        return pick_models(np.atleast_2d(predicted), pr, tolerance)


def _knob_table(calibration: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    rows = calibration.get("knob_table") or []
    if not rows:  # uncalibrated: knob 0 -> cheapest always, 1 -> best predicted
        return np.array([0.0, 1.0]), np.array([1.0, 0.0])
    knobs = np.array([float(r["knob"]) for r in rows])
    tols = np.array([float(r["tolerance"]) for r in rows])
    order = np.argsort(knobs)
    return knobs[order], tols[order]


def read_bundle_manifest(bundle_dir: str | Path) -> dict[str, Any]:
    """The manifest as stored, without verification (for reports)."""
    return json.loads((Path(bundle_dir) / "manifest.json").read_text())
