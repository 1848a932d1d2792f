"""The eval gate: `semroute eval --gate` exits 0 on the recorded baseline policy and non-zero
on a worse one. Runs the real CLI with the bundled encoder on the small fixed MMLU set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from semroute.quality.cli import main
from semroute.quality.gate import check, flatten

REPO = Path(__file__).resolve().parent.parent
FIXTURE = REPO / "tests" / "data" / "quality_mmlu_small.csv"
GATE = REPO / "examples" / "gate.yaml"
ARGS = [
    "--data", str(FIXTURE),
    "--models", "mixtral,gpt-4",
    "--price", "mixtral=0.24",
    "--price", "gpt-4=24.7",
    "--folds", "5",
    "--inner-folds", "3",  # the quick search the gate's figures were recorded with
    "--no-text",
    "--no-progress",
]  # fmt: skip


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("quality-cache")


def test_gate_passes_the_baseline_policy(cache_dir: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "eval.json"
    png = tmp_path / "eval.png"
    rc = main(["eval", *ARGS, "--cache-dir", str(cache_dir), "--gate", str(GATE),
               "--out-json", str(out), "--out-png", str(png)])  # fmt: skip
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "gate passed" in text
    summary = json.loads(out.read_text())
    assert png.stat().st_size > 10_000
    r = summary["two_model"]["routers"]
    # the metric code's sanity check: random routing is near APGR 0.5, CPT(50%) 50%
    assert abs(r["random"]["apgr"] - 0.5) < 0.06 and r["random"]["seeds"] >= 10
    assert abs(r["random"]["cpt50"] - 0.5) < 0.1
    assert r["oracle"]["apgr"] > r["router"]["apgr"] > r["random"]["apgr"]
    assert all(f["test"] > 0 for f in summary["folds"]) and len(summary["folds"]) == 5


def test_gate_fails_a_worse_policy(cache_dir: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    rc = main(["eval", *ARGS, "--cache-dir", str(cache_dir), "--router", "random",
               "--gate", str(GATE)])  # fmt: skip
    text = capsys.readouterr().out
    assert rc == 1, text
    assert "gate FAILED" in text


def test_gate_rules() -> None:
    summary = {
        "two_model": {
            "routers": {
                name: {"apgr": a, "cpt50": c, "cpt80": 0.6, "operating_points": []}
                for name, a, c in [
                    ("router", 0.70, 0.25),
                    ("knn", 0.68, 0.28),
                    ("random", 0.50, 0.50),
                    ("oracle", 1.2, 0.08),
                ]
            }
        },
        "n_model": {"routers": {"router": {"area": 0.8, "quality_share_at_cost": {"0.5": 0.95}}}},
    }
    m = flatten(summary)
    assert m["router.apgr_minus_random"] == pytest.approx(0.2)
    assert m["router.quality_share@0.5"] == 0.95
    gate = {
        "require": {"router.apgr": {"min": 0.65}, "router.cpt50": {"max": 0.3}},
        "baseline": {"router.apgr": 0.72, "router.cpt50": 0.20},
        "max_regression": {"router.apgr": 0.03, "router.cpt50": 0.02},
    }
    results = {(c.metric, c.kind): c.ok for c in check(summary, gate)}
    assert results[("router.apgr", "min")] and results[("router.cpt50", "max")]
    assert results[("router.apgr", "baseline")]  # 0.70 >= 0.72 - 0.03
    assert not results[("router.cpt50", "baseline")]  # 0.25 > 0.20 + 0.02
    with pytest.raises(KeyError, match="unknown metric"):
        check(summary, {"require": {"router.nope": {"min": 0}}})


def test_train_and_calibrate_cli_end_to_end(cache_dir: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from semroute.encoder import Encoder, default_model_dir
    from semroute.predictor import QualityPredictor

    bundle = tmp_path / "learned"
    train_args = [a for a in ARGS if a not in ("--folds", "5")]
    assert main(["train", *train_args, "--cache-dir", str(cache_dir), "--out", str(bundle)]) == 0
    sample = tmp_path / "sample.txt"
    sample.write_text("What is a neural network?\nWho wrote the Federalist Papers?\n" * 10)
    cal_args = ["--bundle", str(bundle), "--prompts", str(sample), "--strong-share", "0.5"]
    rc = main(["calibrate", *cal_args, "--cache-dir", str(cache_dir), "--no-progress"])
    assert rc == 0
    assert "calibrated" in capsys.readouterr().out
    enc = Encoder(default_model_dir(), device="cpu")
    pred = QualityPredictor.for_encoder(bundle, enc)
    cal = pred.manifest["calibration"]
    assert cal["traffic"]["target_share"] == 0.5 and len(cal["knob_table"]) == 21
    q = pred.predict(enc.encode(["Prove that the square root of 2 is irrational."]))
    assert q.shape == (1, 2) and pred.models[1] == "gpt-4-1106-preview"
    aligned = pred.align(["gpt-4", "mixtral", "claude"])
    assert aligned.tolist() == [1, 0, -1]
    assert 0.0 <= pred.tolerance_for_knob(0.5) <= 1.0
