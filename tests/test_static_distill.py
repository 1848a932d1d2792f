"""Distilling the static route head from the classifier (models/build_static_head.py).

The soft targets must come from a teacher that never saw what it is evaluated on: a fold's
teacher is checked to be that fold's, and the shipped head's teacher is the shipped classifier
as it serves (ONNX), cached by its id.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from semroute.encoder import Encoder, default_model_dir
from tests.conftest import REPO

sys.path.insert(0, str(REPO / "models"))

import build_static_head as bsh
from route_corpus import ROUTES, Example


def _example(text: str, route: str) -> Example:
    return Example(text=text, route=route, source="fixture", group=text)


def test_targets_mix_the_teacher_into_the_labels_with_its_weight() -> None:
    rows = [_example("sum 2 and 2", "math"), _example("hello", "greeting")]
    teacher = np.zeros(len(ROUTES))
    teacher[ROUTES.index("reasoning")] = 1.0
    y = bsh.targets(rows, {"sum 2 and 2": teacher}, 0.25)
    plain = bsh.targets(rows, None, 0.25)
    np.testing.assert_allclose(y.sum(1), 1.0)
    # The row with a teacher: 3/4 smoothed label, 1/4 teacher.
    np.testing.assert_allclose(y[0], 0.75 * plain[0] + 0.25 * teacher)
    assert y[0, ROUTES.index("reasoning")] > 0.25
    # The row without one keeps its smoothed label.
    np.testing.assert_allclose(y[1], plain[1])
    assert plain[1].argmax() == ROUTES.index("greeting")


def _teacher_file(path: Path, held: list[str], routes=ROUTES) -> Path:  # type: ignore[no-untyped-def]
    probs = np.full((2, len(routes)), 1.0 / len(routes), np.float32)
    np.savez_compressed(
        path,
        texts=np.array(["a", "b"], dtype=object),
        probs=probs,
        routes=np.array(routes),
        held_out=np.array(held),
    )
    return path


def test_fold_teacher_is_read_by_text(tmp_path: Path) -> None:
    soft = bsh.fold_teacher(_teacher_file(tmp_path / "f.npz", ["mbpp", "svamp"]), ("svamp", "mbpp"))
    assert set(soft) == {"a", "b"}
    assert soft["a"].shape == (len(ROUTES),)


def test_a_teacher_from_another_fold_is_refused(tmp_path: Path) -> None:
    """Its model trained on this fold's held-out sources: it would leak them."""
    path = _teacher_file(tmp_path / "f.npz", ["mbpp"])
    with pytest.raises(SystemExit, match="held out"):
        bsh.fold_teacher(path, ("svamp",))


def test_a_teacher_over_other_routes_is_refused(tmp_path: Path) -> None:
    path = _teacher_file(tmp_path / "f.npz", ["mbpp"], routes=tuple(reversed(ROUTES)))
    with pytest.raises(SystemExit, match="routes"):
        bsh.fold_teacher(path, ("mbpp",))


def test_model_teacher_is_the_shipped_classifier_and_is_cached(tmp_path: Path) -> None:
    texts = ["translate 'thank you' into German", "prove that sqrt(2) is irrational"]
    cache = tmp_path / "teacher.npz"
    soft = bsh.model_teacher(default_model_dir(), texts, 128, cache)
    enc = Encoder(default_model_dir(), max_tokens=128)
    assert enc.route_head is not None
    want = enc.route_head.probabilities(enc.encode(texts))
    for text, row in zip(texts, want, strict=True):
        np.testing.assert_allclose(soft[text], row, atol=1e-5)
    assert ROUTES[int(soft[texts[0]].argmax())] == "translation"
    # A second run reads the cache (same model id) instead of encoding again.
    with np.load(cache, allow_pickle=True) as z:
        assert enc.id in str(z["key"]) and len(z["texts"]) == 2
    poisoned = {t: np.eye(len(ROUTES))[0] for t in texts}
    np.savez_compressed(
        cache,
        key=np.load(cache, allow_pickle=True)["key"],
        texts=np.array(texts, dtype=object),
        probs=np.stack([poisoned[t] for t in texts]).astype(np.float32),
    )
    again = bsh.model_teacher(default_model_dir(), texts, 128, cache)
    np.testing.assert_allclose(again[texts[0]], poisoned[texts[0]])
