"""Protobuf ↔ core types, with request validation.

Every check on what a caller sent lives here, so a bad request is turned away
with INVALID_ARGUMENT and an actionable message before any work is done.
"""

from __future__ import annotations

import hashlib
import math
import uuid

from semroute.config import ServerSpec
from semroute.types import Decision, Preset, RouteQuery, RoutingError
from semroute.v1 import router_pb2 as pb

_ROLES = frozenset({"system", "user", "assistant", "tool", "developer"})


def _invalid(message: str) -> RoutingError:
    return RoutingError("INVALID_ARGUMENT", message)


def conversation_text(messages: list[pb.ChatMessage]) -> str:
    """The text routed on for a chat: every user turn, oldest first.

    The whole conversation, not the last line, decides, so a follow-up like
    "and in Rust?" stays with the model that handled the topic; the encoder
    keeps the head and tail of long texts (first topic and latest turn).
    """
    return "\n".join(m.content.strip() for m in messages if m.role == "user" and m.content.strip())


def query_from_proto(req: pb.RouteRequest, limits: ServerSpec) -> RouteQuery:
    has_prompt = bool(req.prompt)
    if has_prompt and req.messages:
        raise _invalid("set either prompt or messages, not both")
    if has_prompt:
        text = req.prompt.strip()
        if not text:
            raise _invalid("prompt is blank; send the text to route")
    elif req.messages:
        if len(req.messages) > limits.max_messages:
            raise _invalid(
                f"{len(req.messages)} messages exceed the limit of {limits.max_messages}; "
                "send the most recent turns"
            )
        for i, m in enumerate(req.messages):
            if m.role not in _ROLES:
                raise _invalid(
                    f"messages[{i}].role {m.role!r} is not one of {', '.join(sorted(_ROLES))}"
                )
        text = conversation_text(list(req.messages))
        if not text:
            raise _invalid("messages contain no user message with content; nothing to route on")
    else:
        raise _invalid("empty request: set prompt or messages")
    size = len(text.encode())
    if size > limits.max_prompt_bytes:
        raise _invalid(
            f"prompt is {size} bytes, over the limit of {limits.max_prompt_bytes} "
            "(server.max_prompt_bytes); send a shorter excerpt"
        )
    knob = req.quality_preference if req.HasField("quality_preference") else None
    if knob is not None and (math.isnan(knob) or not 0.0 <= knob <= 1.0):
        raise _invalid(f"quality_preference must be within 0-1, got {knob}")
    max_cost = req.max_cost_usd if req.HasField("max_cost_usd") else None
    if max_cost is not None and not (max_cost > 0 and math.isfinite(max_cost)):
        raise _invalid(f"max_cost_usd must be a positive number, got {max_cost}")
    out_tokens = req.expected_output_tokens if req.HasField("expected_output_tokens") else None
    if out_tokens == 0:
        raise _invalid("expected_output_tokens must be at least 1 when set")
    try:
        preset = Preset(req.preset)
    except ValueError:
        raise _invalid(f"unknown preset value {req.preset}") from None
    return RouteQuery(
        text=text,
        request_id=req.request_id or uuid.uuid4().hex,
        tenant=req.tenant,
        allowed_models=frozenset(req.allowed_models),
        excluded_models=frozenset(req.excluded_models),
        required_tags=frozenset(t for t in req.required_tags if t),
        quality_preference=knob,
        preset=preset,
        max_cost_usd=max_cost,
        expected_output_tokens=out_tokens,
    )


def decision_to_proto(d: Decision) -> pb.RouteDecision:
    return pb.RouteDecision(
        request_id=d.request_id,
        model=d.model,
        provider=d.provider,
        fallbacks=d.fallbacks,
        route=d.route,
        confidence=d.confidence,
        reason=int(d.reason),
        quality_bar=d.quality_bar,
        candidates=[
            pb.Candidate(
                model=c.model,
                provider=c.provider,
                predicted_quality=c.predicted_quality,
                estimated_cost_usd=c.estimated_cost_usd,
                eligible=c.eligible,
                ineligible_reason=c.ineligible_reason,
                meets_bar=c.meets_bar,
            )
            for c in d.candidates
        ],
        matches=[pb.RouteMatch(route=r, score=s) for r, s in d.matches],
        index_version=d.index_version,
        encoder_id=d.encoder_id,
        config_version=d.config_version,
        rule=d.rule,
        tier=int(d.tier),
        classifier_version=d.classifier_version,
        timing=pb.Timing(
            total_us=d.timing.total_us,
            rules_us=d.timing.rules_us,
            encode_us=d.timing.encode_us,
            search_us=d.timing.search_us,
            policy_us=d.timing.policy_us,
        ),
    )


def response_key_from_proto(
    req: pb.LookupResponseRequest | pb.StoreResponseRequest, limits: ServerSpec
) -> tuple[tuple[str, str, str], str]:
    """(partition, text) for the response cache.

    The partition is (tenant, model, digest of the conversation before the last
    user turn): only that turn is matched by similarity, so an answer is reused
    only within the same tenant, model and earlier context.
    """
    if not req.tenant:
        raise _invalid("tenant is required: cached responses are never shared across tenants")
    if not req.model:
        raise _invalid("model is required: responses are cached per model")
    if req.prompt and req.messages:
        raise _invalid("set either prompt or messages, not both")
    if req.prompt:
        context, text = b"", req.prompt.strip()
    elif req.messages:
        if len(req.messages) > limits.max_messages:
            raise _invalid(
                f"{len(req.messages)} messages exceed the limit of {limits.max_messages}"
            )
        last = req.messages[-1]
        if last.role != "user":
            raise _invalid("the last message must be the user turn whose answer is cached")
        context = b"\x1e".join(f"{m.role}\x1f{m.content}".encode() for m in req.messages[:-1])
        text = last.content.strip()
    else:
        raise _invalid("empty request: set prompt or messages")
    if not text:
        raise _invalid("the prompt to match is blank")
    if len(text.encode()) > limits.max_prompt_bytes:
        raise _invalid(f"prompt is over the limit of {limits.max_prompt_bytes} bytes")
    digest = hashlib.blake2b(context, digest_size=16).hexdigest()
    return (req.tenant, req.model, digest), text
