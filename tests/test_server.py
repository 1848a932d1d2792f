"""End to end over gRPC: a real `semroute serve` on 127.0.0.1, real ONNX model, real FAISS."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from semroute.config import Config
from semroute.messages import conversation_text
from semroute.v1 import router_pb2 as pb

FRONTIER = {"claude-opus-4.5", "gpt-5.5"}


def cheapest(config: Config) -> set[str]:
    """The models priced at the bottom half of the pool."""
    ranked = sorted(config.models, key=lambda m: m.input_price_per_mtok + m.output_price_per_mtok)
    return {m.name for m in ranked[: len(ranked) // 2]}


def route(stub, **kw) -> pb.RouteDecision:  # type: ignore[no-untyped-def]
    return stub.Route(pb.RouteRequest(**kw), timeout=10)


def test_cheap_question_goes_to_a_cheap_model(stub, config: Config) -> None:  # type: ignore[no-untyped-def]
    d = route(stub, prompt="what are your opening hours?")
    assert d.model in cheapest(config)
    assert d.route == "faq_lookup"
    assert d.reason == pb.DECISION_REASON_CLASSIFIER


@pytest.mark.parametrize(
    "prompt",
    [
        "prove that there are infinitely many primes and formalise it in Lean",
        "design a sharded, replicated key-value store with exactly-once semantics",
        "Design a multi-region event store with exactly-once delivery; explain its failure modes",
    ],
)
def test_hard_prompts_go_to_a_frontier_model(stub, prompt: str) -> None:  # type: ignore[no-untyped-def]
    d = route(stub, prompt=prompt)
    assert d.model in FRONTIER, (d.route, d.model)


def test_every_field_of_the_decision(stub, config: Config) -> None:  # type: ignore[no-untyped-def]
    d = route(
        stub,
        prompt="write a python function that merges two sorted lists",
        request_id="req-42",
        tenant="acme",
    )
    assert d.request_id == "req-42"
    assert d.model and d.provider == config.model(d.model).provider
    assert d.route == "code_generation" and 0.45 <= d.confidence <= 1.0
    assert d.reason == pb.DECISION_REASON_CLASSIFIER and d.classifier_version
    assert d.model not in d.fallbacks and len(d.fallbacks) == len(config.models) - 1
    # Next best comes from another provider.
    assert config.model(d.fallbacks[0]).provider != d.provider
    assert {c.model for c in d.candidates} == {m.name for m in config.models}
    chosen = next(c for c in d.candidates if c.model == d.model)
    assert chosen.eligible and chosen.meets_bar and chosen.predicted_quality >= d.quality_bar - 1e-6
    assert all(c.estimated_cost_usd > 0 for c in d.candidates)
    cheaper_clearing = [
        c
        for c in d.candidates
        if c.meets_bar and c.eligible and c.estimated_cost_usd < chosen.estimated_cost_usd
    ]
    assert not cheaper_clearing
    assert d.matches[0].route == d.route and d.matches[0].score == pytest.approx(d.confidence)
    assert [m.score for m in d.matches] == sorted((m.score for m in d.matches), reverse=True)
    assert d.index_version.startswith("routes-")
    assert d.encoder_id and d.config_version == config.version
    assert d.timing.total_us >= d.timing.encode_us > 0
    assert d.timing.search_us > 0 or d.timing.policy_us > 0


def test_server_makes_a_request_id_when_missing(stub) -> None:  # type: ignore[no-untyped-def]
    a, b = (
        route(stub, prompt="hello there, how are you?"),
        route(stub, prompt="hello there, how are you?"),
    )
    assert a.request_id and b.request_id and a.request_id != b.request_id


def test_rule_decides_without_the_encoder(stub) -> None:  # type: ignore[no-untyped-def]
    d = route(stub, prompt="hi!")
    assert d.reason == pb.DECISION_REASON_RULE and d.rule == "greeting-only"
    assert d.route == "greeting" and d.confidence == 1.0 and d.timing.encode_us == 0


def test_tags_restrict_the_choice(stub, config: Config) -> None:  # type: ignore[no-untyped-def]
    d = route(stub, prompt="what are your opening hours?", required_tags=["region:eu", "hipaa"])
    assert {"region:eu", "hipaa"} <= config.model(d.model).tags
    for c in d.candidates:
        if not {"region:eu", "hipaa"} <= config.model(c.model).tags:
            assert not c.eligible and c.ineligible_reason.startswith("missing tag")


def test_knob_presets_and_allowed_models(stub, config: Config) -> None:  # type: ignore[no-untyped-def]
    prompt = "summarize this article in three bullet points"
    cost = route(stub, prompt=prompt, preset=pb.PRESET_COST)
    quality = route(stub, prompt=prompt, preset=pb.PRESET_QUALITY)
    assert cost.quality_bar < quality.quality_bar
    price = {c.model: c.estimated_cost_usd for c in quality.candidates}
    assert price[cost.model] <= price[quality.model]
    only = route(stub, prompt=prompt, allowed_models=["claude-sonnet-4.5", "gpt-5.5"])
    assert only.model in {"claude-sonnet-4.5", "gpt-5.5"} and set(only.fallbacks) <= {
        "claude-sonnet-4.5",
        "gpt-5.5",
    }


def test_max_cost_and_fallback_reason(stub) -> None:  # type: ignore[no-untyped-def]
    d = route(
        stub,
        prompt="design a sharded, replicated key-value store with exactly-once semantics",
        max_cost_usd=0.0005,
    )
    assert d.reason == pb.DECISION_REASON_FALLBACK
    assert next(c for c in d.candidates if c.model == d.model).estimated_cost_usd <= 0.0005


def test_multi_turn_routes_on_the_conversation(stub) -> None:  # type: ignore[no-untyped-def]
    """The follow-up alone routes elsewhere; the conversation stays on (formal) maths."""
    follow_up = "and now do the same for the second one"
    msgs = [
        pb.ChatMessage(role="system", content="You are a helpful assistant."),
        pb.ChatMessage(role="user", content="prove that the square root of two is irrational"),
        pb.ChatMessage(role="assistant", content="Suppose sqrt(2) = p/q in lowest terms ..."),
        pb.ChatMessage(role="user", content=follow_up),
    ]
    alone = route(stub, prompt=follow_up)
    assert alone.route not in ("math", "formal_math")
    d = route(stub, messages=msgs)
    assert d.route in ("math", "formal_math") and d.model != alone.model


def test_conversation_text_is_every_user_turn_oldest_first() -> None:
    msgs = [
        pb.ChatMessage(role="system", content="be brief"),
        pb.ChatMessage(role="user", content="  first question "),
        pb.ChatMessage(role="assistant", content="an answer"),
        pb.ChatMessage(role="user", content="   "),
        pb.ChatMessage(role="tool", content="tool output"),
        pb.ChatMessage(role="user", content="follow-up"),
    ]
    assert conversation_text(msgs) == "first question\nfollow-up"


def test_default_route_when_nothing_matches(stub, config: Config) -> None:  # type: ignore[no-untyped-def]
    # Noise takes the default route: the classifier was trained to put it there (general), or
    # is unsure and falls back (tests/test_route_classifier.py pins the fallback itself).
    d = route(stub, prompt="zxq vlorp 8812 qqq")
    assert d.route == config.policy.default_route
    assert d.reason in (pb.DECISION_REASON_DEFAULT, pb.DECISION_REASON_CLASSIFIER)


BAD = [
    ({}, grpc.StatusCode.INVALID_ARGUMENT, "empty request"),
    ({"prompt": "   \n "}, grpc.StatusCode.INVALID_ARGUMENT, "blank"),
    (
        {"prompt": "hi", "messages": [pb.ChatMessage(role="user", content="hi")]},
        grpc.StatusCode.INVALID_ARGUMENT,
        "not both",
    ),
    (
        {"messages": [pb.ChatMessage(role="system", content="be nice")]},
        grpc.StatusCode.INVALID_ARGUMENT,
        "no user message",
    ),
    (
        {"messages": [pb.ChatMessage(role="wizard", content="hi")]},
        grpc.StatusCode.INVALID_ARGUMENT,
        "role",
    ),
    ({"prompt": "x" * 70_000}, grpc.StatusCode.INVALID_ARGUMENT, "max_prompt_bytes"),
    ({"prompt": "hello", "allowed_models": ["gpt-9"]}, grpc.StatusCode.INVALID_ARGUMENT, "gpt-9"),
    ({"prompt": "hello", "excluded_models": ["nope"]}, grpc.StatusCode.INVALID_ARGUMENT, "nope"),
    (
        {"prompt": "hello there", "required_tags": ["region:moon"]},
        grpc.StatusCode.FAILED_PRECONDITION,
        "region:moon",
    ),
    (
        {
            "prompt": "hello there",
            "allowed_models": ["mistral-small-3.2"],
            "required_tags": ["hipaa"],
        },
        grpc.StatusCode.FAILED_PRECONDITION,
        "hipaa",
    ),
    ({"prompt": "hello", "quality_preference": 1.5}, grpc.StatusCode.INVALID_ARGUMENT, "0-1"),
    ({"prompt": "hello", "max_cost_usd": -1}, grpc.StatusCode.INVALID_ARGUMENT, "max_cost_usd"),
    (
        {"prompt": "hello", "expected_output_tokens": 0},
        grpc.StatusCode.INVALID_ARGUMENT,
        "at least 1",
    ),
]


@pytest.mark.parametrize(("fields", "code", "text"), BAD)
def test_bad_input_gets_a_clear_status(stub, fields, code, text) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as e:
        route(stub, **fields)
    assert e.value.code() == code
    assert text in e.value.details()
    # ...and the server is still fine afterwards.
    assert route(stub, prompt="what are your opening hours?").model


def test_oversize_message_is_refused_by_transport(stub) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as e:
        route(stub, prompt="x" * 2_000_000)
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_health_and_reflection(server: str) -> None:
    with grpc.insecure_channel(server) as ch:
        health = health_pb2_grpc.HealthStub(ch)
        for name in ("", "semroute.v1.RouterService"):
            r = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
            assert r.status == health_pb2.HealthCheckResponse.SERVING
        refl = reflection_pb2_grpc.ServerReflectionStub(ch)
        responses = list(
            refl.ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
            )
        )
        names = {s.name for s in responses[0].list_services_response.service}
        assert {"semroute.v1.RouterService", "grpc.health.v1.Health"} <= names
        responses = list(
            refl.ServerReflectionInfo(
                iter(
                    [
                        reflection_pb2.ServerReflectionRequest(
                            file_containing_symbol="semroute.v1.RouterService"
                        )
                    ]
                ),
                timeout=5,
            )
        )
        assert responses[0].file_descriptor_response.file_descriptor_proto


def test_repeat_is_served_from_the_decision_cache(stub) -> None:  # type: ignore[no-untyped-def]
    # A prompt the cascade's static head is unsure of (general 0.47 vs faq_lookup 0.39), so
    # the first request runs the encoder.
    prompt = "Help me think through whether to accept a job offer in another city"
    first = route(stub, prompt=prompt, request_id="first")
    again = route(
        stub,
        prompt="  help me think through whether to accept a job offer in ANOTHER city ",
        request_id="again",
    )
    assert first.tier == pb.TIER_ENCODER and again.tier == pb.TIER_CACHE
    assert again.request_id == "again" and again.model == first.model
    assert list(again.candidates) == list(first.candidates) and again.route == first.route
    assert again.timing.encode_us == 0
    other = route(stub, prompt=prompt, required_tags=["region:eu"])
    assert other.tier == pb.TIER_ENCODER  # other constraints: not the cached answer
    assert route(stub, prompt="Good night!!").tier == pb.TIER_RULE  # first time: not cached


def test_exact_repeats_take_the_wire_path_with_their_own_id_and_timing(stub) -> None:  # type: ignore[no-untyped-def]
    """A byte-identical repeat is answered from cached bytes plus its own id and timing."""
    kw = {"prompt": "summarise this quarterly report in three bullet points", "tenant": "acme"}
    first = route(stub, request_id="w1", **kw)
    repeats = [route(stub, request_id=f"w{i}", **kw) for i in range(2, 5)]
    anonymous = route(stub, **kw)
    for i, d in enumerate(repeats, start=2):
        assert (d.tier, d.request_id) == (pb.TIER_CACHE, f"w{i}")
        assert (d.model, d.route, d.fallbacks) == (first.model, first.route, first.fallbacks)
        assert list(d.candidates) == list(first.candidates)
        assert d.index_version == first.index_version and d.HasField("timing")
        assert d.timing.encode_us == 0
    # No id sent: the server makes one, as on every other path.
    assert anonymous.tier == pb.TIER_CACHE and len(anonymous.request_id) == 32
    # Any other field changes the key: an invalid variant is still refused, not served.
    with pytest.raises(grpc.RpcError) as e:
        route(stub, request_id="w5", quality_preference=2.0, **kw)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
