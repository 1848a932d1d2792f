"""The cascade's static tier: the shipped static route head beside the route classifier.

Real files throughout: the bundled static table and its route head, the bundled classifier.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from semroute.config import Config
from semroute.encoder.errors import EncoderError
from semroute.encoder.static import StaticEncoder, default_static_dir
from semroute.encoder.static_head import HEAD_FILE, HEAD_META
from semroute.router import Router, RoutingState
from semroute.types import Reason, RouteQuery, Tier
from tests.conftest import ENCODER_BOUND_PROMPT, REPO, SHARED_DATA, count_encodes

sys.path.insert(0, str(REPO / "models"))

# The static head is sure of this one (probability ~1) ...
CONFIDENT = "translate this paragraph into French"
# ... and not of this one (general 0.35 vs faq_lookup 0.33).
UNSURE = "what should I consider before switching careers at forty"


@pytest.fixture(scope="module")
def static(config: Config) -> StaticEncoder:
    return StaticEncoder(default_static_dir(), max_tokens=config.encoder.max_tokens)


def cascade(config: Config, encoder, static, index_dir: Path, **tier) -> Router:  # type: ignore[no-untyped-def]
    cfg = config.model_copy(
        update={"fast_tier": config.fast_tier.model_copy(update={"enabled": True, **tier})}
    )
    return Router(encoder, RoutingState.load(cfg, encoder, index_dir, static), static)


def top_probability(static: StaticEncoder, text: str) -> float:
    assert static.route_head is not None
    return float(static.route_head.probabilities(static.encode([text]))[0].max())


def test_shipped_head_loads_for_the_classifiers_routes(static, encoder) -> None:  # type: ignore[no-untyped-def]
    head = static.route_head
    assert head is not None and head.version.startswith("static-routes/")
    assert head.routes == encoder.route_head.routes
    assert 0.5 <= head.min_probability < 1.0
    meta = json.loads((default_static_dir() / HEAD_META).read_text())
    assert meta["static_model"]["id"] == static.id


def test_confident_prompt_is_answered_by_the_static_tier_without_the_encoder(
    config, encoder, static, index_dir, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    router = cascade(config, encoder, static, index_dir)
    assert top_probability(static, CONFIDENT) >= static.route_head.min_probability
    encoded = count_encodes(monkeypatch, router)
    d = router.route(RouteQuery(text=CONFIDENT))
    assert encoded == []
    assert d.tier == Tier.STATIC and d.reason == Reason.CLASSIFIER
    assert d.classifier_version == static.route_head.version and d.encoder_id == static.id
    assert d.route == "translation"
    # The classifier alone agrees.
    full = Router(encoder, RoutingState.load(config, encoder, index_dir))
    assert full.route(RouteQuery(text=CONFIDENT)).route == d.route


def test_unconfident_prompt_reaches_the_encoder(
    config, encoder, static, index_dir, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    router = cascade(config, encoder, static, index_dir)
    assert top_probability(static, UNSURE) < static.route_head.min_probability
    encoded = count_encodes(monkeypatch, router)
    d = router.route(RouteQuery(text=UNSURE))
    assert encoded == [UNSURE]
    assert d.tier == Tier.ENCODER and d.encoder_id == encoder.id
    assert d.classifier_version in ("", encoder.route_head.version)


def test_config_thresholds_override_the_heads(
    config, encoder, static, index_dir, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    router = cascade(config, encoder, static, index_dir, min_probability=1.0)
    encoded = count_encodes(monkeypatch, router)
    assert router.route(RouteQuery(text=CONFIDENT)).tier == Tier.ENCODER
    assert encoded == [CONFIDENT]


def test_fast_tier_off_leaves_the_head_unused(config, encoder, static, index_dir) -> None:  # type: ignore[no-untyped-def]
    # The default config runs the cascade (it holds the 2-point bar out of source and on
    # MT-Bench: models/README.md); `fast_tier.enabled: false` routes by the classifier alone.
    assert config.fast_tier.enabled
    on = Router(encoder, RoutingState.load(config, encoder, index_dir, static), static)
    assert on.state.static_classifier is not None
    assert on.route(RouteQuery(text=CONFIDENT)).tier == Tier.STATIC
    off_cfg = config.model_copy(
        update={"fast_tier": config.fast_tier.model_copy(update={"enabled": False})}
    )
    off = Router(encoder, RoutingState.load(off_cfg, encoder, index_dir, static), static)
    assert off.state.static_classifier is None
    assert off.route(RouteQuery(text=CONFIDENT)).tier == Tier.ENCODER


@pytest.fixture
def static_copy(tmp_path: Path) -> Path:
    """A copy of the bundled static directory whose head files the test may damage."""
    out = tmp_path / "static"
    shutil.copytree(default_static_dir(), out)
    return out


def _rewrite_head(d: Path, **arrays: np.ndarray) -> None:
    """Replace the head's arrays and record their sha256, as a foreign build would."""
    from semroute.bundle import sha256_file

    with np.load(d / HEAD_FILE) as z:
        data = {k: z[k] for k in z.files} | arrays
    np.savez(d / HEAD_FILE, **data)
    meta = json.loads((d / HEAD_META).read_text())
    meta["sha256"][HEAD_FILE] = sha256_file(d / HEAD_FILE)
    (d / HEAD_META).write_text(json.dumps(meta))


