"""Fast-tier plumbing: confident static decisions answer, the rest escalate to the encoder.

The static encoder here is a stand-in (the full encoder under another id), so
these tests pin the tier logic and bundle handling, not the static model's quality.
The full encoder is the plain one the bundled static model was trained to match, with
the utterance matcher deciding (the route classifier is another encoder's head).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from semroute.bundle import BundleError
from semroute.config import Config
from semroute.route_index import build_route_index, is_current, load_route_index
from semroute.router import Router, RoutingState
from semroute.types import RouteQuery, Tier


class StandIn:
    """Any TextEncoder works as the fast tier's; this one counts its calls."""

    def __init__(self, encoder) -> None:  # type: ignore[no-untyped-def]
        self._encoder = encoder
        self.id = "stand-in-static"
        self.dim = encoder.dim
        self.calls = 0

    def encode(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        return self._encoder.encode(texts)


@pytest.fixture(scope="module")
def encoder(config: Config):  # type: ignore[no-untyped-def]
    from semroute.encoder import Encoder, plain_model_dir

    return Encoder(plain_model_dir(), max_tokens=config.encoder.max_tokens)


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory: pytest.TempPathFactory, config: Config, encoder) -> Path:  # type: ignore[no-untyped-def]
    out = tmp_path_factory.mktemp("plain-index") / "default"
    build_route_index(config, encoder, out)
    return out


@pytest.fixture(scope="module")
def static(encoder) -> StandIn:  # type: ignore[no-untyped-def]
    return StandIn(encoder)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory, config: Config, encoder, static) -> Path:  # type: ignore[no-untyped-def]
    out = tmp_path_factory.mktemp("fast") / "idx"
    build_route_index(config, encoder, out, static)
    return out


def fast_router(config: Config, encoder, static, bundle: Path, **tier) -> Router:  # type: ignore[no-untyped-def]
    cfg = config.model_copy(
        update={"fast_tier": config.fast_tier.model_copy(update={"enabled": True, **tier})}
    )
    return Router(encoder, RoutingState.load(cfg, encoder, bundle, static), static)


def test_confident_requests_are_answered_by_the_static_tier(
    config, encoder, static, bundle
) -> None:  # type: ignore[no-untyped-def]
    router = fast_router(config, encoder, static, bundle, min_score=0.5, min_margin=0.1)
    d = router.route(RouteQuery(text="translate this paragraph into French"))
    assert d.tier == Tier.STATIC and d.route == "translation" and d.encoder_id == "stand-in-static"
    assert d.timing.encode_us > 0


def test_unconfident_requests_escalate_to_the_encoder(config, encoder, static, bundle) -> None:  # type: ignore[no-untyped-def]
    router = fast_router(config, encoder, static, bundle, min_score=0.5, min_margin=2.0)
    before = static.calls
    d = router.route(RouteQuery(text="translate this paragraph into French"))
    assert static.calls == before + 1  # it was asked...
    assert d.tier == Tier.ENCODER and d.encoder_id == encoder.id  # ...and escalated
    assert d.route == "translation"


def test_disabled_tier_and_rules_skip_the_static_encoder(config, encoder, static, bundle) -> None:  # type: ignore[no-untyped-def]
    router = fast_router(config, encoder, static, bundle, enabled=False)
    before = static.calls
    assert router.route(RouteQuery(text="summarize this report")).tier == Tier.ENCODER
    assert router.route(RouteQuery(text="hi!")).tier == Tier.RULE
    assert static.calls == before


def test_bundle_without_static_index_is_refused_for_a_fast_tier(
    config, encoder, static, index_dir
) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(BundleError, match="fast tier"):
        load_route_index(index_dir, config, encoder, static)
    assert not is_current(index_dir, config, encoder.id, static.id)
    assert is_current(index_dir, config, encoder.id)


def test_bundled_static_encoder_searches_the_encoders_own_index(config, encoder, index_dir) -> None:  # type: ignore[no-untyped-def]
    from semroute.encoder.static import StaticEncoder, default_static_dir
    from semroute.router import shares_space

    static = StaticEncoder(default_static_dir(), max_tokens=config.encoder.max_tokens)
    assert shares_space(static, encoder)
    cfg = config.model_copy(
        update={"fast_tier": config.fast_tier.model_copy(update={"enabled": True})}
    )
    # No static index in the bundle is needed: the encoder's own index is searched.
    router = Router(encoder, RoutingState.load(cfg, encoder, index_dir, static), static)
    d = router.route(RouteQuery(text="translate this paragraph into French"))
    assert d.tier == Tier.STATIC and d.route == "translation" and d.encoder_id == static.id
    full = Router(encoder, RoutingState.load(config, encoder, index_dir))
    assert full.route(RouteQuery(text="translate this paragraph into French")).route == d.route
