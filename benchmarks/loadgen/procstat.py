"""CPU time and RSS of a process tree, read from /proc (Linux).

The server may run several worker processes (``--workers N``), so its cost is
the sum over the whole tree. CPU of children that already exited and were
reaped is included through their parent's cutime/cstime, so a worker restart
does not make CPU vanish. Returns None where /proc is unavailable.
"""

from __future__ import annotations

import os
from pathlib import Path

_PROC = Path("/proc")
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    return raw[raw.rindex(")") + 2 :].split()


def tree_pids(root: int) -> list[int]:
    """``root`` and all its live descendants."""
    children: dict[int, list[int]] = {}
    try:
        entries = [int(p.name) for p in _PROC.iterdir() if p.name.isdigit()]
    except OSError:
        return []
    for pid in entries:
        f = _stat_fields(pid)
        if f is not None:
            children.setdefault(int(f[1]), []).append(pid)
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        if (_PROC / str(pid)).exists():
            out.append(pid)
            todo.extend(children.get(pid, []))
    return out


def tree_cpu_seconds(root: int) -> float | None:
    """User+system CPU of the tree, including reaped children, in seconds."""
    if not _PROC.is_dir():
        return None
    total, seen = 0, False
    for pid in tree_pids(root):
        f = _stat_fields(pid)
        if f is None:
            continue
        seen = True
        # After the ')': state ppid ... utime(14) stime(15) cutime(16) cstime(17) => indices 11..14.
        total += int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
    return total / _TICK if seen else None


def tree_rss_bytes(root: int) -> int | None:
    """Resident set size summed over the tree (shared pages count once per process)."""
    if not _PROC.is_dir():
        return None
    total, seen = 0, False
    for pid in tree_pids(root):
        try:
            resident = int((_PROC / str(pid) / "statm").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue
        seen = True
        total += resident * _PAGE
    return total if seen else None
