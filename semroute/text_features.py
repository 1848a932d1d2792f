"""Lexical features for the quality predictor: hashed word uni- and bigrams, TF-IDF weighted.

The topic of a prompt is what its embedding captures best; its wording (``calculate``,
``which of the following is NOT``, numbers, code) carries part of the difficulty that the
embedding smooths away. A logistic head on these features is blended with the nearest-neighbour
vote when the inner cross-validation finds it helps.

Request time needs only the standard library and numpy: a regex split, crc32 hashes and one
sparse dot product (tens of microseconds per prompt). Training fits the logistic regression
(:func:`semroute.quality.text.fit_sparse_logistic`); serving never imports it.
"""

from __future__ import annotations

import itertools
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

N_FEATURES = 1 << 18
_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass
class Sparse:
    """A CSR matrix as three arrays (rows x N_FEATURES)."""

    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray

    @property
    def n_rows(self) -> int:
        return self.indptr.shape[0] - 1

    def rows(self, idx: np.ndarray) -> Sparse:
        starts, ends = self.indptr[idx], self.indptr[idx + 1]
        lens = ends - starts
        take = (
            np.concatenate([np.arange(s, e) for s, e in zip(starts, ends, strict=True)])
            if len(idx)
            else np.zeros(0, np.int64)
        )
        return Sparse(
            np.concatenate(([0], np.cumsum(lens))).astype(np.int64),
            self.indices[take],
            self.data[take],
        )

    def dot(self, w: np.ndarray) -> np.ndarray:
        """(rows,) or (rows, m) = X @ w."""
        prod = self.data[:, None] * w[self.indices] if w.ndim == 2 else self.data * w[self.indices]
        out = np.zeros((self.n_rows, *w.shape[1:]), dtype=np.float64)
        nz = np.flatnonzero(np.diff(self.indptr) > 0)
        if nz.size:
            out[nz] = np.add.reduceat(prod, self.indptr[nz], axis=0)
        return out

    def tdot(self, g: np.ndarray) -> np.ndarray:
        """X.T @ g for g (rows,)."""
        row_of = np.repeat(np.arange(self.n_rows), np.diff(self.indptr))
        return np.bincount(self.indices, weights=self.data * g[row_of], minlength=N_FEATURES)


def _hashes(text: str) -> list[int]:
    words = _WORD.findall(text.lower())
    out = [zlib.crc32(w.encode()) for w in words]
    out += [zlib.crc32(f"{a} {b}".encode()) for a, b in itertools.pairwise(words)]
    return [h & (N_FEATURES - 1) for h in out]


def term_counts(texts: Sequence[str]) -> Sparse:
    """Raw hashed term counts."""
    indptr = [0]
    indices: list[np.ndarray] = []
    data: list[np.ndarray] = []
    for t in texts:
        u, c = np.unique(np.asarray(_hashes(t), dtype=np.int64), return_counts=True)
        indices.append(u)
        data.append(c.astype(np.float64))
        indptr.append(indptr[-1] + u.shape[0])
    return Sparse(
        np.asarray(indptr, dtype=np.int64),
        np.concatenate(indices) if indices else np.zeros(0, np.int64),
        np.concatenate(data) if data else np.zeros(0),
    )


def fit_idf(counts: Sparse, min_df: int = 2) -> np.ndarray:
    """Smoothed IDF per hashed feature; features seen in fewer than ``min_df`` prompts get 0."""
    df = np.bincount(counts.indices, minlength=N_FEATURES).astype(np.float64)
    n = counts.n_rows
    idf = np.log((1.0 + n) / (1.0 + df)) + 1.0
    idf[df < min_df] = 0.0
    return idf.astype(np.float32)


def tfidf(counts: Sparse, idf: np.ndarray) -> Sparse:
    """Sublinear TF times IDF, rows L2-normalised."""
    data = (1.0 + np.log(counts.data)) * idf[counts.indices]
    sq = np.zeros(counts.n_rows)
    lens = np.diff(counts.indptr)
    nz = np.flatnonzero(lens > 0)
    if nz.size:
        sq[nz] = np.add.reduceat(data * data, counts.indptr[nz])
    norm = np.sqrt(np.repeat(sq, lens))
    data = np.divide(data, norm, out=np.zeros_like(data), where=norm > 0)
    return Sparse(counts.indptr, counts.indices, data)


def featurize(texts: Sequence[str], idf: np.ndarray) -> Sparse:
    return tfidf(term_counts(texts), idf)


def predict_sparse_logistic(x: Sparse, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    z = x.dot(w.astype(np.float64)) + b
    return (0.5 * (1.0 + np.tanh(0.5 * z))).astype(np.float32)
