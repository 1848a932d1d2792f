"""Route-accuracy metrics (semroute/route_eval.py) on hand-computed cases, and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from semroute.route_eval import LabelledPrompt, read_labelled, route_metrics

REPO = Path(__file__).resolve().parent.parent
PRICE = {"greeting": 1.0, "math": 10.0, "code_generation": 5.0}


def _items() -> list[LabelledPrompt]:
    return [
        LabelledPrompt("a", "math"),
        LabelledPrompt("b", "math", ("code_generation",)),
        LabelledPrompt("c", "math"),
        LabelledPrompt("d", "greeting"),
        LabelledPrompt("e", "code_generation"),
    ]


def test_accuracy_precision_recall_and_confusion_by_hand() -> None:
    predicted = ["math", "code_generation", "greeting", "greeting", "math"]
    m = route_metrics(_items(), predicted)
    assert m["accuracy"] == pytest.approx(2 / 5)
    # "b" accepts code_generation.
    assert m["accuracy_accepting_also"] == pytest.approx(3 / 5)
    assert m["labels"] == ["code_generation", "greeting", "math"]
    assert m["confusion"] == [[0, 0, 1], [0, 1, 0], [1, 1, 1]]
    math = m["per_route"]["math"]
    assert (math["support"], math["predicted"]) == (3, 2)
    assert math["precision"] == pytest.approx(0.5)
    assert math["recall"] == pytest.approx(1 / 3, abs=1e-4)  # reported to 4 places
    assert math["f1"] == pytest.approx(0.4)
    greet = m["per_route"]["greeting"]
    assert (greet["precision"], greet["recall"]) == (0.5, 1.0)


def test_price_weighted_error_counts_under_routing_double() -> None:
    predicted = ["math", "code_generation", "greeting", "greeting", "math"]
    pw = route_metrics(_items(), predicted, PRICE.__getitem__)["price_weighted"]
    # "c": math (10) sent to greeting (1): under-routed. "e": code (5) sent to math (10): over.
    # "b" is accepted, so it is no error whatever it costs.
    assert pw["under_routed"] == pytest.approx(1 / 5)
    assert pw["over_routed"] == pytest.approx(1 / 5)
    assert pw["weighted_error"] == pytest.approx((2 * 1 + 1 * 1) / 5)


def test_read_labelled_names_the_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text('{"prompt": "hi", "label": "greeting"}\n{"prompt": "x"}\n')
    with pytest.raises(ValueError, match=r"x\.jsonl:2"):
        read_labelled(path)


def test_eval_routes_cli_prints_metrics_and_writes_a_png(tmp_path: Path) -> None:
    data = tmp_path / "mine.jsonl"
    rows = [
        {"prompt": "what is 17 times 23?", "label": "math"},
        {"prompt": "write a haiku about the sea", "label": "creative_writing"},
        {"prompt": "implement quicksort in C", "label": "code_generation"},
        {"prompt": "translate 'where is the station' into German", "label": "translation"},
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out_json = tmp_path / "m.json"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "semroute",
            "eval-routes",
            "--data",
            str(data),
            "--json",
            str(out_json),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert "accuracy:" in run.stdout and "confusion" in run.stdout
    png = data.with_suffix(".confusion.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = json.loads(out_json.read_text())
    assert metrics["n"] == 4
    assert metrics["accuracy"] >= 0.75


def test_eval_routes_cli_refuses_labels_the_config_lacks(tmp_path: Path) -> None:
    data = tmp_path / "bad.jsonl"
    data.write_text('{"prompt": "x", "label": "no_such_route"}\n')
    run = subprocess.run(
        [sys.executable, "-m", "semroute", "eval-routes", "--data", str(data)],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    assert run.returncode == 2
    assert "no_such_route" in run.stderr
