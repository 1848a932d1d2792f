"""The policy and its compiled core, on the default config and hand-made arrays."""

from __future__ import annotations

import numpy as np
import pytest

from semroute import _policy
from semroute.config import Config
from semroute.policy import Policy
from semroute.types import Preset, RouteQuery, RoutingError


@pytest.fixture
def policy(config: Config) -> Policy:
    # Per test (it is cheap): mutation testing then credits every test with __init__.
    return Policy(config)


def q(**kw) -> RouteQuery:  # type: ignore[no-untyped-def]
    return RouteQuery(text="x", **kw)


def test_route_scores_average_best_neighbours_and_skip_empty_slots() -> None:
    ids = np.array([0, 1, 0, 0, -1, 2], dtype=np.int32)
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.99, 0.1], dtype=np.float32)
    out = _policy.route_scores(ids, scores, 4, 1)
    assert out[:3].tolist() == pytest.approx([0.9, 0.8, 0.1])
    assert out[3] == -np.inf
    # Best two per route; a route with one neighbour is filled with the weakest (0.1).
    out = _policy.route_scores(ids, scores, 4, 2)
    assert out[:3].tolist() == pytest.approx([0.8, 0.45, 0.1])


def test_quality_bar_is_piecewise_linear_in_the_knob() -> None:
    assert _policy.quality_bar(0.0, 0.5, 0.8, 0.95) == pytest.approx(0.5)
    assert _policy.quality_bar(0.25, 0.5, 0.8, 0.95) == pytest.approx(0.65)
    assert _policy.quality_bar(0.5, 0.5, 0.8, 0.95) == pytest.approx(0.8)
    assert _policy.quality_bar(1.0, 0.5, 0.8, 0.95) == pytest.approx(0.95)
    assert _policy.quality_bar(7.0, 0.5, 0.8, 0.95) == pytest.approx(0.95)  # clamped
    # No eligible model reaches the target: the bar stays at the target.
    assert _policy.quality_bar(1.0, 0.5, 0.8, 0.7) == pytest.approx(0.8)


def test_choose_cheapest_clearing_and_fallback_order() -> None:
    quality = np.array([0.6, 0.8, 0.9, 0.95, 0.85], dtype=np.float32)
    cost = np.array([1.0, 2.0, 3.0, 10.0, 2.5])
    eligible = np.array([1, 1, 1, 1, 1], dtype=np.uint8)
    provider = np.array([0, 1, 1, 2, 1], dtype=np.int32)
    chosen, fallbacks, meets, cleared = _policy.choose(quality, cost, eligible, provider, 0.8)
    assert chosen == 1 and cleared
    assert meets.tolist() == [0, 1, 1, 1, 1]
    # Clearing models first, other providers (2) before the chosen one's (1), cheapest first;
    # then those below the bar.
    assert fallbacks.tolist() == [3, 4, 2, 0]


def test_below_bar_fallbacks_go_best_first_whatever_the_provider() -> None:
    quality = np.array([0.9, 0.5, 0.7], dtype=np.float32)
    cost = np.array([5.0, 1.0, 2.0])
    provider = np.array([0, 1, 0], dtype=np.int32)
    chosen, fallbacks, _, _ = _policy.choose(quality, cost, np.ones(3, np.uint8), provider, 0.8)
    assert chosen == 0 and fallbacks.tolist() == [2, 1]


def test_choose_takes_best_when_nothing_clears() -> None:
    quality = np.array([0.6, 0.7], dtype=np.float32)
    chosen, fallbacks, _, cleared = _policy.choose(
        quality, np.array([1.0, 2.0]), np.array([1, 1], np.uint8), np.array([0, 1], np.int32), 0.9
    )
    assert (chosen, cleared, fallbacks.tolist()) == (1, False, [0])


def test_choose_with_nothing_eligible_and_forced_model() -> None:
    quality = np.array([0.6, 0.7, 0.9], dtype=np.float32)
    cost = np.array([1.0, 2.0, 5.0])
    provider = np.array([0, 1, 2], dtype=np.int32)
    chosen, fallbacks, _, _ = _policy.choose(quality, cost, np.zeros(3, np.uint8), provider, 0.5)
    assert chosen == -1 and fallbacks.size == 0
    chosen, fallbacks, _, cleared = _policy.choose(
        quality, cost, np.ones(3, np.uint8), provider, 0.5, 2
    )
    assert chosen == 2 and cleared and fallbacks.tolist() == [0, 1]


