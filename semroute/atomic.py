"""Crash-safe writes: a reader, or a restart after kill -9 or a power loss, sees the old
content or the new, never a mix, a truncated file or nothing.

Everything is written under a temporary name in the destination's directory,
flushed to disk (fsync), then renamed into place (one atomic step), and the
directory entry itself is flushed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

OLD_MARK = ".old-"


def fsync_path(path: Path) -> None:
    """Flush a file's (or a directory's entries') data to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(directory: Path) -> None:
    """Flush every file directly in `directory`, then the directory itself."""
    for p in directory.iterdir():
        if p.is_file():
            fsync_path(p)
    fsync_path(directory)


def write_bytes(path: Path, data: bytes) -> None:
    """Replace `path` with `data` atomically."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_path(path.parent)


def replace_dir(tmp: Path, out: Path) -> None:
    """Move the complete directory `tmp` to `out`, replacing any directory there.

    A directory cannot be renamed over a non-empty one, so the old one is first
    moved aside under a name `recover_dir` knows: a crash between the two
    renames leaves it there, and the next reader of `out` puts it back.
    """
    fsync_tree(tmp)
    if out.exists():
        old = out.with_name(f".{out.name}{OLD_MARK}{os.getpid()}")
        out.rename(old)
        tmp.rename(out)
        fsync_path(out.parent)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(out)
        fsync_path(out.parent)


def recover_dir(out: Path) -> bool:
    """When `out` is missing because a `replace_dir` was interrupted, put its previous
    directory back; True when one was."""
    out = Path(out)
    if out.exists() or not out.parent.is_dir():
        return False
    olds = sorted(
        (p for p in out.parent.glob(f".{out.name}{OLD_MARK}*") if p.is_dir()),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for old in olds:
        with contextlib.suppress(OSError):  # another process may have recovered it first
            old.rename(out)
            fsync_path(out.parent)
            return True
    return out.exists()
