"""RouteBatch and RouteStream: per-item status, order, caching shared with Route,
cancellation and the stream's bounded window."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from semroute.config import Config
from semroute.server import app as app_module
from semroute.server.app import App
from semroute.v1 import router_pb2 as pb
from semroute.v1 import router_pb2_grpc

from .conftest import free_port

INVALID = grpc.StatusCode.INVALID_ARGUMENT.value[0]
STREAM = "/semroute.v1.RouterService/RouteStream"


def _unique(text: str) -> str:
    """A prompt no cache has seen (the caches would otherwise answer it)."""
    return f"{text} (case {uuid.uuid4().hex[:8]})"


def test_batch_items_keep_request_order_and_their_own_status(
    stub: router_pb2_grpc.RouterServiceStub,
) -> None:
    requests = [
        pb.RouteRequest(prompt=_unique("write a python function that merges two sorted lists")),
        pb.RouteRequest(prompt="   "),  # blank: this item alone is refused
        pb.RouteRequest(prompt="hi there!", request_id="mine-2"),
        pb.RouteRequest(prompt="translate 'good morning' to French", allowed_models=["no-such"]),
        pb.RouteRequest(prompt=_unique("prove that the square root of 2 is irrational")),
    ]
    out = stub.RouteBatch(pb.RouteBatchRequest(requests=requests), timeout=30)
    assert [i.sequence for i in out.items] == [0, 1, 2, 3, 4]
    kinds = [i.WhichOneof("result") for i in out.items]
    assert kinds == ["decision", "error", "decision", "error", "decision"]
    assert out.items[1].error.code == INVALID and "blank" in out.items[1].error.message
    assert out.items[3].error.code == INVALID and "no-such" in out.items[3].error.message
    assert out.items[2].request_id == out.items[2].decision.request_id == "mine-2"
    for item in out.items:
        assert item.request_id  # assigned when the request had none
        if item.HasField("decision"):
            assert item.decision.request_id == item.request_id
    # Each decision is the one Route gives the same request.
    for req, item in zip(requests, out.items, strict=True):
        if item.HasField("decision"):
            alone = stub.Route(req, timeout=30)
            assert (alone.model, alone.route) == (item.decision.model, item.decision.route)


def test_batch_shares_the_caches_with_route(stub: router_pb2_grpc.RouterServiceStub) -> None:
    req = pb.RouteRequest(prompt=_unique("summarize the attached quarterly report"))
    first = stub.Route(req, timeout=30)
    assert first.tier != pb.TIER_CACHE
    twice = pb.RouteBatchRequest(requests=[req, req])
    out = stub.RouteBatch(twice, timeout=30)
    for item in out.items:
        assert item.decision.tier == pb.TIER_CACHE
        assert item.decision.model == first.model
    # A batch's own decisions are cached for Route too.
    fresh = pb.RouteRequest(prompt=_unique("classify this ticket as bug or feature"))
    decided = stub.RouteBatch(pb.RouteBatchRequest(requests=[fresh]), timeout=30).items[0]
    assert decided.decision.tier != pb.TIER_CACHE
    assert stub.Route(fresh, timeout=30).tier == pb.TIER_CACHE


def test_an_oversize_batch_is_refused_whole(stub: router_pb2_grpc.RouterServiceStub) -> None:
    big = pb.RouteBatchRequest(requests=[pb.RouteRequest(prompt="hi")] * 257)
    with pytest.raises(grpc.RpcError) as e:
        stub.RouteBatch(big, timeout=30)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "max_batch_items" in e.value.details()
    assert stub.RouteBatch(pb.RouteBatchRequest(), timeout=30).items == []


def test_stream_pairs_every_result_with_its_request(server: str) -> None:
    prompts = [_unique("debug this stack trace: KeyError in handler"), "hi!", "hi!"]
    wire = [
        pb.RouteRequest(prompt=p, request_id=f"r{i}").SerializeToString()
        for i, p in enumerate(prompts)
    ]
    wire.insert(1, b"\xff\xff not a protobuf")  # a malformed item: its own error only
    with grpc.insecure_channel(server) as ch:
        call = ch.stream_stream(STREAM, request_serializer=None, response_deserializer=None)
        raw = list(call(iter(wire), timeout=30))
    items = sorted((pb.RouteItem.FromString(r) for r in raw), key=lambda i: i.sequence)
    assert [i.sequence for i in items] == [0, 1, 2, 3]
    assert items[1].error.code == INVALID and "does not parse" in items[1].error.message
    assert [items[k].request_id for k in (0, 2, 3)] == ["r0", "r1", "r2"]
    assert all(items[k].decision.model for k in (0, 2, 3))
    # The repeat is answered from the cache the first one filled (or the same rule).
    assert items[3].decision.model == items[2].decision.model


@pytest.fixture
async def held_app(config: Config, index_dir: Path, router, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """An in-process server whose encoder waits for `release` (set by the test), with a
    stream window of 2, and the concurrency the pipeline saw at most."""
    cfg = config.model_copy(
        update={"server": config.server.model_copy(update={"stream_window": 2})}
    )
    app = App(cfg, "127.0.0.1", free_port(), index_dir=index_dir)
    monkeypatch.setattr(app_module, "load_router", lambda c, i=None: router)
    await app.start()
    await app.load()
    assert app.pipeline.batcher is not None
    entered, release = threading.Event(), threading.Event()
    real_encode = app.pipeline.batcher._encode

    def held_encode(texts):  # type: ignore[no-untyped-def]
        entered.set()
        assert release.wait(30)
        return real_encode(texts)

    monkeypatch.setattr(app.pipeline.batcher, "_encode", held_encode)
    seen = {"now": 0, "max": 0}
    real_decide = app.pipeline.decide_uncached

    async def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
        seen["now"] += 1
        seen["max"] = max(seen["max"], seen["now"])
        try:
            return await real_decide(*args, **kwargs)
        finally:
            seen["now"] -= 1

    monkeypatch.setattr(app.pipeline, "decide_uncached", counted)
    try:
        yield app, entered, release, seen
    finally:
        release.set()
        await app.stop(grace=1)


async def _requests(
    items: list[pb.RouteRequest], gate: asyncio.Event
) -> AsyncIterator[pb.RouteRequest]:
    for r in items:
        yield r
    await gate.wait()  # keep the stream open until the test is done reading


async def _until(condition, tries: int = 1000) -> bool:  # type: ignore[no-untyped-def]
    """Poll `condition` on the loop (bounded: `tries` x 10 ms); whether it came true."""
    for _ in range(tries):
        if condition():
            return True
        await asyncio.sleep(0.01)
    return bool(condition())


async def test_a_hit_is_not_held_behind_a_miss(held_app) -> None:  # type: ignore[no-untyped-def]
    app, entered, release, _ = held_app
    loop = asyncio.get_running_loop()
    hot = pb.RouteRequest(prompt="hi there, how are you?")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as ch:
        stub = router_pb2_grpc.RouterServiceStub(ch)
        release.set()
        await stub.Route(hot, timeout=30)  # now cached
        release.clear()
        entered.clear()
        done = asyncio.Event()
        miss = pb.RouteRequest(prompt=_unique("refactor this java class to use streams"))
        call = stub.RouteStream(_requests([miss, hot], done), timeout=30)
        assert await loop.run_in_executor(None, entered.wait, 30)  # the miss is in the encoder
        first = await call.read()
        assert first.sequence == 1 and first.decision.tier == pb.TIER_CACHE
        release.set()
        second = await call.read()
        assert second.sequence == 0 and second.decision.model
        done.set()
        assert await call.read() == grpc.aio.EOF


async def test_the_stream_window_bounds_what_is_in_flight(held_app) -> None:  # type: ignore[no-untyped-def]
    app, entered, release, seen = held_app
    loop = asyncio.get_running_loop()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as ch:
        stub = router_pb2_grpc.RouterServiceStub(ch)
        done = asyncio.Event()
        misses = [pb.RouteRequest(prompt=_unique(f"write a haiku about {w}")) for w in "abcde"]
        call = stub.RouteStream(_requests(misses, done), timeout=30)
        assert await loop.run_in_executor(None, entered.wait, 30)
        assert await _until(lambda: seen["now"] >= 2)
        for _ in range(20):  # give the reader every chance to read past the window
            await asyncio.sleep(0.01)
        assert seen["now"] == 2  # the window: the other three were not read yet
        release.set()
        got = [await call.read() for _ in misses]
        done.set()
    assert sorted(i.sequence for i in got) == [0, 1, 2, 3, 4]
    assert all(i.decision.model for i in got)
    assert seen["max"] == 2


async def test_a_cancelled_stream_leaves_nothing_running(held_app) -> None:  # type: ignore[no-untyped-def]
    app, entered, release, seen = held_app
    loop = asyncio.get_running_loop()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as ch:
        stub = router_pb2_grpc.RouterServiceStub(ch)
        done = asyncio.Event()
        misses = [pb.RouteRequest(prompt=_unique(f"explain {w} in detail")) for w in "xyz"]
        call = stub.RouteStream(_requests(misses, done), timeout=30)
        assert await loop.run_in_executor(None, entered.wait, 30)
        assert await _until(lambda: seen["now"] == 2)
        call.cancel()
        assert await _until(lambda: seen["now"] == 0)  # the server noticed the cancellation
        assert app.pipeline._inflight == 0
        release.set()
        # The server still serves.
        d = await stub.Route(pb.RouteRequest(prompt=_unique("what is 2+2?")), timeout=30)
        assert d.model
