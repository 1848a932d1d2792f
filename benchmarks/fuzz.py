"""Fuzzing benchmark: every atheris harness (fuzz/) for a fixed number of inputs.

    python -m benchmarks.fuzz                       # 1,000,000 inputs each (~15 min)
    python -m benchmarks.fuzz --runs 20000 --no-save

Each harness runs in its own process under libFuzzer with a per-input time
limit (`--timeout`: an input running longer is a hang) and a memory limit;
the report gives, per harness, the inputs run, crashes and hangs (with the
saved reproducer files), peak RSS, coverage reached and wall time. libFuzzer
stops a harness at its first crash or hang, so a non-zero count means "found
one, see the artifact", and its executed count is short of `--runs`.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.loadgen.cli import host_info

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "benchmarks" / "results"
HARNESSES = (
    "route_request",
    "openai_body",
    "config_yaml",
    "bundle_manifest",
    "bundle_archive",
)
STAT = re.compile(r"^stat::(\w+):\s+(\d+)", re.M)
COV = re.compile(r"cov: (\d+) ft: (\d+)")


def run_harness(
    name: str, runs: int, timeout_s: int, rss_mb: int, max_len: int, work: Path
) -> dict[str, Any]:
    artifacts = work / name
    artifacts.mkdir(parents=True)
    cmd = [
        sys.executable, "-m", f"fuzz.{name}", f"-runs={runs}", f"-timeout={timeout_s}",
        f"-rss_limit_mb={rss_mb}", f"-max_len={max_len}", "-print_final_stats=1",
        f"-artifact_prefix={artifacts}/",
    ]  # fmt: skip
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
    wall = time.monotonic() - t0
    out = proc.stdout + proc.stderr
    stats = {k: int(v) for k, v in STAT.findall(out)}
    cov = COV.findall(out)
    found = sorted(p.name for p in artifacts.iterdir())
    return {
        "harness": f"fuzz/{name}.py",
        "exit_code": proc.returncode,
        "inputs": stats.get("number_of_executed_units", 0),
        "crashes": sum(n.startswith(("crash-", "oom-", "leak-")) for n in found),
        "hangs": sum(n.startswith(("timeout-", "slow-unit-")) for n in found),
        "artifacts": [str(artifacts / n) for n in found],
        "peak_rss_mb": stats.get("peak_rss_mb"),
        "coverage": {"edges": int(cov[-1][0]), "features": int(cov[-1][1])} if cov else None,
        "wall_s": round(wall, 1),
        "inputs_per_s": round(stats.get("number_of_executed_units", 0) / wall, 1),
        "log_tail": out[-1500:] if proc.returncode else "",
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.fuzz", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--runs", type=int, default=1_000_000, help="inputs per harness")
    ap.add_argument("--harness", action="append", choices=HARNESSES, help="default: all")
    ap.add_argument("--timeout", type=int, default=10, help="seconds per input before a hang")
    ap.add_argument("--rss-limit-mb", type=int, default=2048)
    ap.add_argument("--max-len", type=int, default=4096, help="largest input, bytes")
    ap.add_argument("--out-dir", default=str(RESULTS_DIR))
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args(argv)
    if not 1 <= args.runs <= 50_000_000:
        ap.error("bounded runs only: 1 to 50,000,000 inputs per harness")
    work = Path(tempfile.mkdtemp(prefix="semroute-fuzz-"))
    results = []
    for name in args.harness or HARNESSES:
        r = run_harness(name, args.runs, args.timeout, args.rss_limit_mb, args.max_len, work)
        print(f"{name:<16} inputs {r['inputs']:>9}  crashes {r['crashes']}  hangs {r['hangs']}  "
              f"peak RSS {r['peak_rss_mb']} MB  {r['wall_s']} s", flush=True)  # fmt: skip
        results.append(r)
    result = {
        "benchmark": "fuzz",
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": host_info(),
        "config": vars(args),
        "harnesses": results,
        "total_inputs": sum(r["inputs"] for r in results),
        "crashes": sum(r["crashes"] for r in results),
        "hangs": sum(r["hangs"] for r in results),
    }
    if not args.no_save:
        out = Path(args.out_dir) / f"fuzz-{time.strftime('%Y%m%dT%H%M%S')}.json"
        out.write_text(json.dumps(result, indent=1) + "\n")
        print(f"saved {out}")
    ok = all(r["exit_code"] == 0 and r["inputs"] >= args.runs for r in results)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
