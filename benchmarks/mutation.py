"""Mutation testing of the core modules with mutmut (not part of CI).

    ./scripts/mutation.sh                     # installs mutmut, runs it, writes the report
    python -m benchmarks.mutation --report-only   # report on the last run (mutants/)

mutmut changes the modules in `[tool.mutmut]` (pyproject.toml) one small edit
at a time and runs the tests that reach each edit; a mutant no test fails on
"survives". Writes benchmarks/results/mutation-<ts>.json: counts per outcome,
the score, and every survivor with its diff and, from
benchmarks/mutation_explained.yaml, the reason it is left alive (an
equivalent or harmless change). Exits 1 when a survivor has no reason: either
write a test that kills it or explain it there.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
EXPLAINED = Path(__file__).resolve().parent / "mutation_explained.yaml"
RESULTS = Path(__file__).resolve().parent / "results"
# mutmut's outcomes that mean a test caught the mutant.
CAUGHT = {"killed", "timeout", "segfault"}


def _toml(text: str) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib

        return tomllib.loads(text)
    import toml  # mutmut's own dependency before Python 3.11

    return toml.loads(text)


def _mutmut(*args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "mutmut", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout


def outcomes() -> dict[str, str]:
    """Every mutant of the last run and its outcome (killed, survived, no tests, ...)."""
    out: dict[str, str] = {}
    for line in _mutmut("results", "--all", "true").splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if sep and name:
            out[name] = status.strip()
    return out


def diff(name: str) -> list[str]:
    """The mutant's changed lines (- original, + mutant)."""
    lines = _mutmut("show", name).splitlines()
    return [line for line in lines if line[:2] in ("- ", "+ ")]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--report-only", action="store_true", help="do not run mutmut first")
    p.add_argument("--max-children", type=int, default=os.cpu_count() or 1)
    args = p.parse_args(argv)
    settings = _toml((REPO / "pyproject.toml").read_text())["tool"]["mutmut"]
    t0 = time.perf_counter()
    if not args.report_only:
        subprocess.run(
            [sys.executable, "-m", "mutmut", "run", "--max-children", str(args.max_children)],
            cwd=REPO,
            check=True,
        )
    run_s = time.perf_counter() - t0
    status = outcomes()
    counts = Counter(status.values())
    caught = sum(n for s, n in counts.items() if s in CAUGHT)
    explained: dict[str, str] = yaml.safe_load(EXPLAINED.read_text()) or {}
    survivors = []
    for name, s in sorted(status.items()):
        if s in CAUGHT:
            continue
        survivors.append(
            {"mutant": name, "outcome": s, "diff": diff(name), "reason": explained.get(name)}
        )
    unexplained = [s["mutant"] for s in survivors if not s["reason"]]
    ts = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    report: dict[str, Any] = {
        "tool": "semroute-mutation",
        "schema": 1,
        "timestamp": ts,
        "host": {
            "cpus": os.cpu_count(),
            "loadavg_at_start": list(os.getloadavg()),
            "python": platform.python_version(),
        },
        "mutmut": _mutmut("--version").strip(),
        "modules": settings["only_mutate"],
        "tests": settings["pytest_add_cli_args_test_selection"],
        "run_s": None if args.report_only else round(run_s, 1),
        "mutants": len(status),
        "outcomes": dict(sorted(counts.items())),
        "caught": caught,
        "score": round(caught / len(status), 4) if status else None,
        "survivors": survivors,
        "unexplained": unexplained,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"mutation-{ts}.json"
    out.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    print(
        f"{len(status)} mutants, {caught} caught (score {report['score']}), "
        f"{len(survivors)} alive, {len(unexplained)} unexplained -> {out}"
    )
    for name in unexplained:
        print(f"  unexplained: {name}")
    return 1 if unexplained else 0


if __name__ == "__main__":
    sys.exit(main())
