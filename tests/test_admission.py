"""Admission under load: a request whose deadline ends before its expected encoder wait is
refused at once (RESOURCE_EXHAUSTED, no encoder work), and the transport bounds the calls
in flight so excess calls are refused instead of queued unseen inside gRPC."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from semroute.config import Config
from semroute.encoder.delay import DelayedEncoder
from semroute.server.app import transport_limit
from semroute.v1 import router_pb2 as pb

from .test_admin_support import Bundles, bundles, running_app, stubs

__all__ = ["bundles"]

# Long enough that a loopback call's own transit never comes close to it.
PASS_S = 1.0


async def test_a_deadline_shorter_than_the_expected_wait_is_refused_at_once(
    config: Config, encoder: Any, bundles: Bundles
) -> None:
    slow = DelayedEncoder(encoder, PASS_S)
    async with running_app(config, slow, bundles.a) as (app, target), stubs(target) as (_, rs):
        batcher = app.pipeline.batcher
        assert batcher is not None
        # The first encoder pass measures the encoder's speed (>= PASS_S per text).
        await rs.Route(pb.RouteRequest(prompt="write a haiku about the sea"), timeout=30)
        texts = batcher.stats.texts
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await rs.Route(
                pb.RouteRequest(prompt="write a limerick about a cat"), timeout=PASS_S / 2
            )
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "deadline" in (e.value.details() or "")
        assert batcher.stats.texts == texts  # refused before any encoder work
        # A deadline long enough, or none, is served; so is a cache hit with a short one.
        d = await rs.Route(pb.RouteRequest(prompt="write a sonnet about rain"), timeout=30)
        assert d.model
        d = await rs.Route(pb.RouteRequest(prompt="write a sonnet about rain"), timeout=PASS_S / 2)
        assert d.tier == pb.TIER_CACHE


async def test_calls_past_the_transport_limit_are_refused_not_queued(
    config: Config, encoder: Any, bundles: Bundles
) -> None:
    """Long-lived health watches fill the transport's allowance: a Route call past it is
    refused by gRPC itself with RESOURCE_EXHAUSTED, before any handler runs."""
    cfg = config.model_copy(
        update={"server": config.server.model_copy(update={"max_concurrent_requests": 4})}
    )
    async with running_app(cfg, encoder, bundles.a) as (app, target), stubs(target) as (_, rs):
        allowance = transport_limit(cfg.server)
        assert allowance < 100  # bounded by the config, not gRPC's unbounded default
        async with grpc.aio.insecure_channel(target) as ch:
            health = health_pb2_grpc.HealthStub(ch)
            watches = [health.Watch(health_pb2.HealthCheckRequest()) for _ in range(allowance)]
            for w in watches:  # each is running in its handler once it has sent a status
                first = await w.read()
                assert first.status == health_pb2.HealthCheckResponse.SERVING
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await rs.Route(pb.RouteRequest(prompt="hi there!"), timeout=30)
            assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert app.pipeline.batcher is not None
            watches.pop().cancel()
            for _ in range(200):  # the slot frees when the cancelled handler finishes
                try:
                    d = await rs.Route(pb.RouteRequest(prompt="hi there!"), timeout=30)
                    break
                except grpc.aio.AioRpcError as err:
                    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                    await asyncio.sleep(0.01)
            else:
                raise AssertionError("the transport never admitted a call again")
            assert d.model
            for w in watches:
                w.cancel()
