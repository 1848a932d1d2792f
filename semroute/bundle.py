"""Index bundles on disk: a directory of files plus a manifest of their checksums.

A bundle is written to a temporary sibling directory, flushed to disk and
renamed into place (semroute/atomic.py), so a reader never sees a half-written
one, and a build killed at any point leaves the previous bundle (restored on
the next read when the kill fell between the two renames of a replacement).
Loading verifies every checksum and the encoder it was built for before
anything is used. A full disk fails the build with a clear error and leaves
the previous bundle as it was.
"""

from __future__ import annotations

import errno
import hashlib
import json
import shutil
import tempfile
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from semroute.atomic import recover_dir, replace_dir

MANIFEST = "manifest.json"
FORMAT = 1


class BundleError(ValueError):
    """A bundle is missing, corrupt, or built for another encoder."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def no_space(e: BaseException) -> bool:
    """True for a full disk, whether Python (OSError) or a C++ library (its message) saw it."""
    if isinstance(e, OSError):
        return e.errno == errno.ENOSPC
    return isinstance(e, Exception) and "No space left on device" in str(e)


def write_bundle(
    out_dir: Path, kind: str, write_files: Callable[[Path], None], meta: dict[str, Any]
) -> dict[str, Any]:
    """Create a bundle atomically: `write_files(tmp)` fills it, then it is renamed to out_dir.

    An existing bundle at out_dir is replaced. Returns the manifest.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    recover_dir(out_dir)  # a replacement killed half-way: start from the previous bundle
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        write_files(tmp)
        files = {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        content = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
        now = datetime.now(timezone.utc)
        manifest = {
            "format": FORMAT,
            "kind": kind,
            "version": f"{kind}-{now:%Y%m%dT%H%M%S}-{content[:8]}",
            "created_at": now.isoformat(timespec="seconds"),
            **meta,
            "files": files,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        replace_dir(tmp, out_dir)
        return manifest
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if no_space(e):
            raise BundleError(
                f"{out_dir}: no space left on device while writing the bundle; "
                "the previous bundle there (if any) is unchanged"
            ) from None
        raise


def parse_manifest(bundle_dir: Path) -> dict[str, Any]:
    """A bundle's manifest, parsed but not verified; BundleError when there is none."""
    bundle_dir = Path(bundle_dir)
    path = bundle_dir / MANIFEST
    if not bundle_dir.is_dir() and not recover_dir(bundle_dir):
        raise BundleError(
            f"index bundle {bundle_dir} does not exist (build it with `semroute index build`)"
        )
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise BundleError(f"{bundle_dir}: no {MANIFEST}; not a bundle, or half-written") from None
    except (OSError, ValueError) as e:
        raise BundleError(f"{path}: unreadable manifest: {e}") from None
    if not isinstance(manifest, dict):
        raise BundleError(f"{path}: not a bundle manifest")
    return manifest


def check_file_names(path: Path, files: dict[Any, Any]) -> None:
    """A manifest may only name plain files inside its own directory."""
    for name in files:
        plain = isinstance(name, str) and name not in ("", ".", "..")
        if not plain or any(c in name for c in "/\\\x00"):
            raise BundleError(f"{path}: refused file name {name!r} (not a plain file name)")


def read_manifest(bundle_dir: Path, *, kind: str, encoder_id: str, dim: int) -> dict[str, Any]:
    """Load and verify a bundle's manifest and files; raise BundleError saying what is wrong."""
    bundle_dir = Path(bundle_dir)
    path = bundle_dir / MANIFEST
    manifest = parse_manifest(bundle_dir)
    if manifest.get("format") != FORMAT:
        raise BundleError(f"{path}: unsupported bundle format {manifest.get('format')!r}")
    if manifest.get("kind") != kind:
        raise BundleError(f"{bundle_dir}: a {manifest.get('kind')!r} bundle, expected {kind!r}")
    if manifest.get("encoder_id") != encoder_id or manifest.get("dim") != dim:
        raise BundleError(
            f"{bundle_dir}: built for encoder {manifest.get('encoder_id')!r} (dim "
            f"{manifest.get('dim')}), but the server runs {encoder_id!r} (dim {dim}); rebuild it"
        )
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise BundleError(f"{path}: lists no files")
    check_file_names(path, files)
    for name, digest in files.items():
        f = bundle_dir / name
        if not f.is_file():
            raise BundleError(f"{bundle_dir}: file {name} listed in the manifest is missing")
        if sha256_file(f) != digest:
            raise BundleError(f"{bundle_dir}: checksum mismatch on {name}; the bundle is corrupt")
    return manifest
