"""Protobuf ↔ core types: request validation, decisions, and their cached wire form.

Every check on what a caller sent lives here, so a bad request is turned away
with INVALID_ARGUMENT and an actionable message before any work is done. The
decision cache holds decisions as serialised templates (`cache_template`) that
any transport stamps with its request's id and timing (`stamp`).
"""

from __future__ import annotations

import hashlib
import math
import time
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


def cache_template(response: pb.RouteDecision) -> bytes:
    """The cacheable part of a decision, serialised (so its size is exact): no request id,
    no timing, marked as a cache hit."""
    t = pb.RouteDecision()
    t.CopyFrom(response)
    t.ClearField("request_id")
    t.ClearField("timing")
    t.tier = pb.TIER_CACHE
    return t.SerializeToString()


def stamp(request_id: str, t0: int) -> bytes:
    """The per-request fields of a cached decision, serialised.

    Appending them to a template (which has neither field) gives the wire
    form of the template with them set: protobuf merges concatenated messages.
    """
    total_us = (time.perf_counter_ns() - t0) // 1000
    return pb.RouteDecision(
        request_id=request_id, timing=pb.Timing(total_us=total_us)
    ).SerializeToString()


def similar_decision(template: bytes, request_id: str, t0: int) -> pb.RouteDecision:
    """A near-identical prompt's decision, stamped for this request."""
    out = pb.RouteDecision.FromString(template)
    out.request_id = request_id
    out.tier = pb.TIER_SIMILAR
    out.timing.total_us = (time.perf_counter_ns() - t0) // 1000
    return out


def wire_key(request: pb.RouteRequest, salt: bytes) -> bytes:
    """Cache key of the exact request (its id aside) under `salt` (config and index)."""
    request_id = request.request_id
    if request_id:
        request.ClearField("request_id")
    h = hashlib.blake2b(
        request.SerializeToString(deterministic=True), digest_size=16, person=b"wire"
    )
    if request_id:
        request.request_id = request_id
    h.update(salt)
    return h.digest()


def as_decision(reply: pb.RouteDecision | bytes) -> pb.RouteDecision:
    """A pipeline reply as a message (cache hits arrive serialised)."""
    return pb.RouteDecision.FromString(reply) if isinstance(reply, bytes) else reply


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _len_field(tag: int, payload: bytes) -> bytes:
    """A length-delimited field (`tag` = field number << 3 | 2) on the wire."""
    return bytes((tag,)) + _varint(len(payload)) + payload


def item_bytes(sequence: int, request_id: str, reply: pb.RouteDecision | bytes) -> bytes:
    """A `RouteItem` carrying a decision, serialised without re-parsing a cached one.

    A cache hit is already a serialised `RouteDecision`; wrapping those bytes as
    field 1 gives the item's wire form directly (what `item.decision.CopyFrom`
    plus `SerializeToString` would produce, at a fraction of the cost)."""
    blob = reply if isinstance(reply, bytes) else reply.SerializeToString()
    out = _len_field(0x0A, blob)  # decision = 1
    if sequence:
        out += b"\x18" + _varint(sequence)  # sequence = 3
    if request_id:
        out += _len_field(0x22, request_id.encode())  # request_id = 4
    return out


def error_item(
    sequence: int, request_id: str, code: int, message: str, retry_after_ms: int = 0
) -> bytes:
    """A `RouteItem` carrying an error (a google.rpc.Code value, the message, and for a
    refusal under load when to retry)."""
    return pb.RouteItem(
        error=pb.ItemError(code=code, message=message, retry_after_ms=retry_after_ms),
        sequence=sequence,
        request_id=request_id,
    ).SerializeToString()


def batch_bytes(items: list[bytes]) -> bytes:
    """A `RouteBatchResponse` from serialised items, in order."""
    return b"".join(_len_field(0x0A, item) for item in items)  # items = 1
