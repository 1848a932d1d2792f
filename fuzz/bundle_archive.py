"""Fuzz bundle archives: bytes as a .tar.gz (or, first byte odd, as the tar inside one)
through `unpack_archive` and the manifest check of what it unpacked.

Allowed outcome: an unpacked bundle inside the staging directory, or a BundleError.
Every input's staging files are removed.

    python -m fuzz.bundle_archive -runs=100000
"""

from __future__ import annotations

import gzip
import io
import shutil
import tarfile

import atheris

from fuzz.common import scratch_dir

with atheris.instrument_imports(include=["semroute"]):
    from semroute.admin import bundles
    from semroute.bundle import BundleError

WORK = scratch_dir("semroute-fuzz-archive-")
ARCHIVE = WORK / "bundle.tar.gz"
STAGING = WORK / "staging"
MAX_BYTES = 1 << 20


def test_one(data: bytes) -> None:
    if not data:
        return
    body = data[1:]
    ARCHIVE.write_bytes(gzip.compress(body, compresslevel=1) if data[0] % 2 else body)
    try:
        out = bundles.unpack_archive(ARCHIVE, STAGING, MAX_BYTES)
        try:
            assert out.resolve().is_relative_to(STAGING.resolve())
            bundles.peek_manifest(out)
        finally:
            shutil.rmtree(bundles.staging_dir_of(out, STAGING), ignore_errors=True)
    except BundleError as e:
        assert str(e)
    leftovers = list(STAGING.iterdir()) if STAGING.exists() else []
    assert not leftovers, leftovers


def _tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tf.addfile(info, io.BytesIO(content))
    return buf.getvalue()


def seeds() -> list[bytes]:
    manifest = b'{"format": 1, "kind": "routes", "version": "v1", "files": {"a": "00"}}'
    tar = _tar({"b/manifest.json": manifest, "b/a": b"hello"})
    return [
        b"\x01" + tar,
        b"\x00" + gzip.compress(tar),
        b"\x01" + _tar({"manifest.json": manifest}),
    ]


if __name__ == "__main__":
    from fuzz.common import main

    main(test_one, seeds)