def test_cheap_route_gets_cheap_model_and_hard_route_frontier(policy: Policy) -> None:
    faq = policy.choose(q(), "faq_lookup", 20)
    hard = policy.choose(q(), "reasoning", 20)
    price = {c.model: c.estimated_cost_usd for c in hard.candidates}
    assert price[faq.model] == min(price.values())
    assert hard.model in {"claude-opus-4.5", "gpt-5.5"}
    assert all(c.meets_bar for c in hard.candidates if c.model == hard.model)


def test_knob_and_presets_move_the_choice(policy: Policy) -> None:
    cheap = policy.choose(q(quality_preference=0.0), "code_generation", 50)
    best = policy.choose(q(quality_preference=1.0), "code_generation", 50)
    assert cheap.quality_bar < best.quality_bar
    cost = {c.model: c.estimated_cost_usd for c in best.candidates}
    assert cost[cheap.model] < cost[best.model]
    assert policy.knob(q(preset=Preset.COST)) < policy.knob(q(preset=Preset.BALANCED))
    assert policy.knob(q(preset=Preset.QUALITY)) > policy.knob(q())
    assert policy.knob(q(preset=Preset.COST, quality_preference=0.7)) == 0.7


def test_tags_allowed_excluded_and_max_cost(policy: Policy, config: Config) -> None:
    eu = policy.choose(q(required_tags=frozenset({"region:eu", "hipaa"})), "faq_lookup", 20)
    assert {"region:eu", "hipaa"} <= config.model(eu.model).tags
    assert all({"region:eu", "hipaa"} <= config.model(m).tags for m in eu.fallbacks)
    allowed = policy.choose(
        q(allowed_models=frozenset({"gpt-5.5", "claude-haiku-4.5"})), "greeting", 20
    )
    assert allowed.model == "claude-haiku-4.5" and allowed.fallbacks == ("gpt-5.5",)
    excluded = policy.choose(q(excluded_models=frozenset({"mistral-small-3.2"})), "greeting", 20)
    assert excluded.model != "mistral-small-3.2"
    why = {c.model: c.ineligible_reason for c in excluded.candidates}
    assert why["mistral-small-3.2"] == "excluded by the request"
    capped = policy.choose(q(max_cost_usd=0.001), "reasoning", 20)
    assert all(c.estimated_cost_usd <= 0.001 for c in capped.candidates if c.eligible)
    assert not capped.cleared  # nothing that cheap clears the reasoning bar


def test_impossible_constraints_and_unknown_models(policy: Policy) -> None:
    with pytest.raises(RoutingError) as e:
        policy.choose(q(required_tags=frozenset({"region:moon"})), "greeting", 20)
    assert e.value.code == "FAILED_PRECONDITION" and "missing tag region:moon" in e.value.message
    with pytest.raises(RoutingError) as e:
        policy.check_models(q(allowed_models=frozenset({"gpt-9"})))
    assert e.value.code == "INVALID_ARGUMENT" and "gpt-9" in e.value.message


def test_pinned_model_wins_when_eligible(policy: Policy) -> None:
    pinned = policy.choose(q(), "greeting", 20, pinned_model="gpt-5.5")
    assert pinned.model == "gpt-5.5" and "gpt-5.5" not in pinned.fallbacks
    blocked = policy.choose(
        q(excluded_models=frozenset({"gpt-5.5"})), "greeting", 20, pinned_model="gpt-5.5"
    )
    assert blocked.model != "gpt-5.5"


def test_route_quality_overrides_and_route_model_restrictions(config: Config) -> None:
    routes = tuple(
        r.model_copy(update={"models": ("gpt-5.5",)}) if r.name == "greeting" else r
        for r in config.routes
    )
    policy = Policy(config.model_copy(update={"routes": routes}))
    quality = {
        c.model: c.predicted_quality for c in policy.choose(q(), "translation", 20).candidates
    }
    assert quality["mistral-small-3.2"] == pytest.approx(0.72)  # its translation override
    assert quality["gpt-5.5"] == pytest.approx(0.95)  # no override: its base quality
    greeting = policy.choose(q(), "greeting", 20)
    assert greeting.model == "gpt-5.5"
    for c in greeting.candidates:
        if c.model != "gpt-5.5":
            assert not c.eligible
            assert c.ineligible_reason == "route greeting is served by other models"


