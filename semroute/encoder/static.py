"""Static-embedding encoder: a fast tier in front of the ONNX encoder.

A text's embedding is the L2-normalised weighted mean of one table row per token (no
attention, no context; the bundled table also has learnt ``[CLS]``/``[SEP]`` rows, averaged in
as the encoder's mean pooling does), computed in Cython (``semroute._static``) with the GIL
released.
That is roughly two orders of magnitude cheaper than a transformer forward pass, at the cost
of fidelity; the router uses it only when its route is confident (see benchmarks/static_tier.py
for the measured agreement with the ONNX encoder).

A model directory, built by models/build_static.py, holds:

* ``static.npz``: ``table`` (int8 [vocab, dim]), ``scale`` (float32 [vocab], dequantisation
  per row), ``weights`` (float32 [vocab], per-token weight; 0 for special and unused tokens)
  and ``empty`` (float32 [dim], the embedding of a text with no usable token);
* ``tokenizer.json``: the source encoder's tokenizer, byte for byte;
* ``static.json``: id, dim, ``space``, ``add_special_tokens``, source encoder id, sha256s,
  build command, measured figures;
* optionally ``route_head.npz`` + ``route_head.json``: the static tier's route head
  (semroute.encoder.static_head), loaded with the table.

``space == "source"`` (the bundled table) means the rows live in the source encoder's space
(same dim, no centering): a static prompt embedding may be searched in the encoder's own route
index, which measured far closer to the encoder's routes than an index built with this class.

``StaticEncoder`` has the same interface as ``semroute.encoder.Encoder`` and, like it, may be
called from several threads at once: nothing is mutated after construction.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from semroute import _static
from semroute.bundle import sha256_file
from semroute.encoder.errors import EncoderError
from semroute.encoder.static_head import HEAD_META, StaticRouteHead
from semroute.encoder.tokenize import TextTokenizer

__all__ = ["StaticEncoder", "default_static_dir"]

log = logging.getLogger("semroute.encoder")

BUNDLED_STATIC = "minilm-l6-v2-static"
STATIC_DIR_ENV = "SEMROUTE_STATIC_DIR"
TABLE_FILE = "static.npz"
TOKENIZER_FILE = "tokenizer.json"
META_FILE = "static.json"


def default_static_dir() -> Path:
    """The bundled table (<repo>/models/minilm-l6-v2-static), or $SEMROUTE_STATIC_DIR if set."""
    env = os.environ.get(STATIC_DIR_ENV)
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[2] / "models" / BUNDLED_STATIC


def _read_meta(model_dir: Path) -> dict[str, Any]:
    path = model_dir / META_FILE
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise EncoderError(
            f"{path} is missing: a static model directory needs {META_FILE}, {TABLE_FILE} and "
            f"{TOKENIZER_FILE}; rebuild it with models/build_static.py"
        ) from None
    except (OSError, ValueError) as e:
        raise EncoderError(f"cannot read {path}: {e}") from e
    if not isinstance(meta, dict) or not meta.get("id") or not meta.get("dim"):
        raise EncoderError(f"{path} must be a JSON object with at least 'id' and 'dim'")
    return meta


class StaticEncoder:
    """Encodes texts with a static token-embedding table; see the module docstring."""

    id: str
    dim: int
    max_tokens: int
    providers: list[str]

    def __init__(
        self,
        model_dir: str | Path,
        *,
        max_tokens: int = 512,
        route_head: str | Path | None = None,
    ) -> None:
        model_dir = Path(model_dir).expanduser()
        if not model_dir.is_dir():
            raise EncoderError(
                f"static model directory {model_dir} does not exist; set "
                f"${STATIC_DIR_ENV} or rebuild it with "
                f"`python models/build_static.py --out models/{BUNDLED_STATIC}`"
            )
        meta = _read_meta(model_dir)
        table_path = model_dir / TABLE_FILE
        tokenizer_path = model_dir / TOKENIZER_FILE
        for path in (table_path, tokenizer_path):
            if not path.is_file():
                raise EncoderError(f"{path} is missing; rebuild with models/build_static.py")
            expected = meta.get("sha256", {}).get(path.name)
            if not expected:
                raise EncoderError(f"{model_dir / META_FILE} records no sha256 for {path.name}")
            actual = sha256_file(path)
            if actual != expected:
                raise EncoderError(
                    f"{path} does not match the sha256 in {META_FILE} ({actual[:12]}… vs "
                    f"{expected[:12]}…): the file is corrupt, a Git LFS pointer, or from "
                    "another build; rebuild the directory with models/build_static.py"
                )

        try:
            with np.load(table_path, allow_pickle=False) as z:
                table = np.ascontiguousarray(z["table"])
                weights = z["weights"].astype(np.float32) * z["scale"].astype(np.float32)
                empty = np.ascontiguousarray(z["empty"], dtype=np.float32)
        except (OSError, ValueError, KeyError) as e:
            raise EncoderError(f"cannot read {table_path}: {e}") from e
        if table.dtype not in (np.int8, np.float32) or table.ndim != 2:
            raise EncoderError(f"{table_path}: table must be a 2-D int8 or float32 array")
        vocab, dim = table.shape
        if dim != int(meta["dim"]) or weights.shape != (vocab,) or empty.shape != (dim,):
            raise EncoderError(
                f"{table_path}: shapes disagree (table {table.shape}, weights {weights.shape}, "
                f"empty {empty.shape}, static.json dim {meta['dim']})"
            )

        # Loads and checks the tokenizer (max_tokens must leave room for text).
        tok = TextTokenizer(tokenizer_path, max_tokens)
        if tok.vocab_size > vocab:
            raise EncoderError(
                f"tokenizer has {tok.vocab_size} tokens but the table only {vocab} rows"
            )
        specials = tok.special_tokens

        self.model_dir = model_dir
        self.id = str(meta["id"])
        self.dim = int(dim)
        self.source_encoder_id = str(meta.get("source_encoder_id", ""))
        # "source": rows live in the source encoder's space (same dim, no centering), so a
        # static embedding may be searched in the encoder's own route index; "own": only in
        # an index built with this StaticEncoder.
        self.space = str(meta.get("space", "own"))
        # Tables built with add_special_tokens model [CLS]/[SEP] as learnt rows (the encoder
        # mean-pools them too). Either way the budget is the ONNX encoder's (which counts
        # [CLS]/[SEP] in max_tokens), so both tiers embed the same tokens of a long prompt.
        self._add_special_tokens = bool(meta.get("add_special_tokens", False))
        self.max_tokens = int(max_tokens)
        self._max_ids = self.max_tokens - (0 if self._add_special_tokens else specials)
        self.providers = ["static"]
        self.table_sha256 = str(meta["sha256"][TABLE_FILE])
        # The static tier's route head (route_head.json beside the table, or `route_head`):
        # with the route classifier on, it decides the fast tier. None: no head.
        head_path = Path(route_head).expanduser() if route_head else model_dir / HEAD_META
        self.route_head: StaticRouteHead | None = None
        if route_head or head_path.is_file():
            self.route_head = StaticRouteHead.load(head_path, self.id, self.table_sha256, dim)
        self._tok = tok
        self._table = table
        self._weights = np.ascontiguousarray(weights)
        self._empty = empty
        log.info(
            "static encoder %s loaded from %s (dim %d, vocab %d, max_tokens %d)",
            self.id,
            model_dir,
            self.dim,
            vocab,
            self.max_tokens,
        )

    def __repr__(self) -> str:
        return f"StaticEncoder(id={self.id!r}, dim={self.dim})"

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) float32, C-contiguous, unit-length rows; row i embeds texts[i].

        One tokenizer call per batch, then one flat id array and offsets into Cython: the
        Python work per text is a list length and a chain step.
        """
        if isinstance(texts, str):
            raise TypeError("encode() takes a sequence of strings, not a single string")
        n = len(texts)
        out = np.empty((n, self.dim), dtype=np.float32)
        if not n:
            return out
        id_lists = self._tok.ids(texts, add_special_tokens=self._add_special_tokens)
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum([len(x) for x in id_lists], out=offsets[1:])
        ids = np.fromiter(
            itertools.chain.from_iterable(id_lists), dtype=np.int32, count=int(offsets[-1])
        )
        _static.pool(self._table, self._weights, ids, offsets, out, self._empty, self._max_ids)
        return out

    def count_tokens(self, text: str) -> int:
        """Tokens in ``text`` including special tokens, before truncation (as Encoder counts)."""
        return self._tok.count_tokens(text)
