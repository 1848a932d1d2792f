"""Server lifecycle in-process: health NOT_SERVING → SERVING → NOT_SERVING, and draining."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from semroute.config import Config
from semroute.server import app as app_module
from semroute.server.app import App
from semroute.v1 import router_pb2 as pb
from semroute.v1 import router_pb2_grpc

from .conftest import count_encodes, free_port

NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVING = health_pb2.HealthCheckResponse.SERVING


async def _health(target: str) -> int:
    async with grpc.aio.insecure_channel(target) as ch:
        r = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
        return r.status


async def test_health_transitions_and_unavailable_while_loading(
    config: Config,
    index_dir: Path,
    router,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    gate = threading.Event()

    def slow_load(cfg: Config, idx: Path | None = None):  # type: ignore[no-untyped-def]
        assert gate.wait(30)
        return router

    monkeypatch.setattr(app_module, "load_router", slow_load)
    app = App(config, "127.0.0.1", free_port(), index_dir=index_dir)
    port = await app.start()
    target = f"127.0.0.1:{port}"
    load = asyncio.ensure_future(app.load())
    try:
        assert await _health(target) == NOT_SERVING
        async with grpc.aio.insecure_channel(target) as ch:
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await router_pb2_grpc.RouterServiceStub(ch).Route(
                    pb.RouteRequest(prompt="hi there")
                )
            assert e.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "SERVING" in e.value.details()
            gate.set()
            await asyncio.wait_for(load, 30)
            assert await _health(target) == SERVING
            d = await router_pb2_grpc.RouterServiceStub(ch).Route(
                pb.RouteRequest(prompt="what are your opening hours?")
            )
            assert d.model
    finally:
        gate.set()
        await app.stop(grace=1)
    with pytest.raises(grpc.aio.AioRpcError):
        await _health(target)


async def test_failed_load_is_reported(config: Config, tmp_path: Path) -> None:
    app = App(config, "127.0.0.1", free_port(), index_dir=tmp_path / "missing")
    await app.start()
    try:
        with pytest.raises(Exception, match="does not exist"):
            await app.load()
        assert app.load_error is not None
        assert await _health(f"127.0.0.1:{app.port}") == NOT_SERVING
    finally:
        await app.stop(grace=0)


async def test_graceful_stop_drains_in_flight_calls(
    config: Config,
    index_dir: Path,
    router,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    app = App(config, "127.0.0.1", free_port(), index_dir=index_dir)
    monkeypatch.setattr(app_module, "load_router", lambda cfg, idx=None: router)
    port = await app.start()
    await app.load()
    release = threading.Event()
    real_encode = router.encode

    def slow_encode(text: str):  # type: ignore[no-untyped-def]
        release.wait(10)
        return real_encode(text)

    monkeypatch.setattr(router, "encode", slow_encode)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
        call = router_pb2_grpc.RouterServiceStub(ch).Route(
            pb.RouteRequest(prompt="summarize this report for me please"), timeout=20
        )
        await asyncio.sleep(0.3)  # the call is now waiting in the encoder
        stopping = asyncio.ensure_future(app.stop(grace=10))
        await asyncio.sleep(0.3)
        assert await _health_or_none(port) in (NOT_SERVING, None)
        release.set()
        d = await call
        assert d.route == "summarization"
        await stopping


async def _health_or_none(port: int) -> int | None:
    try:
        return await _health(f"127.0.0.1:{port}")
    except grpc.aio.AioRpcError:
        return None


async def test_identical_concurrent_requests_run_the_encoder_once(
    config: Config,
    index_dir: Path,
    router,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    app = App(config, "127.0.0.1", free_port(), index_dir=index_dir)
    monkeypatch.setattr(app_module, "load_router", lambda cfg, idx=None: router)
    encoded = count_encodes(monkeypatch, router)
    port = await app.start()
    await app.load()
    encoded.clear()  # the warm-up call
    prompt = "estimate the carbon footprint of shipping a parcel from Lyon to Oslo"
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = router_pb2_grpc.RouterServiceStub(ch)
            out = await asyncio.gather(
                *(stub.Route(pb.RouteRequest(prompt=prompt, request_id=str(i))) for i in range(8))
            )
    finally:
        await app.stop(grace=1)
    assert encoded == [prompt]
    assert {d.model for d in out} == {out[0].model}
    assert sorted(d.request_id for d in out) == [str(i) for i in range(8)]
    assert sum(d.tier == pb.TIER_CACHE for d in out) == 7


async def test_a_saturated_encoder_sheds_at_once_with_resource_exhausted(
    config: Config,
    index_dir: Path,
    router,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    """Requests that would wait past batching.max_queue_wait_ms are refused, not queued."""
    cfg = config.model_copy(
        update={"batching": config.batching.model_copy(update={"max_queue_wait_ms": 100})}
    )
    app = App(cfg, "127.0.0.1", free_port(), index_dir=index_dir)
    monkeypatch.setattr(app_module, "load_router", lambda c, idx=None: router)
    real_encode = router.encoder.encode

    def slow_encode(texts):  # type: ignore[no-untyped-def]
        threading.Event().wait(0.05 * len(texts))  # 50 ms per text
        return real_encode(texts)

    port = await app.start()
    await app.load()
    monkeypatch.setattr(app.servicer.batcher, "_encode", slow_encode)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = router_pb2_grpc.RouterServiceStub(ch)
            await stub.Route(pb.RouteRequest(prompt="calibrate the encoder speed"), timeout=10)
            calls = [
                stub.Route(pb.RouteRequest(prompt=f"unique prompt number {i} about taxes"))
                for i in range(40)
            ]
            results = await asyncio.gather(*calls, return_exceptions=True)
    finally:
        await app.stop(grace=5)
    shed = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    served = [r for r in results if isinstance(r, pb.RouteDecision)]
    assert shed and served and len(shed) + len(served) == 40
    assert {e.code() for e in shed} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
    assert "max_queue_wait_ms" in shed[0].details()
    # 40 × 50 ms over 2 threads would be 1 s of queue; the bound keeps it near 100 ms.
    assert len(served) <= 12