def test_corrupt_head_is_refused_at_load(static_copy: Path) -> None:
    raw = bytearray((static_copy / HEAD_FILE).read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (static_copy / HEAD_FILE).write_bytes(bytes(raw))
    with pytest.raises(EncoderError, match="does not match the sha256"):
        StaticEncoder(static_copy)


def test_head_for_another_static_table_is_refused(static_copy: Path) -> None:
    meta = json.loads((static_copy / HEAD_META).read_text())
    meta["static_model"]["static.npz_sha256"] = "0" * 64
    (static_copy / HEAD_META).write_text(json.dumps(meta))
    with pytest.raises(EncoderError, match="was trained on static model"):
        StaticEncoder(static_copy)


def _first_layer(d: Path) -> str:
    with np.load(d / HEAD_FILE) as z:
        return "hidden_weight" if "hidden_weight" in z.files else "weight"


def test_head_of_the_wrong_width_is_refused(static_copy: Path) -> None:
    layer = _first_layer(static_copy)
    with np.load(static_copy / HEAD_FILE) as z:
        rows = z[layer].shape[0]
    _rewrite_head(static_copy, **{layer: np.zeros((rows, 256), np.float32)})
    with pytest.raises(EncoderError, match="does not fit 384-d"):
        StaticEncoder(static_copy)


def test_hidden_layer_is_applied_as_serving_documents(static_copy: Path) -> None:
    """logits = W · relu(H · x + h) + b, then the calibrated softmax; a linear head is the
    same without the hidden layer."""
    rng = np.random.default_rng(7)
    arrays = {
        "hidden_weight": rng.normal(0, 0.3, (32, 384)).astype(np.float32),
        "hidden_bias": rng.normal(0, 0.1, 32).astype(np.float32),
        "weight": rng.normal(0, 0.3, (16, 32)).astype(np.float32),
        "bias": rng.normal(0, 0.1, 16).astype(np.float32),
    }
    _rewrite_head(static_copy, **arrays)
    static = StaticEncoder(static_copy)
    head = static.route_head
    assert head is not None and head.hidden_width == 32 and head.dim == 384
    x = static.encode(["write a haiku about autumn", "fix this KeyError in my dict lookup"])
    h = np.maximum(x @ arrays["hidden_weight"].T + arrays["hidden_bias"], 0.0)
    z = (h @ arrays["weight"].T + arrays["bias"]) / head.temperature
    want = np.exp(z - z.max(1, keepdims=True))
    want /= want.sum(1, keepdims=True)
    np.testing.assert_allclose(head.probabilities(x), want, rtol=1e-4, atol=1e-6)


def test_hidden_layer_that_does_not_fit_the_output_layer_is_refused(static_copy: Path) -> None:
    _rewrite_head(
        static_copy,
        hidden_weight=np.zeros((32, 384), np.float32),
        hidden_bias=np.zeros(32, np.float32),
        weight=np.zeros((16, 64), np.float32),
        bias=np.zeros(16, np.float32),
    )
    with pytest.raises(EncoderError, match="hidden layer"):
        StaticEncoder(static_copy)


def test_head_missing_its_weights_is_refused(static_copy: Path) -> None:
    (static_copy / HEAD_FILE).unlink()
    with pytest.raises(EncoderError, match="is missing"):
        StaticEncoder(static_copy)


def test_head_for_other_routes_is_refused_beside_the_classifier(
    static_copy: Path, config, encoder, index_dir
) -> None:  # type: ignore[no-untyped-def]
    meta = json.loads((static_copy / HEAD_META).read_text())
    meta["routes"] = list(reversed(meta["routes"]))
    (static_copy / HEAD_META).write_text(json.dumps(meta))
    static = StaticEncoder(static_copy)  # a consistent head file in itself...
    cfg = config.model_copy(
        update={"fast_tier": config.fast_tier.model_copy(update={"enabled": True})}
    )
    with pytest.raises(EncoderError, match="not the route classifier's"):
        RoutingState.load(cfg, encoder, index_dir, static)  # ...but not for this classifier


@pytest.mark.skipif(
    not (SHARED_DATA / "routellm" / "mt_bench").is_dir(), reason="needs ../shared/data"
)
def test_shipped_head_on_a_source_it_never_trained_on(static) -> None:  # type: ignore[no-untyped-def]
    """MT-Bench is never trained on (route_corpus.EVAL_ONLY_SOURCES): 80 real chat prompts.

    Measured for the shipped head (static-routes/20261201f): 54/80 (0.675) accepted alone; at
    its default thresholds (0.80 / 0.60) it answers 37 (46 %), 30 of them acceptably (0.81; the
    classifier gets 0.7875 on all 80). Floors sit ~1.5 binomial standard errors below (SE 0.052
    on 80 and on the answered share, 0.064 on 37), so a rebuild that moves a few borderline
    prompts passes and a head that answers what it gets wrong, or stops answering, does not.
    (The 20261201b head answered 49 at 0.80; a better classifier raised the bar its thresholds
    are chosen against, models/README.)
    """
    from route_corpus import load_mt_bench

    items = load_mt_bench(SHARED_DATA / "routellm")
    head = static.route_head
    probs = head.probabilities(static.encode([e.text for e in items]))
    pred = [head.routes[i] for i in probs.argmax(1)]
    ok = np.array([e.accepts(p) for e, p in zip(items, pred, strict=True)])
    top = np.sort(probs, 1)
    answered = (top[:, -1] >= head.min_probability) & (top[:, -1] - top[:, -2] >= head.min_margin)
    assert len(items) == 80
    assert ok.mean() >= 0.59
    assert answered.mean() >= 0.38
    assert ok[answered].mean() >= 0.71


def test_the_encoder_bound_prompt_reaches_the_encoder(served_router) -> None:  # type: ignore[no-untyped-def]
    """Several server tests need a prompt that the shipped static head leaves to the encoder
    (conftest.ENCODER_BOUND_PROMPT). A rebuilt head may become sure of it: then this test, not
    theirs, says so, and the constant needs a prompt the new head is unsure of."""
    d = served_router.route(RouteQuery(text=ENCODER_BOUND_PROMPT))
    assert d.tier == Tier.ENCODER, (d.tier, d.route, d.classifier_version)
