"""Fuzz the Envoy ext_proc body handling: bytes as an OpenAI-style request body through
the parser, the RouteRequest it builds (with the server's validation) and the rewrite.

Allowed outcomes: `NotRoutable` (the body passes through unchanged), a RoutingError
INVALID_ARGUMENT from validation (also passed through), or a routed body whose rewrite
is the same body with only `model` changed.

    python -m fuzz.openai_body -runs=100000
"""

from __future__ import annotations

import json

import atheris

with atheris.instrument_imports(include=["semroute"]):
    from semroute.config import ServerSpec
    from semroute.messages import query_from_proto
    from semroute.openai_body import NotRoutable, parse
    from semroute.types import RoutingError

LIMITS = ServerSpec(max_prompt_bytes=4096, max_messages=16)
MODELS = frozenset({"auto", "router"})
MAX_BODY = 8192
NEW_MODEL = 'gpt-5.5 "quoted" \u00e9'


def test_one(data: bytes) -> None:
    try:
        parsed = parse(data, MODELS, MAX_BODY)
    except NotRoutable as e:
        assert e.cause in {"oversize", "not_json", "model", "no_prompt"}
        return
    # What Envoy receives must be JSON that differs from the client's only in `model`.
    original, rewritten = json.loads(data), json.loads(parsed.with_model(NEW_MODEL))
    assert original["model"] in MODELS and rewritten["model"] == NEW_MODEL
    # compared as text: NaN (which json accepts) is not equal to itself
    assert json.dumps({**original, "model": NEW_MODEL}) == json.dumps(rewritten)
    try:
        query = query_from_proto(parsed.route_request("r", "t", ("tag",)), LIMITS)
    except RoutingError as e:
        assert e.code == "INVALID_ARGUMENT" and e.message
        return
    assert query.text.strip() and len(query.text.encode()) <= LIMITS.max_prompt_bytes


def seeds() -> list[bytes]:
    bodies = [
        {"model": "auto", "messages": [{"role": "user", "content": "what are your hours?"}]},
        {
            "model": "router",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "write a parser"}]},
                {"role": "assistant", "content": None},
            ],
            "temperature": 0.2,
        },
        {"model": "auto", "input": "summarise this", "instructions": "one line"},
        {"model": "auto", "input": [{"type": "message", "role": "user", "content": "hi"}]},
        {"model": "auto", "prompt": ["once", "upon"]},
        {"model": "gpt-4o", "prompt": "passes through"},
    ]
    return [json.dumps(b).encode() for b in bodies] + [b'{ "model" : "auto" , "prompt":"x" }']


if __name__ == "__main__":
    from fuzz.common import main

    main(test_one, seeds)
