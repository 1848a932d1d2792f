"""Fuzz request decoding and conversion: bytes as a Route / LookupResponse / StoreResponse
body through the server's guarded decoder and validation.

Allowed outcomes: a `Malformed` value (INVALID_ARGUMENT), a RoutingError (the
status the server maps it to), or a valid query whose cache keys can be made.

    python -m fuzz.route_request -runs=100000
"""

from __future__ import annotations

import atheris

with atheris.instrument_imports(include=["semroute"]):
    from semroute.config import ServerSpec
    from semroute.decision_cache import cache_key
    from semroute.messages import query_from_proto, response_key_from_proto
    from semroute.server.decoding import BadInputLog, Malformed, decoder
    from semroute.types import RoutingError
    from semroute.v1 import router_pb2 as pb

LIMITS = ServerSpec(max_prompt_bytes=4096, max_messages=16)
BAD = BadInputLog(interval_s=1e9)
DECODERS = (
    decoder(pb.RouteRequest.FromString, "/Route", BAD),
    decoder(pb.LookupResponseRequest.FromString, "/LookupResponse", BAD),
    decoder(pb.StoreResponseRequest.FromString, "/StoreResponse", BAD),
)


def test_one(data: bytes) -> None:
    if not data:
        return
    request = DECODERS[data[0] % 3](data[1:])
    if isinstance(request, Malformed):
        assert request.message()
        return
    try:
        if isinstance(request, pb.RouteRequest):
            q = query_from_proto(request, LIMITS)
            knob = q.quality_preference if q.quality_preference is not None else 0.5
            assert len(cache_key(q, knob, "c", "i")) == 16
            assert q.text.strip() and len(q.text.encode()) <= LIMITS.max_prompt_bytes
        else:
            partition, text = response_key_from_proto(request, LIMITS)
            assert partition[0] and partition[1] and text
    except RoutingError as e:
        assert e.code == "INVALID_ARGUMENT" and e.message


def seeds() -> list[bytes]:
    reqs = [
        pb.RouteRequest(prompt="what are your opening hours?", tenant="t", request_id="r"),
        pb.RouteRequest(
            messages=[
                pb.ChatMessage(role="system", content="be brief"),
                pb.ChatMessage(role="user", content="write a python function"),
            ],
            required_tags=["region:eu"],
            quality_preference=0.7,
            max_cost_usd=0.01,
            expected_output_tokens=300,
            allowed_models=["gpt-5.5"],
            preset=pb.PRESET_COST,
        ),
    ]
    out = [b"\x00" + r.SerializeToString() for r in reqs]
    out.append(
        b"\x01" + pb.LookupResponseRequest(tenant="t", model="m", prompt="hi").SerializeToString()
    )
    out.append(
        b"\x02"
        + pb.StoreResponseRequest(
            tenant="t",
            model="m",
            response="hello",
            messages=[pb.ChatMessage(role="user", content="hi")],
        ).SerializeToString()
    )
    return out


if __name__ == "__main__":
    from fuzz.common import main

    main(test_one, seeds)
