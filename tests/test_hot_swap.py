"""Swapping indexes under live traffic: no request sees a half-loaded index, every decision
is exactly what the version it is stamped with decides, and in-flight requests finish on
the index they started with."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import grpc

from semroute.admin import bundles as bundle_kinds
from semroute.admin.bundles import LoadContext, Loaded
from semroute.config import Config
from semroute.v1 import admin_pb2 as apb
from semroute.v1 import router_pb2 as pb

from .test_admin_support import (
    AUTH,
    PROMPTS,
    Bundles,
    bundles,
    expectations,
    running_app,
    status,
    stubs,
)

__all__ = ["bundles"]  # the fixture, re-exported for pytest


class _GatedLoader:
    """The routes loader, held at a gate before and after it builds the state."""

    kind = "routes"

    def __init__(self) -> None:
        self.inner = bundle_kinds.RoutesLoader()
        self.building, self.built = threading.Event(), threading.Event()
        self.go_build, self.go_on = threading.Event(), threading.Event()

    def load(self, bundle_dir: Path, manifest: dict[str, Any], ctx: LoadContext) -> Loaded:
        self.building.set()
        assert self.go_build.wait(20)
        loaded = self.inner.load(bundle_dir, manifest, ctx)
        self.built.set()
        assert self.go_on.wait(20)
        return loaded


async def _wait_event(event: threading.Event) -> None:
    assert await asyncio.get_running_loop().run_in_executor(None, event.wait, 20)


async def test_no_request_sees_a_half_loaded_index(
    config: Config, encoder: Any, bundles: Bundles
) -> None:
    exp = expectations(bundles)
    a, b = bundles.version_a, bundles.version_b
    gated = _GatedLoader()
    bundle_kinds.register_loader(gated)
    try:
        async with (
            running_app(config, encoder, bundles.a) as (_, target),
            stubs(target) as (
                adm,
                rs,
            ),
        ):

            async def burst() -> list[pb.RouteDecision]:
                calls = [rs.Route(pb.RouteRequest(prompt=p)) for p in PROMPTS * 3]
                return list(await asyncio.gather(*calls))

            def check(ds: list[pb.RouteDecision], version: str) -> None:
                for d in ds:
                    assert d.index_version == version
                    assert (d.config_version, d.model, d.route) in exp[version].values()

            load = asyncio.ensure_future(
                adm.LoadIndex(
                    apb.LoadIndexRequest(path=str(bundles.b), activate=apb.ACTIVATION_MODE_ACTIVE),
                    metadata=AUTH,
                    timeout=60,
                )
            )
            await _wait_event(gated.building)  # verified, about to build the state
            check(await burst(), a)
            gated.go_build.set()
            await _wait_event(gated.built)  # built, not warmed nor activated
            check(await burst(), a)
            st = await status(adm)
            assert (st.active_version, st.loaded, st.swaps) == (a, 1, 0)
            listed = await adm.ListIndexes(apb.ListIndexesRequest(), metadata=AUTH)
            assert [i.version for i in listed.indexes] == [a]
            gated.go_on.set()
            r = await load
            assert r.active_version == b
            for p in PROMPTS:
                d = await rs.Route(pb.RouteRequest(prompt=p))
                assert d.index_version == b
                assert (d.config_version, d.model, d.route) == exp[b][p]
    finally:
        gated.go_build.set()
        gated.go_on.set()
        bundle_kinds.register_loader(bundle_kinds.RoutesLoader())


async def test_every_decision_matches_its_stamped_version_while_swapping(
    config: Config, encoder: Any, bundles: Bundles
) -> None:
    """8 callers send Route calls while the index swaps 30 times (every 6th by a full
    unload + reload from disk): no call fails, each decision is exactly what its stamped
    version decides, and a call sent after a swap was acknowledged (and answered before
    the next swap began) carries the new version. Each swap waits for 16 answers (so at
    least 8 sent after it) instead of for a time."""
    exp = expectations(bundles)
    a, b = bundles.version_a, bundles.version_b
    async with running_app(config, encoder, bundles.a) as (_, target), stubs(target) as (adm, rs):
        await adm.LoadIndex(apb.LoadIndexRequest(path=str(bundles.b)), metadata=AUTH)
        acked = {"version": a, "done": 0, "started": 0}
        failures: list[str] = []
        seen: Counter[str] = Counter()
        stop = asyncio.Event()
        answered = asyncio.Condition()
        count = {"answers": 0}

        async def caller(i: int) -> None:
            n = 0
            while not stop.is_set() and n < 2000:
                p = PROMPTS[(i + n) % len(PROMPTS)]
                n += 1
                swapping = acked["started"] != acked["done"]
                version, done = acked["version"], acked["done"]
                try:
                    d = await rs.Route(pb.RouteRequest(prompt=p), timeout=10)
                except grpc.aio.AioRpcError as e:
                    failures.append(f"{e.code().name}: {e.details()}")
                    continue
                seen[d.index_version] += 1
                async with answered:
                    count["answers"] += 1
                    answered.notify_all()
                if d.index_version not in exp:
                    failures.append(f"unknown version {d.index_version}")
                elif (d.config_version, d.model, d.route) != exp[d.index_version][p]:
                    failures.append(f"{p!r} on {d.index_version}: {d.model}/{d.route}")
                if not swapping and acked["started"] == done and d.index_version != version:
                    failures.append(f"stale: {d.index_version} after {version} was active")

        async def swapper() -> None:
            try:
                for k in range(30):
                    target_version = b if k % 2 == 0 else a
                    acked["started"] += 1
                    if k % 6 == 5:  # release the idle one and reload it from its bundle
                        await adm.UnloadIndex(
                            apb.UnloadIndexRequest(version=target_version), metadata=AUTH
                        )
                        src = bundles.b if target_version == b else bundles.a
                        await adm.LoadIndex(apb.LoadIndexRequest(path=str(src)), metadata=AUTH)
                    r = await adm.ActivateIndex(
                        apb.ActivateIndexRequest(version=target_version), metadata=AUTH
                    )
                    assert r.active_version == target_version
                    acked["version"] = target_version
                    acked["done"] = acked["started"]
                    mark = count["answers"] + 16  # 8 callers: at least 8 sent after the ack
                    async with answered:
                        await answered.wait_for(lambda m=mark: count["answers"] >= m)
            finally:
                stop.set()

        await asyncio.wait_for(asyncio.gather(swapper(), *(caller(i) for i in range(8))), 120)
        assert not failures, failures[:10]
        # At least 8 answers after each of the 15 acknowledged swaps to each version.
        assert seen[a] >= 8 * 15 and seen[b] >= 8 * 15, seen
        st = await status(adm)
        assert st.swaps == 30 and st.rejected == 0


async def test_in_flight_request_finishes_on_the_index_it_started_with(
    config: Config, encoder: Any, bundles: Bundles
) -> None:
    a, b = bundles.version_a, bundles.version_b
    async with (
        running_app(config, encoder, bundles.a) as (app, target),
        stubs(target) as (
            adm,
            rs,
        ),
    ):
        batcher = app.pipeline.batcher
        assert batcher is not None
        real_encode = batcher._encode
        waiting, release = threading.Event(), threading.Event()
        slow_text = "a slow prompt about translating a contract into Spanish"

        def encode(texts: list[str]) -> Any:
            if slow_text in texts:
                waiting.set()
                assert release.wait(20)
            return real_encode(texts)

        batcher._encode = encode  # type: ignore[method-assign]
        slow = asyncio.ensure_future(rs.Route(pb.RouteRequest(prompt=slow_text), timeout=30))
        await _wait_event(waiting)  # the call holds state A and waits for its embedding
        await adm.LoadIndex(
            apb.LoadIndexRequest(path=str(bundles.b), activate=apb.ACTIVATION_MODE_ACTIVE),
            metadata=AUTH,
        )
        fresh = await rs.Route(pb.RouteRequest(prompt="translate this paragraph into French"))
        assert fresh.index_version == b
        un = await adm.UnloadIndex(apb.UnloadIndexRequest(version=a), metadata=AUTH)
        assert not un.released  # still used by the call in flight
        assert list((await status(adm)).draining_versions) == [a]
        release.set()
        d = await slow
        assert (d.index_version, d.config_version) == (a, bundles.config_a.version)
        await asyncio.sleep(0)
        st = await status(adm)
        assert not st.draining_versions and st.active_version == b


async def test_the_new_index_is_warm_in_the_decision_cache_at_the_swap(
    config: Config, encoder: Any, bundles: Bundles
) -> None:
    """Recent live requests are decided by the new index while it loads: after the swap
    they are answered from the decision cache at once, stamped with the new version."""
    exp = expectations(bundles)
    b = bundles.version_b
    async with (
        running_app(config, encoder, bundles.a) as (app, target),
        stubs(target) as (
            adm,
            rs,
        ),
    ):
        assert app.admin is not None and app.admin.shadow is not None
        for p in PROMPTS:
            await rs.Route(pb.RouteRequest(prompt=p, request_id=f"warm-{p}"))
        r = await adm.LoadIndex(apb.LoadIndexRequest(path=str(bundles.b)), metadata=AUTH)
        assert r.index.primed_decisions == len(PROMPTS)
        await adm.ActivateIndex(apb.ActivateIndexRequest(version=b), metadata=AUTH)
        for p in PROMPTS:
            d = await rs.Route(pb.RouteRequest(prompt=p, request_id="after"))
            assert (d.tier, d.index_version, d.request_id) == (pb.TIER_CACHE, b, "after")
            assert (d.config_version, d.model, d.route) == exp[b][p]
