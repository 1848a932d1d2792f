"""Loading a path whose manifest names an already-loaded version checks its files against
the loaded bundle: the same files answer `already_loaded`; a difference is refused with
FAILED_PRECONDITION naming the file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import grpc
import pytest

from semroute.config import Config
from semroute.v1 import admin_pb2 as apb

from .test_admin_support import AUTH, Bundles, bundles, copy_bundle, running_app, status, stubs

__all__ = ["bundles"]


def _edit_config(b: Path) -> None:
    with (b / "config.yaml").open("a") as f:
        f.write("\n# edited after the build\n")


def _edit_config_and_manifest(b: Path) -> None:
    """A consistent bundle (its own checksums match) that reuses the version label."""
    _edit_config(b)
    from semroute.bundle import sha256_file

    m = json.loads((b / "manifest.json").read_text())
    m["files"]["config.yaml"] = sha256_file(b / "config.yaml")
    (b / "manifest.json").write_text(json.dumps(m))


def _corrupt_index(b: Path) -> None:
    data = bytearray((b / "index.faiss").read_bytes())
    data[-1] ^= 0xFF
    (b / "index.faiss").write_bytes(bytes(data))


def _extra_file(b: Path) -> None:
    (b / "notes.txt").write_text("x")
    m = json.loads((b / "manifest.json").read_text())
    m["files"]["notes.txt"] = "0" * 64
    (b / "manifest.json").write_text(json.dumps(m))


def _missing_file(b: Path) -> None:
    (b / "routes.json").unlink()


CASES = {
    "edited-config": (_edit_config, "config.yaml differs"),
    "relabelled": (_edit_config_and_manifest, "config.yaml differs"),
    "corrupt-index": (_corrupt_index, "index.faiss differs"),
    "extra-file": (_extra_file, "notes.txt is not part of the loaded bundle"),
    "missing-file": (_missing_file, "routes.json is missing"),
}


async def test_same_version_different_files_is_refused_naming_the_file(
    config: Config, encoder: Any, bundles: Bundles, tmp_path: Path
) -> None:
    async with running_app(config, encoder, bundles.a) as (_, target), stubs(target) as (adm, _):
        # The started bundle (A, adopted) and one loaded over the API (B, from its archive).
        await adm.LoadIndex(apb.LoadIndexRequest(path=str(bundles.b_archive)), metadata=AUTH)
        for version, src in ((bundles.version_a, bundles.a), (bundles.version_b, bundles.b)):
            same = copy_bundle(src, tmp_path / f"same-{version}")
            r = await adm.LoadIndex(apb.LoadIndexRequest(path=str(same)), metadata=AUTH)
            assert r.already_loaded and r.index.version == version
            for name, (edit, pattern) in CASES.items():
                b = copy_bundle(src, tmp_path / f"{name}-{version}")
                edit(b)
                with pytest.raises(grpc.aio.AioRpcError) as e:
                    await adm.LoadIndex(apb.LoadIndexRequest(path=str(b)), metadata=AUTH)
                assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION, name
                assert pattern in (e.value.details() or ""), (name, e.value.details())
                assert f"version {version} is already loaded" in (e.value.details() or "")
        st = await status(adm)
        assert st.active_version == bundles.version_a and st.loaded == 2
        assert st.rejected == 2 * len(CASES)


def test_a_manifest_may_only_name_plain_files_in_its_directory(
    bundles: Bundles, encoder: Any, tmp_path: Path
) -> None:
    from semroute.bundle import BundleError, read_manifest

    outside = tmp_path / "secret"
    outside.write_text("not part of any bundle")
    for name in ("../secret", str(outside), "..", "a\\b"):
        b = copy_bundle(bundles.a, tmp_path / f"b{len(list(tmp_path.iterdir()))}")
        m = json.loads((b / "manifest.json").read_text())
        m["files"][name] = "0" * 64
        (b / "manifest.json").write_text(json.dumps(m))
        with pytest.raises(BundleError, match="refused file name"):
            read_manifest(b, kind="routes", encoder_id=encoder.id, dim=encoder.dim)
