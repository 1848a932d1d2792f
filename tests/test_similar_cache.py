"""Similar-prompt cache, end to end in-process over gRPC with the real encoders:
a lightly edited repeat reuses the decision without the encoder, anything else does not."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from semroute.config import CacheSpec, Config
from semroute.server import app as app_module
from semroute.server.app import App
from semroute.v1 import router_pb2 as pb
from semroute.v1 import router_pb2_grpc

from .conftest import count_encodes, free_port

PROMPT = "Write a Python function that merges two sorted lists into one sorted list"


def with_similar(config: Config, **spec) -> Config:  # type: ignore[no-untyped-def]
    similar = config.cache.similar.model_copy(update={"enabled": True, **spec})
    return config.model_copy(update={"cache": config.cache.model_copy(update={"similar": similar})})


async def test_edited_repeats_reuse_the_decision_and_nothing_else_does(
    config: Config, index_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The similar cache alone: with the cascade's fast tier on, the static route head would
    # answer these prompts before the encoder, and encoder calls are what this test counts
    # (test_the_cascade_reuses_the_probes_static_embedding covers the two together).
    cfg = with_similar(config)
    cfg = cfg.model_copy(update={"fast_tier": cfg.fast_tier.model_copy(update={"enabled": False})})
    router = app_module.load_router(cfg, index_dir)
    assert router.static_encoder is not None  # the similar cache alone loads it
    encoded = count_encodes(monkeypatch, router)
    monkeypatch.setattr(app_module, "load_router", lambda c, idx=None: router)
    app = App(cfg, "127.0.0.1", free_port(), index_dir=index_dir)
    port = await app.start()
    await app.load()
    encoded.clear()  # the warm-up call
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = router_pb2_grpc.RouterServiceStub(ch)

            async def route(prompt: str, **kw) -> pb.RouteDecision:  # type: ignore[no-untyped-def]
                return await stub.Route(pb.RouteRequest(prompt=prompt, **kw), timeout=10)

            first = await route(PROMPT, request_id="a")
            edited = await route(PROMPT + "?", request_id="b")  # static cosine 0.999
            assert first.tier == pb.TIER_ENCODER and encoded == [PROMPT]
            assert (edited.tier, edited.request_id) == (pb.TIER_SIMILAR, "b")
            assert (edited.model, edited.route) == (first.model, first.route)
            assert list(edited.candidates) == list(first.candidates)
            assert edited.timing.encode_us == 0 and encoded == [PROMPT]
            # Its exact repeat is now an exact-cache hit.
            assert (await route(PROMPT + "?")).tier == pb.TIER_CACHE
            # Another question, or the same one under other constraints: the encoder decides.
            other = "Write a Rust function that parses an ISO 8601 date"
            assert (await route(other)).tier == pb.TIER_ENCODER
            tagged = await route(PROMPT + "!", required_tags=["region:eu"])
            assert tagged.tier == pb.TIER_ENCODER
            knob = await route(PROMPT + "!", quality_preference=0.95)
            assert knob.tier == pb.TIER_ENCODER
            assert encoded == [PROMPT, other, PROMPT + "!", PROMPT + "!"]
            # Below the threshold (a greeting and a thanks: cosine 0.965): the encoder decides.
            assert (await route("Hi! " + PROMPT + " Thanks!")).tier == pb.TIER_ENCODER
    finally:
        await app.stop(grace=1)
    assert len(app.pipeline.similar or ()) == 5


async def test_the_cascade_reuses_the_probes_static_embedding(
    config: Config, index_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The similar cache and the cascade's fast tier both on: a prompt the static
    route head is sure of is embedded once by the static encoder (the similar cache's probe,
    reused by the fast tier), never by the full encoder, and its edit reuses that decision."""
    cfg = with_similar(config)
    cfg = cfg.model_copy(update={"fast_tier": cfg.fast_tier.model_copy(update={"enabled": True})})
    router = app_module.load_router(cfg, index_dir)
    encoded = count_encodes(monkeypatch, router)
    static_calls: list[str] = []
    real_static = router.static_encoder.encode

    def counting_static(texts):  # type: ignore[no-untyped-def]
        static_calls.extend(texts)
        return real_static(texts)

    monkeypatch.setattr(router.static_encoder, "encode", counting_static)
    monkeypatch.setattr(app_module, "load_router", lambda c, idx=None: router)
    app = App(cfg, "127.0.0.1", free_port(), index_dir=index_dir)
    port = await app.start()
    await app.load()
    encoded.clear()  # the warm-up call
    static_calls.clear()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = router_pb2_grpc.RouterServiceStub(ch)
            first = await stub.Route(pb.RouteRequest(prompt=PROMPT), timeout=10)
            assert first.tier == pb.TIER_STATIC and first.route == "code_generation"
            assert static_calls == [PROMPT] and encoded == []
            edited = await stub.Route(pb.RouteRequest(prompt=PROMPT + "?"), timeout=10)
            assert edited.tier == pb.TIER_SIMILAR and edited.model == first.model
            assert static_calls == [PROMPT, PROMPT + "?"] and encoded == []
    finally:
        await app.stop(grace=1)


def test_turning_the_cache_off_turns_both_caches_off() -> None:
    assert CacheSpec(similar={"enabled": True}).similar_active
    assert not CacheSpec(enabled=False, similar={"enabled": True}).similar_active
