"""The semantic-route index: route example utterances embedded in FAISS.

Built offline by `semroute index build` from the config's routes, saved as a
bundle, and searched per request for the nearest utterances. A bundle holds
one index per encoder it was built for: the full encoder's, and optionally
the static fast tier's (`static.faiss`), over the same utterances and labels,
so both tiers always swap together under one version.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import faiss
import numpy as np

from semroute.bundle import BundleError, read_manifest, write_bundle
from semroute.config import Config

KIND = "routes"


class TextEncoder(Protocol):
    id: str
    dim: int

    def encode(self, texts: list[str]) -> np.ndarray: ...


def routes_digest(config: Config) -> str:
    """Fingerprint of the routes and utterances, to detect an index built from another config."""
    payload = [[r.name, list(r.utterances)] for r in config.routes]
    return hashlib.sha256(json.dumps(payload).encode()).hexdigest()


@dataclass(frozen=True)
class RouteIndex:
    """A loaded, verified route index; immutable and safe to share between threads."""

    version: str
    route_names: tuple[str, ...]
    index: faiss.Index
    # Route id (position in route_names) of each indexed utterance.
    labels: np.ndarray
    # The same utterances embedded by the static fast-tier encoder, when built for it.
    static_index: faiss.Index | None = None

    def search(
        self, embeddings: np.ndarray, k: int, *, static: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """Nearest utterances: (scores float32 (n,k), route ids int32 (n,k); -1 = empty slot)."""
        index = self.static_index if static else self.index
        if index is None:
            raise ValueError("this index bundle has no static-tier index")
        k = min(k, index.ntotal)
        if k == 0:
            n = len(embeddings)
            return np.zeros((n, 0), dtype=np.float32), np.zeros((n, 0), dtype=np.int32)
        scores, ids = index.search(embeddings, k)
        route_ids = np.where(ids >= 0, self.labels[np.maximum(ids, 0)], -1).astype(np.int32)
        return scores, route_ids


def _embed(encoder: TextEncoder, texts: list[str]) -> np.ndarray:
    if not texts:
        return np.zeros((0, encoder.dim), dtype=np.float32)
    return encoder.encode(texts)


def _flat_index(emb: np.ndarray) -> faiss.Index:
    index = faiss.IndexFlatIP(emb.shape[1])
    index.add(np.ascontiguousarray(emb, dtype=np.float32))
    return index


def build_route_index(
    config: Config, encoder: TextEncoder, out_dir: Path, static_encoder: TextEncoder | None = None
) -> dict:
    """Embed every route utterance and write the bundle; returns its manifest."""
    texts: list[str] = []
    labels: list[int] = []
    names = [r.name for r in config.routes]
    for route_id, route in enumerate(config.routes):
        texts.extend(route.utterances)
        labels.extend([route_id] * len(route.utterances))
    # A config without utterances (e.g. learned routing only) gets an empty
    # index: every request then takes the default route.
    index = _flat_index(_embed(encoder, texts))
    static = _flat_index(_embed(static_encoder, texts)) if static_encoder is not None else None

    def write(tmp: Path) -> None:
        faiss.write_index(index, str(tmp / "index.faiss"))
        if static is not None:
            faiss.write_index(static, str(tmp / "static.faiss"))
        np.save(tmp / "labels.npy", np.asarray(labels, dtype=np.int32))
        (tmp / "routes.json").write_text(
            json.dumps({"routes": names, "utterances": texts}, indent=1) + "\n"
        )

    meta = {
        "encoder_id": encoder.id,
        "dim": encoder.dim,
        "count": len(texts),
        "routes_sha256": routes_digest(config),
        "config_version": config.version,
    }
    if static_encoder is not None:
        meta["static_encoder_id"] = static_encoder.id
        meta["static_dim"] = static_encoder.dim
    return write_bundle(Path(out_dir), KIND, write, meta)


def is_current(
    bundle_dir: Path, config: Config, encoder_id: str, static_encoder_id: str | None = None
) -> bool:
    """Whether a bundle exists and was built from this config's routes with these encoders.

    A quick look at the manifest only; `load_route_index` still verifies everything.
    """
    try:
        manifest = json.loads((Path(bundle_dir) / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    return (
        isinstance(manifest, dict)
        and manifest.get("routes_sha256") == routes_digest(config)
        and manifest.get("encoder_id") == encoder_id
        and manifest.get("static_encoder_id") == static_encoder_id
    )


def load_route_index(
    bundle_dir: Path,
    config: Config,
    encoder: TextEncoder,
    static_encoder: TextEncoder | None = None,
) -> RouteIndex:
    """Load a bundle and check it matches the running encoders and the config's routes."""
    bundle_dir = Path(bundle_dir)
    manifest = read_manifest(bundle_dir, kind=KIND, encoder_id=encoder.id, dim=encoder.dim)
    if manifest.get("routes_sha256") != routes_digest(config):
        raise BundleError(
            f"{bundle_dir}: built from other routes than the config's; "
            "rebuild it with `semroute index build`"
        )
    if static_encoder is not None and (
        manifest.get("static_encoder_id") != static_encoder.id
        or manifest.get("static_dim") != static_encoder.dim
    ):
        raise BundleError(
            f"{bundle_dir}: has no index for the fast tier's encoder {static_encoder.id!r} "
            f"(it has {manifest.get('static_encoder_id')!r}); "
            "rebuild it with `semroute index build`"
        )
    try:
        index = faiss.read_index(str(bundle_dir / "index.faiss"))
        static = (
            faiss.read_index(str(bundle_dir / "static.faiss"))
            if static_encoder is not None
            else None
        )
        labels = np.load(bundle_dir / "labels.npy")
        names = json.loads((bundle_dir / "routes.json").read_text())["routes"]
    except Exception as e:  # faiss raises RuntimeError; json/np their own
        raise BundleError(f"{bundle_dir}: unreadable bundle file: {e}") from None
    sizes = {index.ntotal, len(labels), manifest["count"]}
    if static is not None:
        sizes.add(static.ntotal)
    if index.d != encoder.dim or len(sizes) != 1:
        raise BundleError(f"{bundle_dir}: index, labels and manifest disagree on size")
    if names != [r.name for r in config.routes]:
        raise BundleError(f"{bundle_dir}: route names differ from the config's")
    return RouteIndex(manifest["version"], tuple(names), index, labels.astype(np.int32), static)
