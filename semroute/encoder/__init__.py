"""Sentence encoder: text → L2-normalised float32 embedding, via onnxruntime.

Only numpy, onnxruntime and tokenizers are needed at run time. A model directory holds
``model.onnx`` and ``tokenizer.json`` and, for models built by models/build_encoder.py,
``encoder.json`` (id, dim, max_tokens, checksums). Without encoder.json the id is derived from
the directory name and the model's sha256, so embeddings from different models never mix.

``Encoder.encode`` may be called from several threads at once: nothing is mutated after
construction and onnxruntime sessions are thread-safe.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from semroute.bundle import sha256_file
from semroute.encoder.errors import EncoderError
from semroute.encoder.onnx_backend import OnnxBackend
from semroute.encoder.route_head import RouteHead
from semroute.encoder.tokenize import HEAD_TAIL, TextTokenizer, TokenBatch
from semroute.encoder.variants import KernelChoice, resolve_variant

__all__ = [
    "Encoder",
    "EncoderError",
    "KernelChoice",
    "RouteHead",
    "default_model_dir",
    "plain_model_dir",
    "read_metadata",
]

log = logging.getLogger("semroute.encoder")

# The default: all-MiniLM-L6-v2 fine-tuned as the route classifier (models/build_classifier.py).
BUNDLED_MODEL = "minilm-l6-routes-int8"
# The plain sentence encoder it was fine-tuned from (models/build_encoder.py); build scripts use it.
PLAIN_MODEL = "minilm-l6-v2-int8"
MODEL_DIR_ENV = "SEMROUTE_MODEL_DIR"
# Used when a model directory has no encoder.json to say otherwise.
FALLBACK_MAX_TOKENS = 512
# Upper bound on rows × padded width per onnxruntime call. Bigger calls are not faster on CPU:
# measured on 2 vCPUs, throughput was flat from 64 to 2048 tokens per call and halved at 16384
# (activations fall out of cache; attention scores grow with width²).
MAX_BATCH_TOKENS = 2048
MAX_BATCH_ROWS = 128
# Texts run once at load to check a classifier's numpy head against its graph's logits.
ROUTE_HEAD_PROBES = (
    "write a python function that parses dates",
    "hello there",
    "证明根号2是无理数",
)


def default_model_dir() -> Path:
    """The bundled model (<repo>/models/minilm-l6-routes-int8), or $SEMROUTE_MODEL_DIR if set."""
    env = os.environ.get(MODEL_DIR_ENV)
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[2] / "models" / BUNDLED_MODEL


def plain_model_dir() -> Path:
    """The bundled plain sentence encoder (<repo>/models/minilm-l6-v2-int8)."""
    return Path(__file__).resolve().parents[2] / "models" / PLAIN_MODEL


def read_metadata(model_dir: Path) -> dict[str, Any]:
    """encoder.json of a model directory ({} when it has none)."""
    path = model_dir / "encoder.json"
    if not path.exists():
        return {}
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise EncoderError(f"cannot read {path}: {e}") from e
    if not isinstance(meta, dict):
        raise EncoderError(f"{path} must hold a JSON object")
    return meta


class Encoder:
    """Encodes texts with an ONNX sentence encoder; see the module docstring for the layout."""

    id: str
    dim: int
    max_tokens: int
    providers: list[str]

    def __init__(
        self,
        model_dir: str | Path,
        *,
        device: str = "cpu",
        intra_op_threads: int = 0,
        max_tokens: int | None = None,
        variant: str | None = None,
        truncation: str = HEAD_TAIL,
    ) -> None:
        """``variant``: which of the directory's graphs to run (None: model.onnx); all share
        the id, since every shipped variant meets the accuracy bar against fp32
        (semroute/encoder/variants.py), so an index built with one serves the others."""
        model_dir = Path(model_dir).expanduser()
        if not model_dir.is_dir():
            raise EncoderError(
                f"encoder model directory {model_dir} does not exist; set encoder.model_dir in "
                f"the config or ${MODEL_DIR_ENV}, or rebuild the bundled model with "
                f"`python models/build_classifier.py --out models/{BUNDLED_MODEL}`"
            )
        meta = read_metadata(model_dir)
        chosen = resolve_variant(model_dir, meta, variant)
        model_path = chosen.path
        tokenizer_path = model_dir / "tokenizer.json"
        for path in (model_path, tokenizer_path):
            if not path.is_file():
                raise EncoderError(
                    f"{path} is missing: an encoder directory needs model.onnx and tokenizer.json"
                )
        model_sha = sha256_file(model_path)
        expected = chosen.sha256
        if expected and expected != model_sha:
            raise EncoderError(
                f"{model_path} does not match the sha256 in encoder.json ({model_sha[:12]}… vs "
                f"{expected[:12]}…): the file is corrupt, a Git LFS pointer, or from another "
                "build; rebuild the directory with models/build_encoder.py"
            )

        self.model_dir = model_dir
        self.model_path = model_path
        self.variant = chosen.name
        self.intra_op_threads = intra_op_threads
        # Set by whoever chose the variant and threads (semroute.server.app.make_encoder).
        self.kernel: KernelChoice | None = None
        self.id = str(meta.get("id") or f"{model_dir.name}/{model_sha[:12]}")
        self._backend = OnnxBackend(
            model_path,
            device=device,
            intra_op_threads=intra_op_threads,
            output_normalized=bool(meta.get("normalized", False)),
        )
        self.providers = self._backend.providers

        limit = (
            max_tokens if max_tokens is not None else meta.get("max_tokens", FALLBACK_MAX_TOKENS)
        )
        self.max_tokens = int(limit)
        positions = meta.get("max_positions")
        if positions is not None and self.max_tokens > int(positions):
            raise EncoderError(
                f"max_tokens={self.max_tokens} exceeds the {positions} positions {self.id} knows"
            )
        self._tokenizer = TextTokenizer(tokenizer_path, self.max_tokens, truncation)

        dim = self._backend.dim
        if dim is None:  # symbolic last axis: ask the model
            dim = int(self._backend.run(self._tokenizer.encode_batch(["dimension probe"])).shape[1])
        if "dim" in meta and int(meta["dim"]) != dim:
            raise EncoderError(f"encoder.json says dim {meta['dim']} but {model_path} gives {dim}")
        self.dim = int(dim)
        # The trained route classifier's head, when this model is one (models/build_classifier.py).
        self.route_head = RouteHead.load(model_dir, meta)
        if self.route_head is not None:
            self._check_route_head(self.route_head)
        log.info(
            "encoder %s loaded from %s (variant %s, dim %d, max_tokens %d, providers %s)",
            self.id,
            model_dir,
            self.variant,
            self.dim,
            self.max_tokens,
            ",".join(self.providers),
        )

    def _check_route_head(self, head: RouteHead) -> None:
        if head.dim != self.dim:
            raise EncoderError(f"route head expects dim {head.dim}, {self.id} gives {self.dim}")
        if head.graph_output not in self._backend.output_names:
            raise EncoderError(f"{self.model_dir}: the graph has no {head.graph_output} output")
        probe = self._tokenizer.encode_batch(list(ROUTE_HEAD_PROBES))
        head.verify(self._backend.run(probe), self._backend.run_output(probe, head.graph_output))

    def __repr__(self) -> str:
        return f"Encoder(id={self.id!r}, dim={self.dim}, providers={self.providers})"

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) float32, C-contiguous, unit-length rows; row i embeds texts[i].

        Texts are run shortest first in sub-batches padded only to their own longest member,
        so one long prompt does not make a whole batch pay for its length.
        """
        if isinstance(texts, str):
            raise TypeError("encode() takes a sequence of strings, not a single string")
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if not len(texts):
            return out
        batch = self._tokenizer.encode_batch(texts)
        for rows in _chunks(batch):
            out[rows] = self._backend.run(batch.take(rows))
        return out

    def count_tokens(self, text: str) -> int:
        """Tokens in ``text`` including special tokens, before truncation to max_tokens."""
        return self._tokenizer.count_tokens(text)


def _chunks(batch: TokenBatch) -> list[np.ndarray]:
    """Row indices, shortest first, grouped so each group stays within the batch limits."""
    order = np.argsort(batch.lengths, kind="stable")
    groups: list[np.ndarray] = []
    start = 0
    for i in range(1, len(order) + 1):
        if i < len(order):
            rows = i - start + 1  # group size if order[i] joins; it would be the longest
            if rows <= MAX_BATCH_ROWS and rows * int(batch.lengths[order[i]]) <= MAX_BATCH_TOKENS:
                continue
        groups.append(order[start:i])
        start = i
    return groups
