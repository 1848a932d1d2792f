"""train -> bundle -> QualityPredictor round trip, checksum and encoder checks, calibration."""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from semroute.bundle import BundleError
from semroute.predictor import QualityPredictor
from semroute.quality.calibrate import (
    expensive_share,
    tolerance_for_share,
    traffic_calibration,
    update_manifest_calibration,
)
from semroute.quality.datasets import Dataset
from semroute.quality.embed import embed_prompts
from semroute.quality.train import fit, write_learned_bundle

TOPICS = ("algebra", "poetry", "chemistry", "history")


class FakeEncoder:
    """Deterministic bag-of-words embedding: enough structure for a kNN to find topics."""

    id = "test/fake-bow-32"
    dim = 32

    def __init__(self) -> None:
        self.calls = 0

    def encode(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        out = np.zeros((len(texts), self.dim), np.float32)
        for i, t in enumerate(texts):
            for w in t.lower().split():
                h = int(hashlib.md5(w.encode()).hexdigest(), 16)
                out[i, h % self.dim] += 1.0 if (h >> 8) % 2 else -1.0
            # a little per-text jitter so that neighbour similarities do not tie
            seed = int(hashlib.md5(t.encode()).hexdigest()[:8], 16)
            out[i] += 0.05 * np.random.default_rng(seed).standard_normal(self.dim)
        out /= np.linalg.norm(out, axis=1, keepdims=True) + 1e-9
        return out

    def count_tokens(self, text: str) -> int:
        return len(text.split()) + 2


def synthetic(n: int = 240, seed: int = 0) -> Dataset:
    """Three models; the cheap one fails on algebra and chemistry, the middle one on algebra."""
    rng = np.random.default_rng(seed)
    prompts, scores = [], []
    for i in range(n):
        topic = TOPICS[i % 4]
        prompts.append(f"question {i} about {topic} {topic} {rng.integers(1000)}")
        hard_cheap = topic in ("algebra", "chemistry")
        p = [0.2 if hard_cheap else 0.9, 0.3 if topic == "algebra" else 0.9, 0.95]
        scores.append([float(rng.random() < q) for q in p])
    return Dataset(
        prompts=prompts, models=["cheap", "mid", "big"], scores=np.array(scores, np.float32)
    )


PRICES = {"cheap": 0.2, "mid": 2.0, "big": 20.0}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Dataset, np.ndarray, object]:
    ds = synthetic()
    enc = FakeEncoder()
    emb, tokens = embed_prompts(enc, ds.prompts, cache_dir=None, progress=False)
    price_vec = np.array([PRICES[m] for m in ds.models])
    fitted = fit(ds, emb, tokens, price_vec, progress=False)
    out = tmp_path_factory.mktemp("bundles") / "learned"
    write_learned_bundle(out, fitted, ds, tokens, PRICES, encoder_id=enc.id, dim=enc.dim)
    return out, ds, emb, fitted


def test_round_trip_predicts_like_the_fitted_model(trained) -> None:  # type: ignore[no-untyped-def]
    bundle, ds, _, fitted = trained
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["kind"] == "learned" and manifest["models"] == ["cheap", "mid", "big"]
    assert manifest["encoder_id"] == FakeEncoder.id and manifest["dim"] == 32
    assert {"index.faiss", "scores.npy"} <= set(manifest["files"])
    pred = QualityPredictor.for_encoder(bundle, FakeEncoder())
    assert pred.models == ds.models and pred.version == manifest["version"]
    q = np.stack([FakeEncoder().encode([f"new question about {t} {t}"])[0] for t in TOPICS])
    texts = [f"new question about {t} {t}" for t in TOPICS]
    got = pred.predict(q, texts)
    assert got.shape == (4, 3) and got.dtype == np.float32
    assert np.all((got >= 0) & (got <= 1))
    np.testing.assert_allclose(got, fitted.predict(q, texts), atol=1e-5)
    # it learned the topics: the cheap model is predicted poor on algebra, good on poetry
    assert got[0, 0] < 0.5 < got[1, 0]
    # policy: at a small tolerance algebra goes to the big model and poetry to the cheap one
    picks = pred.choose(got, pred.tolerance_for_knob(0.9))
    assert picks[0] == 2 and picks[1] == 0


def test_knob_table_is_a_monotone_quality_target(trained) -> None:  # type: ignore[no-untyped-def]
    bundle, *_ = trained
    pred = QualityPredictor.for_encoder(bundle, FakeEncoder())
    rows = pred.manifest["calibration"]["knob_table"]
    assert rows[0]["knob"] == 0.0 and rows[-1]["knob"] == 1.0
    tols = [r["tolerance"] for r in rows]
    assert all(a >= b for a, b in itertools.pairwise(tols))  # more knob -> less tolerance
    assert (
        pred.tolerance_for_knob(0.0) >= pred.tolerance_for_knob(0.5) >= pred.tolerance_for_knob(1.0)
    )
    targets = [r["quality_target"] for r in rows]
    assert all(a <= b for a, b in itertools.pairwise(targets))


def test_checksum_mismatch_is_refused(trained, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bundle, *_ = trained
    import shutil

    copy = tmp_path / "b"
    shutil.copytree(bundle, copy)
    scores = np.load(copy / "scores.npy")
    scores[0, 0] = 1 - scores[0, 0]
    np.save(copy / "scores.npy", scores)
    with pytest.raises(BundleError, match="checksum"):
        QualityPredictor.for_encoder(copy, FakeEncoder())


def test_encoder_mismatch_is_refused(trained) -> None:  # type: ignore[no-untyped-def]
    bundle, *_ = trained
    with pytest.raises(BundleError, match="encoder"):
        QualityPredictor(bundle, encoder_id="other/encoder", dim=32)
    with pytest.raises(BundleError, match="dim"):
        QualityPredictor(bundle, encoder_id=FakeEncoder.id, dim=384)


def test_traffic_calibration_hits_the_share(trained, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bundle, ds, emb, _ = trained
    import shutil

    copy = tmp_path / "cal"
    shutil.copytree(bundle, copy)
    pred = QualityPredictor.for_encoder(copy, FakeEncoder())
    q = pred.predict(emb, ds.prompts)
    prices = np.array([PRICES[m] for m in pred.models])
    tol = tolerance_for_share(q, prices, 0.3)
    assert expensive_share(q, prices, tol) <= 0.3 + 1e-9
    rows = [dict(r) for r in pred.manifest["calibration"]["knob_table"]]
    traffic = traffic_calibration(q, prices, 0.5, rows, "sample")
    assert abs(traffic["achieved_share"] - 0.5) < 0.1
    update_manifest_calibration(copy, {"knob_table": rows, "traffic": traffic})
    again = QualityPredictor.for_encoder(copy, FakeEncoder())  # checksums still valid
    assert again.manifest["calibration"]["traffic"]["target_share"] == 0.5


def test_embedding_cache_is_keyed_by_encoder_and_prompts(tmp_path: Path) -> None:
    enc = FakeEncoder()
    prompts = ["a b c", "d e f", "g h"]
    e1, t1 = embed_prompts(enc, prompts, cache_dir=tmp_path, progress=False)
    calls = enc.calls
    e2, _ = embed_prompts(enc, prompts, cache_dir=tmp_path, progress=False)
    assert enc.calls == calls  # served from the cache
    np.testing.assert_array_equal(e1, e2)
    np.testing.assert_array_equal(t1, [5, 5, 4])
    embed_prompts(enc, [*prompts, "new"], cache_dir=tmp_path, progress=False)
    assert enc.calls > calls  # other prompts: embedded again
