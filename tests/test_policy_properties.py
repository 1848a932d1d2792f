"""Properties of the policy, over generated model pools and requests (hypothesis):

- the chosen model is always eligible, and the call fails only when none is;
- a higher knob never lowers the quality bar;
- fallbacks have no duplicates, never repeat the chosen model, and never include an
  ineligible one.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from semroute.config import Config
from semroute.policy import Choice, Policy
from semroute.types import Preset, RouteQuery, RoutingError

TAGS = ("region:eu", "region:us", "hipaa", "tools", "vision")
PROVIDERS = ("openai", "anthropic", "google", "mistral")
SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def pools(draw: st.DrawFn) -> Policy:
    """A random model pool with two routes (one restricted to some models)."""
    n = draw(st.integers(1, 7))
    names = [f"m{i}" for i in range(n)]
    unit = st.floats(0, 1, allow_nan=False)
    price = st.floats(0, 100, allow_nan=False)
    models = [
        {
            "name": name,
            "provider": draw(st.sampled_from(PROVIDERS)),
            "input_price_per_mtok": draw(price),
            "output_price_per_mtok": draw(price),
            "quality": draw(unit),
            "route_quality": draw(st.dictionaries(st.sampled_from(["a", "b"]), unit)),
            "tags": draw(st.frozensets(st.sampled_from(TAGS))),
        }
        for name in names
    ]
    floor, target = sorted((draw(unit), draw(unit)))
    served = draw(st.lists(st.sampled_from(names), unique=True, max_size=n))
    routes = [
        {"name": "a", "utterances": ["x"], "target_quality": target, "min_quality": floor},
        {
            "name": "b",
            "utterances": ["y"],
            "target_quality": target,
            "min_quality": floor,
            "models": served,
        },
    ]
    cfg = {"models": models, "routes": routes, "policy": {"default_route": "a"}}
    return Policy(Config.model_validate(cfg))


@st.composite
def queries(draw: st.DrawFn, policy: Policy) -> RouteQuery:
    names = st.sampled_from(policy.model_names)
    knob = draw(st.one_of(st.none(), st.floats(0, 1, allow_nan=False)))
    return RouteQuery(
        text="x",
        allowed_models=draw(st.frozensets(names, max_size=3)),
        excluded_models=draw(st.frozensets(names, max_size=2)),
        required_tags=draw(st.frozensets(st.sampled_from(TAGS), max_size=2)),
        quality_preference=knob,
        preset=draw(st.sampled_from(list(Preset))) if knob is None else Preset.UNSPECIFIED,
        max_cost_usd=draw(st.one_of(st.none(), st.floats(1e-7, 1.0))),
        expected_output_tokens=draw(st.one_of(st.none(), st.integers(1, 4096))),
    )


@st.composite
def cases(draw: st.DrawFn) -> tuple[Policy, RouteQuery, str, int]:
    policy = draw(pools())
    return (
        policy,
        draw(queries(policy)),
        draw(st.sampled_from(policy.route_names)),
        draw(st.integers(0, 100_000)),
    )


def _choose(policy: Policy, query: RouteQuery, route: str, tokens: int) -> Choice | None:
    try:
        return policy.choose(query, route, tokens)
    except RoutingError as e:
        assert e.code == "FAILED_PRECONDITION"
        return None


def _eligible_by_spec(policy: Policy, query: RouteQuery, route: str, tokens: int) -> set[str]:
    """Eligibility computed here from the config, independently of the policy's code."""
    cfg = policy.config
    spec = next(r for r in cfg.routes if r.name == route)
    out_tokens = query.expected_output_tokens or (
        spec.expected_output_tokens or cfg.policy.default_output_tokens
    )
    out = set()
    for m in cfg.models:
        cost = (tokens * m.input_price_per_mtok + out_tokens * m.output_price_per_mtok) / 1e6
        if (
            m.name not in query.excluded_models
            and (not query.allowed_models or m.name in query.allowed_models)
            and query.required_tags <= m.tags
            and (not spec.models or m.name in spec.models)
            and (query.max_cost_usd is None or cost <= query.max_cost_usd * (1 + 1e-9))
        ):
            out.add(m.name)
    return out


@SETTINGS
@given(cases())
def test_the_chosen_model_is_always_eligible(case: tuple[Policy, RouteQuery, str, int]) -> None:
    policy, query, route, tokens = case
    eligible = _eligible_by_spec(policy, query, route, tokens)
    choice = _choose(policy, query, route, tokens)
    if choice is None:
        assert not eligible  # refused only when nothing is eligible
        return
    assert choice.model in eligible
    by_name = {c.model: c for c in choice.candidates}
    assert by_name[choice.model].eligible
    assert {c.model for c in choice.candidates if c.eligible} == eligible


@SETTINGS
@given(cases(), st.floats(0, 1, allow_nan=False), st.floats(0, 1, allow_nan=False))
def test_a_higher_knob_never_lowers_the_quality_bar(
    case: tuple[Policy, RouteQuery, str, int], k1: float, k2: float
) -> None:
    policy, query, route, tokens = case
    lo, hi = sorted((k1, k2))
    bars = []
    for knob in (lo, hi):
        q = RouteQuery(**{**_fields(query), "quality_preference": knob})
        choice = _choose(policy, q, route, tokens)
        if choice is None:
            return  # nothing eligible: no bar at all, whatever the knob
        bars.append(choice.quality_bar)
    assert bars[0] <= bars[1] + 1e-6


@SETTINGS
@given(cases())
def test_fallbacks_are_distinct_eligible_and_exclude_the_choice(
    case: tuple[Policy, RouteQuery, str, int],
) -> None:
    policy, query, route, tokens = case
    choice = _choose(policy, query, route, tokens)
    if choice is None:
        return
    eligible = _eligible_by_spec(policy, query, route, tokens)
    assert len(set(choice.fallbacks)) == len(choice.fallbacks)
    assert choice.model not in choice.fallbacks
    assert set(choice.fallbacks) <= eligible
    assert set(choice.fallbacks) | {choice.model} == eligible  # every other option listed


def _fields(q: RouteQuery) -> dict[str, Any]:
    return {f: getattr(q, f) for f in q.__slots__}  # type: ignore[attr-defined]


@SETTINGS
@given(st.data())
def test_properties_hold_on_the_default_pool(config: Config, data: st.DataObject) -> None:
    policy = Policy(config)
    query = data.draw(queries(policy))
    route = data.draw(st.sampled_from(policy.route_names))
    tokens = data.draw(st.integers(0, 100_000))
    eligible = _eligible_by_spec(policy, query, route, tokens)
    choice = _choose(policy, query, route, tokens)
    if choice is None:
        assert not eligible
        return
    assert choice.model in eligible
    assert len(set(choice.fallbacks)) == len(choice.fallbacks)
    assert set(choice.fallbacks) | {choice.model} == eligible
