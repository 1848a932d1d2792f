"""The exact-bytes cache path runs, and is counted, with the admin service off and on."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from semroute.config import Config
from semroute.v1 import admin_pb2 as apb
from semroute.v1 import router_pb2 as pb

from .test_admin_support import AUTH, TOKEN, Bundles, bundles, running_app, status, stubs

__all__ = ["bundles"]  # the fixture, re-exported for pytest

PROMPT = "summarise this quarterly report in three bullet points"


@pytest.mark.parametrize("admin", [False, True], ids=["admin-off", "admin-on"])
async def test_exact_repeats_take_the_byte_path(
    config: Config, encoder: Any, bundles: Bundles, admin: bool
) -> None:
    env = {"SEMROUTE_ADMIN_TOKEN": TOKEN} if admin else {}
    async with running_app(config, encoder, bundles.a, env=env) as (app, target):
        assert (app.admin is not None) == admin
        async with stubs(target) as (_, rs):
            first = await rs.Route(pb.RouteRequest(prompt=PROMPT, request_id="r0"))
            assert app.pipeline.wire_hits == 0
            repeats = [
                await rs.Route(pb.RouteRequest(prompt=PROMPT, request_id=f"r{i}"))
                for i in range(1, 4)
            ]
        assert app.pipeline.wire_hits == 3
        for i, d in enumerate(repeats, start=1):
            assert (d.tier, d.request_id, d.model) == (pb.TIER_CACHE, f"r{i}", first.model)


async def test_a_shadow_still_sees_byte_path_hits(
    config: Config, encoder: Any, bundles: Bundles
) -> None:
    """With a candidate shadowed at rate 1, every byte-path hit is decoded and compared."""
    async with running_app(config, encoder, bundles.a) as (app, target), stubs(target) as (adm, rs):
        await adm.LoadIndex(
            apb.LoadIndexRequest(
                path=str(bundles.b),
                activate=apb.ACTIVATION_MODE_SHADOW,
                shadow_sample_rate=1.0,
            ),
            metadata=AUTH,
        )
        for i in range(4):
            await rs.Route(pb.RouteRequest(prompt=PROMPT, request_id=f"s{i}"))
        assert app.pipeline.wire_hits == 3
        for _ in range(200):
            sh = (await status(adm)).shadow
            if sh.compared + sh.internal_errors >= 4:
                break
            await asyncio.sleep(0.05)
        assert (sh.sampled, sh.compared, sh.internal_errors) == (4, 4, 0)
