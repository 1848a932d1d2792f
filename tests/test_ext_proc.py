"""The Envoy ext_proc adapter in process: the OpenAI body parser and rewrite
(semroute/openai_body.py), and the ExternalProcessor stream over a stand-in pipeline.
The same adapter behind a real Envoy: tests/test_envoy.py."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as ep_grpc

from semroute.config import ExtProcSpec
from semroute.openai_body import NotRoutable, parse
from semroute.server.ext_proc import CAUSES, ExtProcServicer
from semroute.types import RoutingError
from semroute.v1 import router_pb2 as pb

AUTO = frozenset({"auto"})


def causes(body: bytes, max_bytes: int = 10_000) -> str:
    with pytest.raises(NotRoutable) as e:
        parse(body, AUTO, max_bytes)
    return e.value.cause


# --- the body parser ------------------------------------------------------------------


def test_chat_messages_with_text_parts() -> None:
    body = json.dumps(
        {
            "model": "auto",
            "messages": [
                {"role": "system", "content": "be brief"},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "what is in"},
                        {"type": "image_url", "image_url": {"url": "x"}},
                        {"type": "text", "text": "this picture"},
                    ],
                },
                {"role": "assistant", "content": None, "tool_calls": []},
                {"role": "function", "content": "dropped: not a RouteRequest role"},
            ],
        }
    ).encode()
    req = parse(body, AUTO, 10_000).route_request("rid", "acme", ("tools",))
    assert [(m.role, m.content) for m in req.messages] == [
        ("system", "be brief"),
        ("user", "what is in\nthis picture"),
        ("assistant", ""),
    ]
    assert (req.request_id, req.tenant, list(req.required_tags)) == ("rid", "acme", ["tools"])
    assert not req.prompt


def test_responses_api_input_string_and_items() -> None:
    as_string = parse(b'{"model":"auto","input":"hi there","instructions":"be terse"}', AUTO, 999)
    assert as_string.messages == (("system", "be terse"), ("user", "hi there"))
    items = {
        "model": "auto",
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "first"}]},
            {"type": "function_call", "name": "f", "arguments": "{}"},
            {"type": "message", "role": "assistant", "content": "ok"},
            {"role": "user", "content": "second"},
        ],
    }
    parsed = parse(json.dumps(items).encode(), AUTO, 999)
    assert parsed.messages == (("user", "first"), ("assistant", "ok"), ("user", "second"))


def test_completions_prompt_string_or_list() -> None:
    assert parse(b'{"model":"auto","prompt":"once upon"}', AUTO, 999).prompt == "once upon"
    req = parse(b'{"model":"auto","prompt":["a","b"]}', AUTO, 999).route_request()
    assert req.prompt == "a\nb" and not req.messages
    assert causes(b'{"model":"auto","prompt":[1,2,3]}') == "no_prompt"


@pytest.mark.parametrize(
    ("body", "cause"),
    [
        (b'{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}', "model"),
        (b'{"messages":[{"role":"user","content":"hi"}]}', "model"),
        (b'{"model":["auto"],"prompt":"hi"}', "model"),
        (b'{"model":"auto","messages":[{"role":"system","content":"only system"}]}', "no_prompt"),
        (b'{"model":"auto","messages":[{"role":"user","content":"   "}]}', "no_prompt"),
        # found by fuzz/openai_body.py: a list where a role or part type goes
        (b'{"model":"auto","messages":[{"role":["user"],"content":"hi"}]}', "no_prompt"),
        (
            b'{"model":"auto","messages":[{"role":"user","content":[{"type":{},"text":"a"}]}]}',
            "no_prompt",
        ),
        (b'{"model":"auto"}', "no_prompt"),
        (b"model=auto&prompt=hi", "not_json"),
        (b'["model", "auto"]', "not_json"),
        (b'{"model":"auto","prompt":"hi"} trailing', "not_json"),
        (b'{"model":"auto","prompt":"hi","model":"auto"}', "not_json"),
        (b'{"model":"auto","prompt":"\xff"}', "not_json"),
        (b'{"model":"auto","prompt":"hi",}', "not_json"),
        (b'{"model":"auto","x":' + b"[" * 200_000 + b"]" * 200_000 + b"}", "oversize"),
        (b'{"model":"auto","x":' + b"[" * 50_000 + b"]" * 50_000 + b"}", "not_json"),
    ],
)
def test_what_is_not_routed_and_why(body: bytes, cause: str) -> None:
    assert causes(body, max_bytes=200_000) == cause


def test_rewrite_changes_only_the_model_bytes() -> None:
    body = (
        b'{\n  "temperature": 1.0E0, "model" :\t"auto" ,'
        b'"messages": [{"role": "user", "content": "caf\\u00e9 \xc3\xa9"}]}'
    )
    out = parse(body, AUTO, 10_000).with_model('odd "name" \u00e9')
    assert out == body.replace(b'"auto"', json.dumps('odd "name" \u00e9').encode())
    assert json.loads(out)["model"] == 'odd "name" \u00e9'


# --- the adapter ----------------------------------------------------------------------


class StandIn:
    """Stands in for the Pipeline: records requests, answers `reply` or raises it."""

    def __init__(self, reply: pb.RouteDecision | bytes | RoutingError) -> None:
        self.reply = reply
        self.requests: list[pb.RouteRequest] = []
        self.remaining: list[float | None] = []

    async def decide(self, request: pb.RouteRequest, time_remaining: Any = None) -> Any:
        self.requests.append(request)
        self.remaining.append(time_remaining() if time_remaining else None)
        if isinstance(self.reply, RoutingError):
            raise self.reply
        return self.reply


DECISION = pb.RouteDecision(
    request_id="req-1", model="mistral-small-3.2", route="faq_lookup", fallbacks=["a", "b"]
)


def headers_message(end_of_stream: bool = False, **extra: str) -> ep.ProcessingRequest:
    values = [base_pb2.HeaderValue(key=k, raw_value=v.encode()) for k, v in extra.items()]
    values.insert(0, base_pb2.HeaderValue(key=":path", raw_value=b"/v1/chat/completions"))
    return ep.ProcessingRequest(
        request_headers=ep.HttpHeaders(
            headers=base_pb2.HeaderMap(headers=values), end_of_stream=end_of_stream
        )
    )


def body_message(body: bytes, end_of_stream: bool = True) -> ep.ProcessingRequest:
    return ep.ProcessingRequest(request_body=ep.HttpBody(body=body, end_of_stream=end_of_stream))


async def run(servicer: ExtProcServicer, *messages: ep.ProcessingRequest) -> list[Any]:
    async def stream() -> AsyncIterator[ep.ProcessingRequest]:
        for m in messages:
            yield m

    return [r async for r in servicer.Process(stream(), None)]  # type: ignore[arg-type]


CHAT = b'{"model": "auto", "messages": [{"role": "user", "content": "opening hours?"}]}'


def set_headers(response: ep.ProcessingResponse) -> dict[str, str]:
    mutation = response.request_body.response.header_mutation
    return {h.header.key: h.header.raw_value.decode() for h in mutation.set_headers}


@pytest.mark.parametrize("reply", [DECISION, DECISION.SerializeToString()])
async def test_a_routed_body_gets_headers_rewritten_body_and_route_cache_cleared(
    reply: pb.RouteDecision | bytes,
) -> None:
    pipeline = StandIn(reply)
    servicer = ExtProcServicer(pipeline, ExtProcSpec(message_timeout_ms=300))  # type: ignore[arg-type]
    hdrs = headers_message(
        **{"x-request-id": "req-1", "X-Semroute-Tenant": "acme", "x-semroute-tags": "eu, ,tools"}
    )
    first, second = await run(servicer, hdrs, body_message(CHAT))
    assert first == ep.ProcessingResponse(request_headers=ep.HeadersResponse())
    common = second.request_body.response
    new_body = CHAT.replace(b'"auto"', b'"mistral-small-3.2"')
    assert common.body_mutation.body == new_body
    assert common.clear_route_cache
    assert set_headers(second) == {
        "x-selected-model": "mistral-small-3.2",
        "x-semroute-route": "faq_lookup",
        "x-semroute-decision-id": "req-1",
        "x-semroute-fallbacks": "a,b",
        "content-length": str(len(new_body)),
    }
    (req,) = pipeline.requests
    assert (req.request_id, req.tenant, list(req.required_tags)) == (
        "req-1",
        "acme",
        ["eu", "tools"],
    )
    assert [(m.role, m.content) for m in req.messages] == [("user", "opening hours?")]
    assert 0 < pipeline.remaining[0] <= 0.3  # type: ignore[operator]
    assert servicer.counters() == {c: int(c == "routed") for c in CAUSES}


async def test_clear_route_cache_can_be_turned_off() -> None:
    servicer = ExtProcServicer(StandIn(DECISION), ExtProcSpec(clear_route_cache=False))  # type: ignore[arg-type]
    _, second = await run(servicer, headers_message(), body_message(CHAT))
    assert second.request_body.response.body_mutation.body  # still routed...
    assert not second.request_body.response.clear_route_cache  # ...but the route stays


@pytest.mark.parametrize(
    ("messages", "cause"),
    [
        ((body_message(b'{"model": "gpt-4o", "prompt": "hi"}'),), "model"),
        ((body_message(b"not json"),), "not_json"),
        ((body_message(b'{"model": "auto", "prompt": "' + b"x" * 2000 + b'"}'),), "oversize"),
        ((body_message(b'{"model": "auto", "prompt": " "}'),), "no_prompt"),
        ((body_message(CHAT[:20], end_of_stream=False),), "partial_body"),
    ],
)
async def test_unroutable_bodies_pass_through_counted(
    messages: tuple[ep.ProcessingRequest, ...], cause: str
) -> None:
    pipeline = StandIn(DECISION)
    servicer = ExtProcServicer(pipeline, ExtProcSpec(max_body_bytes=1024))  # type: ignore[arg-type]
    _, second = await run(servicer, headers_message(), *messages)
    assert second == ep.ProcessingResponse(request_body=ep.BodyResponse())
    assert not pipeline.requests
    assert servicer.counters()[cause] == 1 and sum(servicer.counters().values()) == 1


@pytest.mark.parametrize(
    ("code", "cause"), [("INVALID_ARGUMENT", "invalid"), ("UNAVAILABLE", "error")]
)
async def test_a_refused_decision_passes_through_counted(code: str, cause: str) -> None:
    servicer = ExtProcServicer(StandIn(RoutingError(code, "no")), ExtProcSpec())  # type: ignore[arg-type]
    _, second = await run(servicer, headers_message(), body_message(CHAT))
    assert second == ep.ProcessingResponse(request_body=ep.BodyResponse())
    assert servicer.counters()[cause] == 1 and servicer.counters()["routed"] == 0


async def test_headers_only_and_response_phases_pass_through() -> None:
    servicer = ExtProcServicer(StandIn(DECISION), ExtProcSpec())  # type: ignore[arg-type]
    replies = await run(
        servicer,
        headers_message(end_of_stream=True),
        ep.ProcessingRequest(response_headers=ep.HttpHeaders()),
        ep.ProcessingRequest(response_body=ep.HttpBody(body=b"{}", end_of_stream=True)),
        ep.ProcessingRequest(response_trailers=ep.HttpTrailers()),
    )
    assert replies == [
        ep.ProcessingResponse(request_headers=ep.HeadersResponse()),
        ep.ProcessingResponse(response_headers=ep.HeadersResponse()),
        ep.ProcessingResponse(response_body=ep.BodyResponse()),
        ep.ProcessingResponse(response_trailers=ep.TrailersResponse()),
    ]
    assert servicer.counters()["no_body"] == 1


# --- on the serving port --------------------------------------------------------------


def test_the_serving_port_routes_a_body_as_route_does(server: str, stub: Any) -> None:
    prompt = "what are your opening hours?"
    expected = stub.Route(pb.RouteRequest(prompt=prompt), timeout=30).model
    body = json.dumps({"model": "auto", "messages": [{"role": "user", "content": prompt}]})
    with grpc.insecure_channel(server) as ch:
        process = ep_grpc.ExternalProcessorStub(ch).Process
        replies = list(process(iter([headers_message(), body_message(body.encode())]), timeout=30))
    assert len(replies) == 2
    assert set_headers(replies[1])["x-selected-model"] == expected
    assert json.loads(replies[1].request_body.response.body_mutation.body)["model"] == expected


def test_a_stream_message_that_does_not_parse_is_refused(server: str) -> None:
    with grpc.insecure_channel(server) as ch:
        process = ch.stream_stream("/envoy.service.ext_proc.v3.ExternalProcessor/Process")
        with pytest.raises(grpc.RpcError) as e:
            list(process(iter([b"\xff\xff\xff"]), timeout=30))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
