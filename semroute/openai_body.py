"""OpenAI-style request bodies: what to route on, and the body with its `model` replaced.

Pure functions (no I/O), so the Envoy ext_proc adapter stays thin and this part can be
unit-tested and fuzzed on its own. Three body shapes are understood:

- chat completions: `messages` (content a string or a list of text parts);
- responses API: `input` (a string, or a list of message items) and `instructions`;
- completions: `prompt` (a string or a list of strings, routed as one text).

The rewrite replaces only the bytes of the top-level `model` value: every other byte of
the body (key order, spacing, number spellings, escapes) reaches the upstream as the
client sent it, so the rewrite can never change what the request means.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from semroute.v1 import router_pb2 as pb

# Roles RouteRequest validation accepts; other turns (e.g. the legacy "function") are dropped,
# since only user turns are routed on anyway.
ROLES = frozenset({"system", "user", "assistant", "tool", "developer"})
# Content part types that carry text (chat completions and the responses API).
TEXT_PARTS = frozenset({"text", "input_text", "output_text"})

_DECODER = json.JSONDecoder()
_WS = " \t\n\r"


class NotRoutable(ValueError):
    """A body the adapter passes through unchanged; `cause` names why (a counter key)."""

    def __init__(self, cause: str, detail: str = "") -> None:
        super().__init__(detail or cause)
        self.cause = cause


@dataclass(frozen=True, slots=True)
class ParsedBody:
    """A routable body: its messages (or prompt) and where its `model` value lies."""

    model: str
    # (role, text) turns, or one ("", prompt) entry for a completions prompt.
    messages: tuple[tuple[str, str], ...]
    prompt: str
    # Character span of the top-level `model` value in the decoded body text.
    model_span: tuple[int, int]
    text: str

    def route_request(
        self, request_id: str = "", tenant: str = "", tags: tuple[str, ...] = ()
    ) -> pb.RouteRequest:
        """The RouteRequest for this body (validation is left to the pipeline)."""
        req = pb.RouteRequest(request_id=request_id, tenant=tenant, required_tags=tags)
        if self.prompt:
            req.prompt = self.prompt
        else:
            req.messages.extend(pb.ChatMessage(role=r, content=c) for r, c in self.messages)
        return req

    def with_model(self, model: str) -> bytes:
        """The body, byte for byte, but for the `model` value set to `model`."""
        start, end = self.model_span
        return (self.text[:start] + json.dumps(model) + self.text[end:]).encode()


def parse(body: bytes, models: frozenset[str], max_bytes: int) -> ParsedBody:
    """The routable content of `body`, or NotRoutable with its cause:

    `oversize` (over `max_bytes`), `not_json` (not a UTF-8 JSON object, or `model`
    given twice), `model` (no string `model`, or one not in `models`), `no_prompt`
    (no text to route on).
    """
    if len(body) > max_bytes:
        raise NotRoutable("oversize", f"{len(body)} bytes > {max_bytes}")
    try:
        text = body.decode("utf-8")
        fields, spans = _top_level(text)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise NotRoutable("not_json", str(e)[:200]) from None
    model = fields.get("model")
    if not isinstance(model, str) or model not in models:
        raise NotRoutable("model")
    messages: tuple[tuple[str, str], ...] = ()
    prompt = ""
    if "messages" in fields:
        messages = _chat(fields["messages"])
    elif "input" in fields:
        messages = _responses_input(fields["input"], fields.get("instructions"))
    elif "prompt" in fields:
        prompt = _prompt(fields["prompt"])
    if not prompt.strip() and not any(r == "user" and c.strip() for r, c in messages):
        raise NotRoutable("no_prompt")
    return ParsedBody(model, messages, prompt, spans["model"], text)


def _top_level(text: str) -> tuple[dict[str, Any], dict[str, tuple[int, int]]]:
    """A JSON object's members and each value's span, from one pass of the stdlib parser.

    Raises ValueError for anything but exactly one object (trailing data included) and
    for a `model` key given twice (parsers disagree on which one wins).
    """
    i = _skip(text, 0)
    if not text.startswith("{", i):
        raise ValueError("body is not a JSON object")
    fields: dict[str, Any] = {}
    spans: dict[str, tuple[int, int]] = {}
    i = _skip(text, i + 1)
    if text.startswith("}", i):
        return fields, spans
    while True:
        if not text.startswith('"', i):
            raise ValueError(f"expected a key at {i}")
        key, i = json.decoder.scanstring(text, i + 1)  # type: ignore[attr-defined]
        i = _skip(text, i)
        if not text.startswith(":", i):
            raise ValueError(f"expected ':' at {i}")
        start = _skip(text, i + 1)
        value, end = _DECODER.raw_decode(text, start)
        if key == "model" and key in spans:
            raise ValueError("duplicate model key")
        fields[key], spans[key] = value, (start, end)
        i = _skip(text, end)
        if text.startswith(",", i):
            i = _skip(text, i + 1)
        elif text.startswith("}", i):
            if _skip(text, i + 1) != len(text):
                raise ValueError("data after the JSON object")
            return fields, spans
        else:
            raise ValueError(f"expected ',' or '}}' at {i}")


def _skip(text: str, i: int) -> int:
    while i < len(text) and text[i] in _WS:
        i += 1
    return i


def _one_of(value: Any, allowed: frozenset[str]) -> bool:
    """Membership that a JSON list or object (unhashable) answers with False, not TypeError."""
    return isinstance(value, str) and value in allowed


def _content(content: Any) -> str:
    """A message's text: a string, or the text parts of a content list joined by lines."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = (
            p["text"]
            for p in content
            if isinstance(p, dict)
            and _one_of(p.get("type"), TEXT_PARTS)
            and isinstance(p.get("text"), str)
        )
        return "\n".join(parts)
    return ""


def _turns(items: list[Any]) -> tuple[tuple[str, str], ...]:
    return tuple(
        (m["role"], _content(m.get("content")))
        for m in items
        if isinstance(m, dict) and _one_of(m.get("role"), ROLES)
    )


def _chat(messages: Any) -> tuple[tuple[str, str], ...]:
    return _turns(messages) if isinstance(messages, list) else ()


def _responses_input(value: Any, instructions: Any) -> tuple[tuple[str, str], ...]:
    """Responses API `input`: a string is one user turn; a list keeps its message items
    (items of other types, such as function calls, carry no routable text)."""
    system = (("system", instructions),) if isinstance(instructions, str) and instructions else ()
    if isinstance(value, str):
        return (*system, ("user", value))
    if isinstance(value, list):
        items = [v for v in value if isinstance(v, dict) and v.get("type", "message") == "message"]
        return (*system, *_turns(items))
    return system


def _prompt(value: Any) -> str:
    """Completions `prompt`: a string, or a batch of strings routed as one text (token-id
    prompts carry no text and are not routed)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(p, str) for p in value):
        return "\n".join(value)
    return ""
