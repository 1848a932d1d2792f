"""Server lifecycle in-process: health NOT_SERVING → SERVING → NOT_SERVING, and draining."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from semroute.config import Config
from semroute.server import app as app_module
from semroute.server.app import App
from semroute.v1 import router_pb2 as pb
from semroute.v1 import router_pb2_grpc

from .conftest import REPO, count_encodes, free_port, tiers_until_each_worker_encoded, wait_serving

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
    """stop(): health turns NOT_SERVING, then a call already waiting for the encoder
    finishes during the grace period with its decision."""
    app = App(config, "127.0.0.1", free_port(), index_dir=index_dir)
    monkeypatch.setattr(app_module, "load_router", lambda cfg, idx=None: router)
    port = await app.start()
    await app.load()
    assert app.server is not None and app.pipeline.batcher is not None
    entered, release = threading.Event(), threading.Event()
    real_encode = app.pipeline.batcher._encode

    def held_encode(texts):  # type: ignore[no-untyped-def]
        entered.set()
        assert release.wait(30)
        return real_encode(texts)

    monkeypatch.setattr(app.pipeline.batcher, "_encode", held_encode)
    draining = asyncio.Event()
    real_stop = app.server.stop

    async def observed_stop(grace: float | None) -> None:
        draining.set()  # the server stops accepting calls and starts its grace period
        await real_stop(grace)

    monkeypatch.setattr(app.server, "stop", observed_stop)
    loop = asyncio.get_running_loop()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
        watch = health_pb2_grpc.HealthStub(ch).Watch(health_pb2.HealthCheckRequest())
        assert (await watch.read()).status == SERVING
        call = router_pb2_grpc.RouterServiceStub(ch).Route(
            pb.RouteRequest(prompt="summarize this report for me please"), timeout=30
        )
        assert await loop.run_in_executor(None, entered.wait, 30)  # in flight, in the encoder
        stopping = asyncio.ensure_future(app.stop(grace=20))
        assert (await asyncio.wait_for(watch.read(), 30)).status == NOT_SERVING
        watch.cancel()
        await asyncio.wait_for(draining.wait(), 30)
        assert not stopping.done()
        release.set()
        d = await call
        assert d.route == "summarization" and d.model
        await stopping


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


class _HeldEncoder:
    """The batcher's encoder, held at a gate; 50 ms per text on the batcher's injected clock."""

    def __init__(self, real) -> None:  # type: ignore[no-untyped-def]
        self.real = real
        self.now = 0
        self.gate = threading.Event()
        self.gate.set()

    def clock(self) -> int:
        return self.now

    def __call__(self, texts):  # type: ignore[no-untyped-def]
        self.now += 50_000_000 * len(texts)
        assert self.gate.wait(30)
        return self.real(texts)


async def _overload_app(
    config: Config, index_dir: Path, router, monkeypatch: pytest.MonkeyPatch, **limits: Any
) -> tuple[App, _HeldEncoder]:  # type: ignore[no-untyped-def]
    server = {k: v for k, v in limits.items() if k == "max_concurrent_requests"}
    batching = {k: v for k, v in limits.items() if k != "max_concurrent_requests"}
    cfg = config.model_copy(
        update={
            "server": config.server.model_copy(update=server),
            "batching": config.batching.model_copy(update={"max_batch": 1, **batching}),
        }
    )
    app = App(cfg, "127.0.0.1", free_port(), index_dir=index_dir)
    monkeypatch.setattr(app_module, "load_router", lambda c, idx=None: router)
    await app.start()
    await app.load()
    batcher = app.pipeline.batcher
    assert batcher is not None
    held = _HeldEncoder(batcher._encode)
    monkeypatch.setattr(batcher, "_encode", held)
    monkeypatch.setattr(batcher, "clock", held.clock)
    return app, held


async def _hold_then_overflow(app: App, held: _HeldEncoder, admitted: int) -> list[object]:
    """Calibrate (one request), hold the encoder, send `admitted` requests and wait until
    they all wait for it, then send one more: its result (an error, if refused) is first."""
    batcher = app.pipeline.batcher
    assert batcher is not None
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as ch:
        stub = router_pb2_grpc.RouterServiceStub(ch)
        await stub.Route(pb.RouteRequest(prompt="calibrate the encoder speed"), timeout=10)
        held.gate.clear()
        calls = [
            asyncio.ensure_future(
                stub.Route(pb.RouteRequest(prompt=f"unique prompt number {i} about taxes"))
            )
            for i in range(admitted)
        ]
        for _ in range(3000):  # until all of them wait for the encoder
            if batcher.queued == admitted:
                break
            await asyncio.sleep(0.01)
        assert batcher.queued == admitted
        try:
            extra: object = await stub.Route(
                pb.RouteRequest(prompt="one more unique prompt, about pensions"), timeout=10
            )
        except grpc.aio.AioRpcError as e:
            extra = e
        held.gate.set()
        served = await asyncio.gather(*calls)
    assert all(d.model for d in served)
    return [extra, *served]


async def test_past_max_concurrent_requests_is_refused(
    config: Config,
    index_dir: Path,
    router,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    app, held = await _overload_app(
        config, index_dir, router, monkeypatch, max_concurrent_requests=3, max_queue_wait_ms=0
    )
    try:
        extra = (await _hold_then_overflow(app, held, admitted=3))[0]
    finally:
        await app.stop(grace=5)
    assert isinstance(extra, grpc.aio.AioRpcError)
    assert extra.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "over 3 concurrent requests" in extra.details()


async def test_past_batching_max_queue_is_refused(
    config: Config,
    index_dir: Path,
    router,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    app, held = await _overload_app(
        config, index_dir, router, monkeypatch, max_queue=3, max_queue_wait_ms=0
    )
    try:
        extra = (await _hold_then_overflow(app, held, admitted=3))[0]
    finally:
        await app.stop(grace=5)
    assert isinstance(extra, grpc.aio.AioRpcError)
    assert extra.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "3 requests are waiting for the encoder" in extra.details()


async def test_past_max_queue_wait_ms_is_refused(
    config: Config,
    index_dir: Path,
    router,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    """Requests that would wait past batching.max_queue_wait_ms are refused, not queued:
    at 50 ms per text over 2 threads, the 5th text waiting is 125 ms > 100 ms."""
    app, held = await _overload_app(config, index_dir, router, monkeypatch, max_queue_wait_ms=100)
    try:
        extra = (await _hold_then_overflow(app, held, admitted=5))[0]
    finally:
        await app.stop(grace=5)
    assert isinstance(extra, grpc.aio.AioRpcError)
    assert extra.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "max_queue_wait_ms 100" in extra.details()
    # Server pushback: retry once the queue ahead has drained (its expected wait, over
    # the 100 ms budget), not in a spin.
    pushback = dict(extra.trailing_metadata() or ())["grpc-retry-pushback-ms"]
    assert int(pushback) >= 100


def test_sigterm_drains_a_serve_process(index_dir: Path, tmp_path: Path) -> None:
    """A real `semroute serve` process: on SIGTERM health turns NOT_SERVING, the call in
    flight (held up to 1 s by the batcher's max_wait) is answered, and the exit code is 0."""
    cfg = tmp_path / "slow-batch.yaml"
    # The fast tier off: the call must wait in the batcher, and the cascade's static head
    # would answer this prompt at once. max_batch above 1: a run of one is full at once and
    # would not wait out max_wait_us.
    cfg.write_text(
        f"extends: {REPO / 'configs' / 'default.yaml'}\n"
        "batching: {max_batch: 8, max_wait_us: 1000000}\n"
        "fast_tier: {enabled: false}\n"
    )
    port = free_port()
    target = f"127.0.0.1:{port}"
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "semroute", "serve", "--config", str(cfg),
             "--host", "127.0.0.1", "--port", str(port), "--index", str(index_dir)],
            stdout=out, stderr=subprocess.STDOUT, cwd=REPO,
        )  # fmt: skip
    try:
        wait_serving(target, proc=proc)
        with grpc.insecure_channel(target) as ch:
            health = health_pb2_grpc.HealthStub(ch)
            watch = health.Watch(health_pb2.HealthCheckRequest(), timeout=60)
            assert next(watch).status == SERVING
            call = router_pb2_grpc.RouterServiceStub(ch).Route.future(
                pb.RouteRequest(prompt="summarize this report for me please"), timeout=30
            )
            # A round trip sent after the call on the same connection: the server has it.
            health.Check(health_pb2.HealthCheckRequest(), timeout=10)
            assert not call.done()
            proc.send_signal(signal.SIGTERM)
            assert next(watch).status == NOT_SERVING
            watch.cancel()
            d = call.result()
            assert d.route == "summarization" and d.model
        assert proc.wait(timeout=30) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_workers_share_the_port_with_so_reuseport(index_dir: Path, tmp_path: Path) -> None:
    """`--workers 2`: two processes accept on one port. Each has its own decision cache, so
    the same prompt over fresh connections is decided by the encoder once per process."""
    port = free_port()
    target = f"127.0.0.1:{port}"
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "semroute", "serve", "--workers", "2",
             "--host", "127.0.0.1", "--port", str(port), "--index", str(index_dir)],
            stdout=out, stderr=subprocess.STDOUT, cwd=REPO,
        )  # fmt: skip
    try:
        wait_serving(target, timeout=120, proc=proc)
        tiers = tiers_until_each_worker_encoded(target)
        assert tiers.count(pb.TIER_ENCODER) == 2, tiers
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
