"""Route matching on given per-route scores: threshold, default route and near-ties."""

from __future__ import annotations

import numpy as np
import pytest

from semroute.router import Router
from semroute.types import Reason

LOW, HIGH = "faq_lookup", "reasoning"  # a low and a high quality bar in the default config


def _scores(router, **by_route: float) -> np.ndarray:  # type: ignore[no-untyped-def]
    names = router.state.policy.route_names
    out = np.zeros(len(names), dtype=np.float32)
    for name, score in by_route.items():
        out[names.index(name)] = score
    return out


def test_the_two_routes_have_different_bars(router) -> None:  # type: ignore[no-untyped-def]
    policy = router.state.policy
    assert policy.route_bar_key(LOW) < policy.route_bar_key(HIGH)


def test_a_near_tie_goes_to_the_route_with_the_higher_quality_bar(router) -> None:  # type: ignore[no-untyped-def]
    margin = router.state.config.policy.ambiguity_margin
    per_route = _scores(router, **{LOW: 0.80, HIGH: 0.80 - margin / 2})
    route, confidence, reason = Router._match(router.state, per_route)
    assert (route, reason) == (HIGH, Reason.SEMANTIC_ROUTE)
    assert confidence == pytest.approx(0.80 - margin / 2)


def test_outside_the_margin_the_best_score_wins(router) -> None:  # type: ignore[no-untyped-def]
    margin = router.state.config.policy.ambiguity_margin
    per_route = _scores(router, **{LOW: 0.80, HIGH: 0.80 - 2 * margin})
    assert Router._match(router.state, per_route)[0] == LOW


def test_below_the_threshold_the_default_route_applies(router) -> None:  # type: ignore[no-untyped-def]
    cfg = router.state.config
    per_route = _scores(router, **{LOW: cfg.policy.match_threshold - 0.05})
    route, _, reason = Router._match(router.state, per_route)
    assert (route, reason) == (cfg.policy.default_route, Reason.DEFAULT)
