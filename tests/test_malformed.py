"""Malformed request bodies: INVALID_ARGUMENT on every service, never UNKNOWN or INTERNAL,
and a bounded log (one summary line per interval, no traceback per request)."""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

import grpc
import pytest
from google.protobuf.message import DecodeError, Message
from grpc_health.v1 import health_pb2

from semroute.config import Config
from semroute.server.decoding import BadInputLog
from semroute.v1 import admin_pb2 as apb
from semroute.v1 import admin_pb2_grpc
from semroute.v1 import router_pb2 as pb

from .test_admin_support import AUTH, Bundles, bundles, running_app, status

__all__ = ["bundles"]

ROUTE = "/semroute.v1.RouterService/Route"
# Codes a well-formed but arbitrary request may get (RESOURCE_EXHAUSTED: admission when
# the many new prompts queue for the encoder on a busy machine); never UNKNOWN or INTERNAL.
ALLOWED = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}


def _seeds() -> list[bytes]:
    reqs = [
        pb.RouteRequest(prompt="what are your opening hours?", request_id="r1", tenant="t"),
        pb.RouteRequest(
            messages=[
                pb.ChatMessage(role="system", content="be brief"),
                pb.ChatMessage(role="user", content="write a python function to sort a list"),
            ],
            required_tags=["region:eu"],
            quality_preference=0.7,
        ),
        pb.RouteRequest(
            prompt="translate this paragraph into French",
            allowed_models=["gpt-5.5", "claude-haiku-4.5"],
            excluded_models=["mistral-small-3.2"],
            max_cost_usd=0.01,
            expected_output_tokens=300,
            preset=pb.PRESET_COST,
        ),
    ]
    return [r.SerializeToString() for r in reqs]


def mutate(rng: random.Random, body: bytes) -> bytes:
    """One to three random edits of `body`, or random bytes."""
    b = bytearray(body)
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(6)
        i = rng.randrange(len(b) + 1)
        if op == 0 and b:  # flip bits of one byte
            b[min(i, len(b) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1:  # truncate
            del b[i:]
        elif op == 2:  # insert random bytes
            b[i:i] = rng.randbytes(rng.randint(1, 8))
        elif op == 3 and b:  # a byte that breaks varints and UTF-8
            b[min(i, len(b) - 1)] = rng.choice((0xFF, 0x80, 0xC3, 0x0F, 0x07))
        elif op == 4:  # duplicate a slice
            j = rng.randrange(len(b) + 1)
            b[i:i] = b[min(i, j) : max(i, j)]
        else:
            return rng.randbytes(rng.randint(1, 64))
    return bytes(b)


def parses(cls: type[Message], body: bytes) -> bool:
    try:
        cls.FromString(body)
    except DecodeError:
        return False
    return True


def test_bad_input_log_is_one_line_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    bad = BadInputLog(interval_s=10.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="semroute.decoding"):
        for i in range(1000):  # 1000 bad bodies over 25 (fake) seconds
            now[0] = i * 0.025
            bad.record("/m", "DecodeError: x")
        bad.flush()
    lines = [r for r in caplog.records if r.name == "semroute.decoding"]
    # at t=0 (the first), t=10, t=20, and the flush of the rest
    assert bad.total == 1000 and bad.lines == len(lines) == 4
    assert sum(r.fields["count"] for r in lines) == 1000  # type: ignore[attr-defined]
    assert all(r.exc_info is None for r in lines)


async def test_mutated_bodies_get_invalid_argument_on_every_service(
    config: Config, encoder: Any, bundles: Bundles, caplog: pytest.LogCaptureFixture
) -> None:
    rng = random.Random(14)
    seeds = _seeds()
    route_bodies = [mutate(rng, rng.choice(seeds)) for _ in range(3000)]
    undecodable = sum(not parses(pb.RouteRequest, b) for b in route_bodies)
    assert 500 < undecodable < len(route_bodies)  # the corpus has both kinds
    async with running_app(config, encoder, bundles.a) as (app, target):
        app.bad_input.interval_s = 1e9  # one line for the whole test, whatever its duration
        with caplog.at_level(logging.INFO):
            async with grpc.aio.insecure_channel(target) as ch:
                route = ch.unary_unary(ROUTE)
                limit = asyncio.Semaphore(8)

                async def send(call: Any, body: bytes, **kw: Any) -> tuple[Any, str]:
                    async with limit:
                        try:
                            await call(body, timeout=30, **kw)
                            return grpc.StatusCode.OK, ""
                        except grpc.aio.AioRpcError as e:
                            return e.code(), e.details() or ""

                results = await asyncio.gather(*(send(route, b) for b in route_bodies))
                for body, (code, details) in zip(route_bodies, results, strict=True):
                    if parses(pb.RouteRequest, body):
                        assert code in ALLOWED and "does not parse" not in details, code
                    else:  # every undecodable body, and only those, is refused as such
                        assert code == grpc.StatusCode.INVALID_ARGUMENT, (body, code)
                        assert "does not parse" in details and len(details) < 300

                # Every other RPC, admin included: a body that does not parse is refused.
                others: list[tuple[str, type[Message], tuple[Any, ...]]] = [
                    ("/semroute.v1.RouterService/LookupResponse", pb.LookupResponseRequest, ()),
                    ("/semroute.v1.RouterService/StoreResponse", pb.StoreResponseRequest, ()),
                    ("/grpc.health.v1.Health/Check", health_pb2.HealthCheckRequest, ()),
                    *(
                        (f"/semroute.v1.AdminService/{m}", getattr(apb, f"{m}Request"), AUTH)
                        for m in (
                            "LoadIndex",
                            "ActivateIndex",
                            "ListIndexes",
                            "Rollback",
                            "GetStatus",
                            "StopShadow",
                            "UnloadIndex",
                        )
                    ),
                ]
                bad_bodies = [b for b in route_bodies if not parses(pb.RouteRequest, b)][:400]
                sent_bad = undecodable + 2  # Route's, and Watch's and reflection's below
                for method, cls, md in others:
                    call = ch.unary_unary(method)
                    mine = [b for b in bad_bodies if not parses(cls, b)][:40]
                    assert mine, method
                    sent_bad += len(mine)
                    got = await asyncio.gather(*(send(call, b, metadata=md) for b in mine))
                    assert {c for c, _ in got} == {grpc.StatusCode.INVALID_ARGUMENT}, method
                    assert all("does not parse" in d for _, d in got), method
                watch = ch.unary_stream("/grpc.health.v1.Health/Watch")
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    async for _ in watch(b"\xff\xff", timeout=10):
                        pass
                assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                reflect = ch.stream_stream(
                    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
                )
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    async for _ in reflect(iter([b"\xff\xff"]), timeout=10):
                        pass
                assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT

                # Still serving, and counting.
                ok = await ch.unary_unary(ROUTE)(seeds[0], timeout=10)
                assert pb.RouteDecision.FromString(ok).model
                st = await status(admin_pb2_grpc.AdminServiceStub(ch))
        assert st.malformed_requests == app.bad_input.total == sent_bad
    records = caplog.records
    assert not [r for r in records if r.exc_info is not None]
    assert not [r for r in records if r.levelno >= logging.ERROR]
    summary = [r for r in records if r.name == "semroute.decoding"]
    assert len(summary) <= 2  # the first line, then the flush at shutdown
    assert sum(len(r.getMessage()) for r in records) < 20_000
