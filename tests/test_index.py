"""Route index bundles: build → load round trip, and every way a bundle is refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from semroute.bundle import BundleError
from semroute.config import Config
from semroute.route_index import build_route_index, load_route_index


@pytest.fixture
def bundle(tmp_path: Path, index_dir: Path) -> Path:
    out = tmp_path / "b"
    shutil.copytree(index_dir, out)
    return out


def test_round_trip_finds_the_utterance_itself(config: Config, encoder, index_dir: Path) -> None:  # type: ignore[no-untyped-def]
    idx = load_route_index(index_dir, config, encoder)
    manifest = json.loads((index_dir / "manifest.json").read_text())
    assert idx.version == manifest["version"] and manifest["encoder_id"] == encoder.id
    assert manifest["dim"] == encoder.dim and manifest["created_at"]
    assert set(manifest["files"]) == {"index.faiss", "labels.npy", "routes.json"}
    utterance = config.route("translation").utterances[0]
    scores, route_ids = idx.search(encoder.encode([utterance]), 3)
    assert idx.route_names[route_ids[0, 0]] == "translation"
    assert scores[0, 0] == pytest.approx(1.0, abs=1e-3)


def test_k_larger_than_index_is_clamped(config: Config, encoder, index_dir: Path) -> None:  # type: ignore[no-untyped-def]
    idx = load_route_index(index_dir, config, encoder)
    _, ids = idx.search(encoder.encode(["hello"]), 10_000)
    assert ids.shape[1] == idx.index.ntotal and (ids >= 0).all()


def test_corrupt_file_is_refused(config: Config, encoder, bundle: Path) -> None:  # type: ignore[no-untyped-def]
    with (bundle / "labels.npy").open("r+b") as f:
        f.seek(-4, 2)
        f.write(b"\x07\x07\x07\x07")
    with pytest.raises(BundleError, match=r"checksum mismatch on labels\.npy"):
        load_route_index(bundle, config, encoder)


def test_truncated_and_missing_files_are_refused(config: Config, encoder, bundle: Path) -> None:  # type: ignore[no-untyped-def]
    data = (bundle / "index.faiss").read_bytes()
    (bundle / "index.faiss").write_bytes(data[: len(data) // 2])
    with pytest.raises(BundleError, match=r"checksum mismatch on index\.faiss"):
        load_route_index(bundle, config, encoder)
    (bundle / "index.faiss").unlink()
    with pytest.raises(BundleError, match="missing"):
        load_route_index(bundle, config, encoder)


def test_half_written_bundle_without_manifest_is_refused(
    config: Config, encoder, bundle: Path
) -> None:  # type: ignore[no-untyped-def]
    (bundle / "manifest.json").unlink()
    with pytest.raises(BundleError, match="half-written"):
        load_route_index(bundle, config, encoder)


def test_other_encoder_or_dimension_is_refused(config: Config, encoder, bundle: Path) -> None:  # type: ignore[no-untyped-def]
    m = json.loads((bundle / "manifest.json").read_text())
    (bundle / "manifest.json").write_text(json.dumps({**m, "encoder_id": "some-other-encoder"}))
    with pytest.raises(BundleError, match="built for encoder 'some-other-encoder'"):
        load_route_index(bundle, config, encoder)
    (bundle / "manifest.json").write_text(json.dumps({**m, "dim": 768}))
    with pytest.raises(BundleError, match="dim 768"):
        load_route_index(bundle, config, encoder)


def test_bundle_from_other_routes_is_refused(config: Config, encoder, index_dir: Path) -> None:  # type: ignore[no-untyped-def]
    routes = list(config.routes)
    routes[1] = routes[1].model_copy(
        update={"utterances": (*routes[1].utterances, "a new example")}
    )
    changed = config.model_copy(update={"routes": tuple(routes)})
    with pytest.raises(BundleError, match="semroute index build"):
        load_route_index(index_dir, changed, encoder)


def test_rebuild_replaces_atomically(config: Config, encoder, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "idx"
    first = build_route_index(config, encoder, out)
    second = build_route_index(config, encoder, out)
    assert json.loads((out / "manifest.json").read_text())["version"] == second["version"]
    assert first["files"] == second["files"]  # deterministic content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx"]  # no temp dirs left behind
    assert np.load(out / "labels.npy").shape[0] == second["count"]
