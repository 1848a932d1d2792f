"""The `semroute` command line, as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from semroute.config import default_config_path

from .conftest import REPO


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "semroute", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )


def test_route_against_running_server(server: str) -> None:
    r = run("route", "--target", server, "what are your opening hours?")
    assert r.returncode == 0, r.stderr
    assert "model:" in r.stdout and "faq_lookup" in r.stdout
    r = run("route", "--target", server, "--json", "--tag", "region:eu", "translate this to French")
    d = json.loads(r.stdout)
    assert d["route"] == "translation" and d["model"]


def test_route_reports_errors_with_exit_code(server: str) -> None:
    r = run("route", "--target", server, "--allow", "gpt-9", "hello there")
    assert r.returncode == 1 and "INVALID_ARGUMENT" in r.stderr and "gpt-9" in r.stderr


def test_index_build_and_local_route(tmp_path: Path) -> None:
    cfg = yaml.safe_load(default_config_path().read_text())
    cfg["index_path"] = str(tmp_path / "idx")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    r = run("index", "build", "--config", str(tmp_path / "c.yaml"))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "idx" / "manifest.json").exists()
    r = run(
        "route",
        "--local",
        "--config",
        str(tmp_path / "c.yaml"),
        "--json",
        "design a sharded, replicated key-value store with exactly-once semantics",
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["model"] in {"claude-opus-4.5", "gpt-5.5"}


def test_bad_config_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("models: []\n")
    r = run("index", "build", "--config", str(tmp_path / "c.yaml"))
    assert r.returncode == 2 and "models" in r.stderr and "Traceback" not in r.stderr
