"""The route classifier's head: route probabilities from the encoder's sentence embedding.

The classifier graph (models/build_classifier.py) computes ``route_logits = W · embedding + b``
on the very embedding the encoder returns, so serving keeps one interface (embeddings flow
through the batcher, caches and FAISS as before) and applies the 16×384 head in numpy (~2 µs).
The head ships beside the graph as ``route_head.npz``; `verify` checks it reproduces the graph's
own ``route_logits`` output, so the two can never drift apart.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from semroute.bundle import sha256_file
from semroute.encoder.errors import EncoderError

HEAD_FILE = "route_head.npz"
# The graph's logits and the numpy head on the same embedding agree to float rounding.
VERIFY_TOLERANCE = 1e-3


class RouteHead:
    """Immutable; safe to share between threads."""

    def __init__(
        self,
        routes: tuple[str, ...],
        weight: np.ndarray,
        bias: np.ndarray,
        temperature: float,
        version: str,
        graph_output: str,
    ) -> None:
        if weight.shape != (len(routes), weight.shape[1]) or bias.shape != (len(routes),):
            raise EncoderError(f"route head shapes {weight.shape}/{bias.shape} do not fit routes")
        if not temperature > 0:
            raise EncoderError(f"route head temperature must be > 0, got {temperature}")
        self.routes = routes
        # Pre-scaled by 1/temperature: probabilities are softmax(emb @ weight_t + bias).
        self._weight_t = np.ascontiguousarray((weight / temperature).T, dtype=np.float32)
        self._bias = (bias / temperature).astype(np.float32)
        self._raw = (np.ascontiguousarray(weight.T, dtype=np.float32), bias.astype(np.float32))
        self.temperature = float(temperature)
        self.version = version
        self.graph_output = graph_output
        self.dim = int(weight.shape[1])

    @classmethod
    def load(cls, model_dir: Path, meta: dict[str, Any]) -> RouteHead | None:
        """The head described by encoder.json's ``classifier`` block; None for a plain encoder."""
        spec = meta.get("classifier")
        if spec is None:
            return None
        path = model_dir / HEAD_FILE
        try:
            expected = spec["sha256"]
            routes = tuple(str(r) for r in spec["routes"])
            temperature = float(spec["temperature"])
            version = str(spec["version"])
            output = str(spec["output"])
        except (KeyError, TypeError, ValueError) as e:
            raise EncoderError(f"{model_dir}/encoder.json: bad 'classifier' block ({e})") from None
        if not path.is_file():
            raise EncoderError(f"{path} is missing: the classifier model needs its route head")
        if sha256_file(path) != expected:
            raise EncoderError(f"{path} does not match the sha256 in encoder.json")
        with np.load(path) as z:
            weight, bias = z["weight"].astype(np.float32), z["bias"].astype(np.float32)
        return cls(routes, weight, bias, temperature, version, output)

    def logits(self, embeddings: np.ndarray) -> np.ndarray:
        """Uncalibrated logits (n, routes), as the graph's output."""
        weight_t, bias = self._raw
        return embeddings @ weight_t + bias

    def probabilities(self, embeddings: np.ndarray) -> np.ndarray:
        """Calibrated route probabilities (n, routes) for L2-normalised embeddings (n, dim)."""
        z = embeddings @ self._weight_t + self._bias
        z -= z.max(axis=1, keepdims=True)
        np.exp(z, out=z)
        z /= z.sum(axis=1, keepdims=True)
        return z

    def verify(self, embeddings: np.ndarray, graph_logits: np.ndarray) -> None:
        """Raise unless this head reproduces the graph's logits for the same embeddings."""
        diff = float(np.abs(self.logits(embeddings) - graph_logits).max())
        if not diff <= VERIFY_TOLERANCE:
            raise EncoderError(
                f"{HEAD_FILE} disagrees with the graph's {self.graph_output} (max |diff| "
                f"{diff:.2e}): the files come from different builds; rebuild the model directory"
            )
