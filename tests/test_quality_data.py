"""Loaders for labelled routing data: CSV (boolean columns beside others), JSONL, MT-Bench
layout, exclusion lists, prices and grouped folds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from semroute.quality.datasets import (
    grouped_folds,
    load_dataset,
    load_exclusions,
    match_names,
    parse_prices,
    prices_from_config,
    resolve_prices,
)

CSV = """id,prompt,note,mistralai/Mixtral-8x7B-Instruct-v0.1,gpt-4-1106-preview,judge
1,"What is 2+2?
A. 3
B. 4
Answer:",easy,True,True,7
2,Capital of France?,geo,False,True,9
3,"Prove it, please",hard,FALSE,false,2
4,Capital of France?,dup,true,True,10
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_boolean_csv_with_extra_columns(tmp_path: Path) -> None:
    path = write(tmp_path, "mmlu_x.csv", CSV)
    ds = load_dataset(path, ["mixtral", "gpt-4"])  # unique substrings pick the columns
    assert ds.models == ["mistralai/Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview"]
    assert ds.prompts[0].startswith("What is 2+2?\nA. 3")  # multi-line prompt kept whole
    np.testing.assert_array_equal(ds.scores, [[1, 1], [0, 1], [0, 0], [1, 1]])
    assert ds.scale == "unit"
    assert ds.sources == ["mmlu_x"] * 4
    # without --models: every boolean/numeric column (id and judge too), not the text ones
    all_cols = load_dataset(path, scale="judge10")
    assert "note" not in all_cols.models and "prompt" not in all_cols.models


def test_numeric_judge_scores_are_normalised(tmp_path: Path) -> None:
    path = write(tmp_path, "j.csv", CSV)
    ds = load_dataset(path, ["judge"])
    assert ds.scale == "judge10"
    np.testing.assert_allclose(ds.scores[:, 0], [6 / 9, 8 / 9, 1 / 9, 1.0], rtol=1e-6)


def test_model_names_must_resolve_uniquely() -> None:
    cols = ["mistralai/Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview", "gpt-4o"]
    assert match_names(["gpt-4-1106-preview"], cols) == ["gpt-4-1106-preview"]
    with pytest.raises(ValueError, match="ambiguous"):
        match_names(["gpt-4"], cols)
    with pytest.raises(ValueError, match="no column"):
        match_names(["llama"], cols)


def test_jsonl_scores_and_exclusions(tmp_path: Path) -> None:
    rows = [
        {"prompt": "a", "scores": {"small": 0, "big": 1}},
        {"prompt": "b", "scores": {"small": 1, "big": 1}},
        {"prompt": "c ", "scores": {"small": 0, "big": 0}},
        {"prompt": "d", "scores": {"small": 1}},  # missing score: dropped
    ]
    path = write(tmp_path, "d.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    excl = write(
        tmp_path,
        "contaminated.jsonl",
        json.dumps({"train_prompt": "zzz", "eval_prompt": "c"}) + "\n",
    )
    ds = load_dataset(path, exclude=[excl])
    assert ds.models == ["small", "big"]
    assert ds.prompts == ["a", "b"]  # "c " excluded (whitespace-insensitive), "d" dropped
    np.testing.assert_array_equal(ds.scores, [[0, 1], [1, 1]])
    assert load_exclusions(write(tmp_path, "plain.txt", "x\ny\n")) == ["x", "y"]


def test_mt_bench_layout(tmp_path: Path) -> None:
    d = tmp_path / "mt"
    d.mkdir()
    qs = [
        {"question_id": 1, "category": "math", "turns": ["q1 t1", "q1 t2"]},
        {"question_id": 2, "category": "writing", "turns": ["q2 t1", "q2 t2"]},
    ]
    js = [
        {"question_id": 1, "model": "A", "score": 10, "turn": 1},
        {"question_id": 1, "model": "A", "score": 8, "turn": 2},
        {"question_id": 1, "model": "B", "score": 1, "turn": 1},
        {"question_id": 1, "model": "B", "score": 3, "turn": 2},
        {"question_id": 2, "model": "A", "score": 7, "turn": 1},
        {"question_id": 2, "model": "A", "score": 7, "turn": 2},
        {"question_id": 2, "model": "B", "score": 7, "turn": 1},
        {"question_id": 2, "model": "B", "score": -1, "turn": 2},  # failed judgement: ignored
    ]
    (d / "question.jsonl").write_text("\n".join(json.dumps(q) for q in qs))
    (d / "judgements.jsonl").write_text("\n".join(json.dumps(j) for j in js))
    ds = load_dataset(d)
    assert ds.prompts == ["q1 t1", "q2 t1"]  # routed on turn 1
    assert ds.sources == ["math", "writing"]
    np.testing.assert_allclose(ds.scores, [[8 / 9, 1 / 9], [6 / 9, 6 / 9]], rtol=1e-6)
    turn1 = load_dataset(d, mt_bench_turns="1")
    np.testing.assert_allclose(turn1.scores[0], [1.0, 0.0])


def test_prices(tmp_path: Path) -> None:
    assert parse_prices(["gpt-4=24.7", "org/model=v1=0.24"]) == {
        "gpt-4": 24.7,
        "org/model=v1": 0.24,
    }
    with pytest.raises(ValueError):
        parse_prices(["gpt-4"])
    cfg = write(
        tmp_path,
        "c.yaml",
        "models:\n"
        "  - {name: big, provider: p, input_price_per_mtok: 10, output_price_per_mtok: 30}\n"
        "  - {name: small, provider: p, input_price_per_mtok: 0.5, output_price_per_mtok: 1}\n",
    )
    assert prices_from_config(cfg) == {"big": 10.0, "small": 0.5}
    assert resolve_prices({"mixtral": 0.24}, ["mistralai/Mixtral-8x7B"]) == {
        "mistralai/Mixtral-8x7B": 0.24
    }


def test_grouped_folds_keep_duplicates_together() -> None:
    prompts = [f"p{i % 37}" for i in range(100)]
    folds = grouped_folds(prompts, 5, seed=3)
    assert sorted(np.concatenate(folds).tolist()) == list(range(100))
    fold_of = {}
    for f, idx in enumerate(folds):
        for i in idx:
            assert fold_of.setdefault(prompts[i], f) == f
    assert all(len(f) > 0 for f in folds)
