"""Privacy: prompt text is never logged by default (decision log lines carry a keyed digest;
an internal error's message has the prompt replaced), `server.redact_prompts: false` puts it
back in decision log lines, and admin tokens are compared in constant time."""

from __future__ import annotations

import logging
from typing import Any

import grpc
import pytest

from semroute.admin import auth as auth_module
from semroute.config import Config
from semroute.logs import JsonFormatter
from semroute.v1 import admin_pb2 as apb
from semroute.v1 import router_pb2 as pb

from .test_admin_support import AUTH, READ_TOKEN, TOKEN, Bundles, bundles, running_app, stubs

__all__ = ["bundles"]

SECRET = "my card number is 4111-1111-1111-1111, what should I buy"


def _logged(caplog: pytest.LogCaptureFixture) -> str:
    fmt = JsonFormatter()
    return "\n".join(fmt.format(r) for r in caplog.records)


async def _route_and_fail(app: Any, rs: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    d = await rs.Route(pb.RouteRequest(prompt=SECRET, request_id="privacy-1"))
    assert d.model
    router = app.pipeline.router

    def broken_plan(query: Any, state: Any) -> Any:
        raise RuntimeError(f"cannot plan {query.text!r}")

    monkeypatch.setattr(router, "plan", broken_plan)
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await rs.Route(pb.RouteRequest(prompt=SECRET + " today?", request_id="privacy-2"))
    assert e.value.code() == grpc.StatusCode.INTERNAL
    monkeypatch.undo()


async def test_prompts_are_not_logged_by_default(
    config: Config,
    encoder: Any,
    bundles: Bundles,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert config.server.redact_prompts
    with caplog.at_level(logging.DEBUG):
        async with (
            running_app(config, encoder, bundles.a) as (app, target),
            stubs(target) as (
                _,
                rs,
            ),
        ):
            await _route_and_fail(app, rs, monkeypatch)
    text = _logged(caplog)
    assert '"msg": "decision"' in text and "prompt_digest" in text
    assert '"msg": "route failed"' in text and "[redacted prompt]" in text
    assert "4111" not in text and "card number" not in text


async def test_redaction_off_logs_prompts_in_decision_lines(
    config: Config,
    encoder: Any,
    bundles: Bundles,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cfg = config.model_copy(
        update={"server": config.server.model_copy(update={"redact_prompts": False})}
    )
    with caplog.at_level(logging.DEBUG):
        async with (
            running_app(cfg, encoder, bundles.a) as (app, target),
            stubs(target) as (
                _,
                rs,
            ),
        ):
            await _route_and_fail(app, rs, monkeypatch)
    decisions = [r for r in caplog.records if r.getMessage() == "decision"]
    assert any(getattr(r, "fields", {}).get("prompt") == SECRET for r in decisions)


async def test_admin_tokens_are_compared_in_constant_time(
    config: Config, encoder: Any, bundles: Bundles, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every check compares fixed-length digests with hmac.compare_digest, and always
    compares against both tokens, whatever the guess."""
    calls: list[tuple[int, int]] = []
    real = auth_module.hmac.compare_digest

    def recording(a: bytes, b: bytes) -> bool:
        calls.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(auth_module.hmac, "compare_digest", recording)
    env = {"SEMROUTE_ADMIN_TOKEN": TOKEN, "SEMROUTE_ADMIN_READ_TOKEN": READ_TOKEN}
    async with (
        running_app(config, encoder, bundles.a, env=env) as (_, target),
        stubs(target) as (
            adm,
            _,
        ),
    ):
        guesses = [TOKEN, READ_TOKEN, "x", TOKEN[:-1], TOKEN + "x", "y" * 200]
        for guess in guesses:
            md = (("authorization", f"Bearer {guess}"),)
            try:
                await adm.ListIndexes(apb.ListIndexesRequest(), metadata=md)
            except grpc.aio.AioRpcError as e:
                assert e.code() == grpc.StatusCode.UNAUTHENTICATED
                assert guess not in (TOKEN, READ_TOKEN)
        await adm.ListIndexes(apb.ListIndexesRequest(), metadata=AUTH)
    assert len(calls) == 2 * (len(guesses) + 1)
    assert set(calls) == {(32, 32)}
