"""Fuzz bundle manifests: bytes as `manifest.json` of a bundle directory (two real files),
through every reader of it: peek (pick the loader), verification, the same-version check.

Allowed outcome: a verified manifest, or a BundleError saying what is wrong.

    python -m fuzz.bundle_manifest -runs=100000
"""

from __future__ import annotations

import hashlib
import json

import atheris

from fuzz.common import scratch_dir

with atheris.instrument_imports(include=["semroute"]):
    from semroute.admin import bundles
    from semroute.bundle import MANIFEST, BundleError, read_manifest

WORK = scratch_dir("semroute-fuzz-manifest-")
FILES = {"index.faiss": b"\x00" * 64, "routes.json": b'{"routes": ["a"]}\n'}
for _name, _data in FILES.items():
    (WORK / _name).write_bytes(_data)
VALID = {
    "format": 1,
    "kind": "routes",
    "version": "routes-20260101T000000-abcdef01",
    "encoder_id": "enc",
    "dim": 384,
    "eval": {"probe_route_accuracy": 0.9},
    "files": {n: hashlib.sha256(d).hexdigest() for n, d in FILES.items()},
}


def test_one(data: bytes) -> None:
    (WORK / MANIFEST).write_bytes(data)
    try:
        peek = bundles.peek_manifest(WORK)
        bundles.loader_for(peek.get("kind"))
        figures = bundles.eval_figures(peek)
        assert all(isinstance(v, float) for v in figures.values())
        bundles.check_same_files(WORK, peek, VALID)
        m = read_manifest(WORK, kind="routes", encoder_id="enc", dim=384)
    except BundleError as e:
        assert str(e)
        return
    assert m["files"] == VALID["files"]


def seeds() -> list[bytes]:
    return [json.dumps(VALID).encode(), json.dumps({**VALID, "kind": "learned"}).encode()]


if __name__ == "__main__":
    from fuzz.common import main

    main(test_one, seeds)
