"""Embedding labelled prompts in batches, with an on-disk cache.

The cache key is (encoder id and truncation length, sha256 of the prompts in order), so a
repeated evaluation of the same data with the same encoder never re-embeds; a different encoder
or any changed prompt gets a new entry. Entries hold the embeddings and the prompts' token
counts (for cost figures).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from semroute.quality.datasets import prompts_sha256

DEFAULT_CACHE_DIR = Path("var/cache")


class EncoderLike(Protocol):
    id: str
    dim: int

    def encode(self, texts: list[str]) -> np.ndarray: ...

    def count_tokens(self, text: str) -> int: ...


def cache_path(cache_dir: Path, encoder_id: str, prompts: Sequence[str]) -> Path:
    enc = hashlib.sha256(encoder_id.encode()).hexdigest()[:16]
    return Path(cache_dir) / "embeddings" / f"{enc}-{prompts_sha256(prompts)[:32]}.npz"


def embed_prompts(
    encoder: EncoderLike,
    prompts: Sequence[str],
    *,
    cache_dir: Path | None = DEFAULT_CACHE_DIR,
    batch_size: int = 64,
    progress: bool = True,
    desc: str = "embedding",
) -> tuple[np.ndarray, np.ndarray]:
    """(embeddings (n, dim) float32, token counts (n,) int64), from the cache when possible."""
    # the truncation length changes long prompts' embeddings: part of the key
    key = f"{encoder.id}|max_tokens={getattr(encoder, 'max_tokens', '')}"
    path = cache_path(cache_dir, key, prompts) if cache_dir is not None else None
    if path is not None and path.exists():
        with np.load(path, allow_pickle=False) as z:
            if str(z["encoder_id"]) == encoder.id and z["emb"].shape == (len(prompts), encoder.dim):
                return z["emb"].astype(np.float32), z["tokens"].astype(np.int64)
    # Embed shortest first: batches of similar lengths pad less.
    order = np.argsort([len(p) for p in prompts], kind="stable")
    emb = np.zeros((len(prompts), encoder.dim), dtype=np.float32)
    bar = None
    if progress:
        try:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(prompts), desc=desc, unit="prompt", dynamic_ncols=True)
        except ImportError:  # pragma: no cover
            bar = None
    for s in range(0, len(prompts), batch_size):
        ix = order[s : s + batch_size]
        emb[ix] = encoder.encode([prompts[i] for i in ix])
        if bar is not None:
            bar.update(len(ix))
    if bar is not None:
        bar.close()
    tokens = np.array([encoder.count_tokens(p) for p in prompts], dtype=np.int64)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz")
        os.close(fd)
        np.savez(tmp, emb=emb, tokens=tokens, encoder_id=np.array(encoder.id))
        os.replace(tmp, path)
    return emb, tokens
