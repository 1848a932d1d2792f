"""The static tier's route head: route probabilities from the static encoder's embedding.

Why: the route classifier needs a transformer pass per prompt; a small head on the static
embedding (computed anyway by the similar-prompt cache) answers the prompts it is confident
about for tens of microseconds, and the rest go on to the classifier. models/build_static_head.py
trains it from the classifier (its labels and its probabilities) and picks its thresholds out of
source.

The head ships beside the static table as ``route_head.npz`` and ``route_head.json`` (routes,
temperature, version, the static table it was trained on, calibrated thresholds, provenance,
sha256). The npz holds ``weight`` [routes, width] and ``bias`` [routes], and, for a head with
one hidden layer, ``hidden_weight`` [width, dim] and ``hidden_bias`` [width]: the logits are
``weight · relu(hidden_weight · x + hidden_bias) + bias`` (without it, ``weight · x + bias``).
A head is refused at load when its file does not match the recorded sha256, or it was trained
on another static table or width: its probabilities would be meaningless, not merely worse.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from semroute.bundle import sha256_file
from semroute.encoder.errors import EncoderError
from semroute.encoder.route_head import RouteHead

HEAD_FILE = "route_head.npz"
HEAD_META = "route_head.json"


class StaticRouteHead(RouteHead):
    """A RouteHead for static embeddings, with the thresholds calibrated for the cascade."""

    def __init__(
        self,
        routes: tuple[str, ...],
        weight: np.ndarray,
        bias: np.ndarray,
        temperature: float,
        version: str,
        min_probability: float,
        min_margin: float,
        hidden: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        super().__init__(routes, weight, bias, temperature, version, "static")
        self.min_probability = float(min_probability)
        self.min_margin = float(min_margin)
        self._hidden: tuple[np.ndarray, np.ndarray] | None = None
        if hidden is not None:
            hw, hb = hidden
            if hw.ndim != 2 or hw.shape[0] != weight.shape[1] or hb.shape != (hw.shape[0],):
                raise EncoderError(
                    f"hidden layer {hw.shape}/{hb.shape} does not fit {weight.shape}"
                )
            self._hidden = (np.ascontiguousarray(hw.T, dtype=np.float32), hb.astype(np.float32))
            self.dim = int(hw.shape[1])

    @property
    def hidden_width(self) -> int:
        """Units of the hidden layer; 0 for a linear head."""
        return 0 if self._hidden is None else int(self._hidden[1].shape[0])

    def _features(self, embeddings: np.ndarray) -> np.ndarray:
        if self._hidden is None:
            return embeddings
        hw_t, hb = self._hidden
        h = embeddings @ hw_t
        h += hb
        return np.maximum(h, 0.0, out=h)

    def logits(self, embeddings: np.ndarray) -> np.ndarray:
        return super().logits(self._features(embeddings))

    def probabilities(self, embeddings: np.ndarray) -> np.ndarray:
        return super().probabilities(self._features(embeddings))

    @classmethod
    def load(cls, path: Path, static_id: str, table_sha256: str, dim: int) -> StaticRouteHead:
        """Load ``route_head.json`` (or a directory holding it) for the static model
        ``static_id`` whose table has sha256 ``table_sha256``; raises EncoderError."""
        path = Path(path).expanduser()
        meta_path = path / HEAD_META if path.is_dir() else path
        meta = _read(meta_path)
        npz = meta_path.parent / HEAD_FILE
        try:
            routes = tuple(str(r) for r in meta["routes"])
            temperature = float(meta["temperature"])
            version = str(meta["version"])
            trained_on = meta["static_model"]
            thresholds = meta["thresholds"]
            min_probability = float(thresholds["min_probability"])
            min_margin = float(thresholds["min_margin"])
            expected = str(meta["sha256"][HEAD_FILE])
            model_id, model_sha = str(trained_on["id"]), str(trained_on["static.npz_sha256"])
        except (KeyError, TypeError, ValueError) as e:
            raise EncoderError(f"{meta_path}: not a static route head manifest ({e!r})") from None
        if model_id != static_id or model_sha != table_sha256:
            raise EncoderError(
                f"{meta_path}: head {version} was trained on static model {model_id} "
                f"(static.npz {model_sha[:12]}…), not the loaded {static_id} "
                f"({table_sha256[:12]}…); rebuild it with models/build_static_head.py"
            )
        if not npz.is_file():
            raise EncoderError(f"{npz} is missing: {meta_path} describes it")
        actual = sha256_file(npz)
        if actual != expected:
            raise EncoderError(
                f"{npz} does not match the sha256 in {HEAD_META} ({actual[:12]}… vs "
                f"{expected[:12]}…): the file is corrupt or from another build"
            )
        try:
            with np.load(npz, allow_pickle=False) as z:
                weight = z["weight"].astype(np.float32)
                bias = z["bias"].astype(np.float32)
                hidden = None
                if "hidden_weight" in z.files:
                    hidden = (
                        z["hidden_weight"].astype(np.float32),
                        z["hidden_bias"].astype(np.float32),
                    )
        except (OSError, ValueError, KeyError) as e:
            raise EncoderError(f"cannot read {npz}: {e}") from e
        first = weight if hidden is None else hidden[0]
        if weight.ndim != 2 or first.ndim != 2 or first.shape[1] != dim:
            raise EncoderError(f"{npz}: weight {first.shape} does not fit {dim}-d embeddings")
        if not (0.0 <= min_probability <= 1.0 and 0.0 <= min_margin <= 1.0):
            raise EncoderError(f"{meta_path}: thresholds must lie in [0, 1]")
        arrays = (weight, bias) if hidden is None else (weight, bias, *hidden)
        if not all(np.isfinite(a).all() for a in arrays):
            raise EncoderError(f"{npz}: weights are not finite")
        return cls(routes, weight, bias, temperature, version, min_probability, min_margin, hidden)


def _read(path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise EncoderError(f"static route head {path} does not exist") from None
    except (OSError, ValueError) as e:
        raise EncoderError(f"cannot read {path}: {e}") from e
    if not isinstance(meta, dict):
        raise EncoderError(f"{path} must be a JSON object")
    return meta