def test_cost_uses_the_route_output_tokens_else_the_default(config: Config) -> None:
    routes = tuple(
        r.model_copy(update={"expected_output_tokens": None}) if r.name == "faq_lookup" else r
        for r in config.routes
    )
    policy = Policy(config.model_copy(update={"routes": routes}))
    m = config.model("mistral-small-3.2")
    prices = (m.input_price_per_mtok, m.output_price_per_mtok)

    def cost(route: str, **kw: int) -> float:
        d = policy.choose(q(**kw), route, 20)
        return next(c.estimated_cost_usd for c in d.candidates if c.model == m.name)

    def expected(out_tokens: int) -> float:
        return (20 * prices[0] + out_tokens * prices[1]) / 1e6

    assert cost("greeting") == pytest.approx(expected(40), rel=1e-9)  # the route's own
    default = config.policy.default_output_tokens
    assert cost("faq_lookup") == pytest.approx(expected(default), rel=1e-9)
    assert cost("faq_lookup", expected_output_tokens=7) == pytest.approx(expected(7), rel=1e-9)


def test_candidates_carry_providers_and_plain_flags(policy: Policy, config: Config) -> None:
    d = policy.choose(q(allowed_models=frozenset({"gpt-5.5"})), "faq_lookup", 20)
    assert d.provider == config.model(d.model).provider and d.cleared is True
    for c in d.candidates:
        assert c.provider == config.model(c.model).provider
        assert c.eligible is (c.model == "gpt-5.5")
        assert type(c.predicted_quality) is float and c.predicted_quality > 0
    why = {c.model: c.ineligible_reason for c in d.candidates}
    assert why["gpt-5.5"] == "" and why["mistral-small-3.2"] == "not in allowed_models"


def test_eligibility_reasons_and_the_cost_cap_boundary(policy: Policy) -> None:
    cheap = policy.choose(q(), "faq_lookup", 20)
    cost = {c.model: c.estimated_cost_usd for c in cheap.candidates}
    cap = cost["deepseek-v3.2"]
    capped = policy.choose(q(max_cost_usd=cap), "faq_lookup", 20)
    by_model = {c.model: c for c in capped.candidates}
    assert by_model["deepseek-v3.2"].eligible  # a cost equal to the cap is within it
    assert by_model["gpt-5.5"].ineligible_reason == (
        f"estimated cost ${cost['gpt-5.5']:.6f} over max_cost_usd"
    )
    tagged = policy.choose(q(required_tags=frozenset({"hipaa", "region:eu"})), "faq_lookup", 20)
    reasons = {c.ineligible_reason for c in tagged.candidates if not c.eligible}
    assert "missing tag hipaa, region:eu" in reasons


def test_messages_name_every_model_and_what_to_relax(policy: Policy) -> None:
    with pytest.raises(RoutingError) as e:
        policy.check_models(q(allowed_models=frozenset({"gpt-9", "gpt-10"})))
    assert e.value.message == (
        "unknown model(s) gpt-10, gpt-9; the pool has: " + ", ".join(policy.model_names)
    )
    with pytest.raises(RoutingError) as e:
        policy.choose(q(required_tags=frozenset({"region:moon"})), "greeting", 20)
    details = "; ".join(f"{n}: missing tag region:moon" for n in policy.model_names)
    assert e.value.message == (
        f"no model satisfies the request's constraints ({details}); "
        "relax allowed/excluded models, tags or max_cost_usd"
    )


def test_a_quality_equal_to_the_bar_clears_it(policy: Policy, config: Config) -> None:
    """At the balanced knob the bar is the route's target, at 0 its floor: a model whose
    quality is exactly that (same float32 rounding on both sides) clears it."""
    pairs = [
        (r.name, m.name, knob)
        for r in config.routes
        for m in config.models
        for knob, bar in ((0.5, r.target_quality), (0.0, r.min_quality))
        if m.route_quality.get(r.name, m.quality) == bar
    ]
    assert len(pairs) >= 2
    for route, model, knob in pairs:
        d = policy.choose(q(quality_preference=knob), route, 20)
        assert next(c for c in d.candidates if c.model == model).meets_bar, (route, model, knob)


def test_models_the_learned_bundle_does_not_score_are_ineligible(policy: Policy) -> None:
    predicted = np.array([0.6, 0.7, 0.75, 0.8, 0.9, np.nan, 0.97], dtype=np.float32)
    assert policy.model_names[5] == "gpt-5.5"
    d = policy.choose(q(), "reasoning", 20, learned=(predicted, 0.05))
    by_model = {c.model: c for c in d.candidates}
    unscored = by_model["gpt-5.5"]
    assert not unscored.eligible and unscored.ineligible_reason == "not in the learned index"
    assert unscored.predicted_quality == 0.0
    assert d.model != "gpt-5.5" and all(c.eligible for m, c in by_model.items() if m != "gpt-5.5")
