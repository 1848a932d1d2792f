"""Swaps never turn cache hits into refusals, whatever the CPU: with a 30 ms encoder pass
(a test-only delay, so a fast machine behaves like a slow one), every hot request is
decided by the incoming index before it is activated, on first activation and on
re-activation of an index loaded earlier, so no hot request reaches the encoder
because of a swap and none is refused."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import grpc

from semroute.config import Config
from semroute.encoder.delay import DelayedEncoder
from semroute.v1 import admin_pb2 as apb
from semroute.v1 import router_pb2 as pb

from .test_admin_support import AUTH, PROMPTS, Bundles, bundles, running_app, status, stubs

__all__ = ["bundles"]

ENCODER_DELAY_S = 0.030
SWAPS = 20
CALLERS = 12
# Requests completed after each swap before the next one (not a time: a count).
PER_SWAP = 60


def _variants(**fields: Any) -> list[pb.RouteRequest]:
    return [pb.RouteRequest(prompt=p, **fields) for p in PROMPTS]


# Three hot sets, made hot at different moments (see the test).
H1 = [
    *_variants(),
    *_variants(preset=pb.PRESET_COST),
    *_variants(preset=pb.PRESET_QUALITY),
]
H2 = [*_variants(quality_preference=0.3), *_variants(quality_preference=0.7)]
H3 = _variants(expected_output_tokens=512)


async def test_swaps_under_load_with_a_30ms_encoder_refuse_nothing(
    config: Config, encoder: Any, bundles: Bundles
) -> None:
    a, b = bundles.version_a, bundles.version_b
    slow = DelayedEncoder(encoder, ENCODER_DELAY_S)
    async with running_app(config, slow, bundles.a) as (app, target), stubs(target) as (adm, rs):
        batcher = app.pipeline.batcher
        assert batcher is not None and app.pipeline.router is not None
        assert app.pipeline.router.encoder is slow

        async def warm(requests: list[pb.RouteRequest]) -> None:
            for r in requests:  # one at a time: the encoder is the only thing measured here
                await rs.Route(r, timeout=30)

        await warm(H1)
        loaded = await adm.LoadIndex(apb.LoadIndexRequest(path=str(bundles.b)), metadata=AUTH)
        assert loaded.index.primed_decisions == len(H1)  # hot at load time
        await warm(H2)  # hot after B was loaded: primed only when B is activated
        hot = H1 + H2
        codes: Counter[str] = Counter()
        versions: Counter[str] = Counter()
        done = [0]
        progressed = asyncio.Event()
        target_count = [0]
        stop = asyncio.Event()

        async def caller(i: int) -> None:
            k = i
            while not stop.is_set():
                req = hot[k % len(hot)]
                k += CALLERS
                try:
                    d = await rs.Route(req, timeout=30)
                    codes["OK"] += 1
                    versions[d.index_version] += 1
                except grpc.aio.AioRpcError as e:
                    codes[e.code().name] += 1
                done[0] += 1
                if done[0] >= target_count[0]:
                    progressed.set()

        async def traffic(n: int) -> None:
            """Wait until `n` more requests have completed."""
            target_count[0] = done[0] + n
            progressed.clear()
            await progressed.wait()

        tasks = [asyncio.ensure_future(caller(i)) for i in range(CALLERS)]
        try:
            await traffic(PER_SWAP)
            texts_before = batcher.stats.texts
            active = a
            for k in range(SWAPS):
                if k == SWAPS // 2 + 1:  # after an odd number of swaps: B is active
                    # A new hot set appears while B is active; A (loaded earlier, active
                    # before) must decide it when it is re-activated.
                    assert active == b
                    await warm(H3)
                    texts_before += len(H3)
                    hot.extend(H3)
                to = b if active == a else a
                r = await adm.ActivateIndex(apb.ActivateIndexRequest(version=to), metadata=AUTH)
                assert r.active_version == to
                active = to
                probe = await rs.Route(H2[k % len(H2)], timeout=30)
                assert probe.index_version == to and probe.tier == pb.TIER_CACHE
                await traffic(PER_SWAP)
        finally:
            stop.set()
            await asyncio.gather(*tasks)
        assert codes == Counter({"OK": done[0]}), codes
        # No hot request reached the encoder because of a swap.
        assert batcher.stats.texts == texts_before
        assert set(versions) == {a, b}
        st = await status(adm)
        assert st.swaps == SWAPS and st.active_version == active
