"""A short, bounded slice of every fuzz harness (fuzz/): a few thousand mutated inputs each
must give only the surface's documented refusals (a crash fails the run), well within the
per-input time limit. The long runs are `python -m benchmarks.fuzz`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.fuzz import HARNESSES, run_harness

pytest.importorskip("atheris")

RUNS = 3000


@pytest.mark.parametrize("name", HARNESSES)
def test_fuzz_slice(name: str, tmp_path: Path) -> None:
    r = run_harness(name, RUNS, timeout_s=10, rss_mb=2048, max_len=4096, work=tmp_path)
    assert r["exit_code"] == 0, r["log_tail"]
    assert r["inputs"] == RUNS
    assert (r["crashes"], r["hangs"]) == (0, 0), r["artifacts"]


def test_a_harness_reports_an_escaping_exception_as_a_crash(tmp_path: Path) -> None:
    """The slice can fail: a harness whose code under test raises something else than
    its documented refusal exits non-zero and leaves a reproducer."""
    script = tmp_path / "broken.py"
    script.write_text(
        "import sys, atheris\n"
        "def one(data):\n"
        "    if len(data) > 3:\n"
        "        raise KeyError('escaped')\n"
        "atheris.Setup(sys.argv, one)\n"
        "atheris.Fuzz()\n"
    )
    proc = subprocess.run(
        [sys.executable, str(script), "-runs=100000", f"-artifact_prefix={tmp_path}/"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode != 0
    assert "KeyError" in proc.stderr + proc.stdout
    assert list(tmp_path.glob("crash-*"))
