"""The admin settings that decide what stays loaded and what a watched bundle does:
`admin.max_loaded`, `admin.keep_previous: false` and `admin.watch_action: shadow`."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from semroute.config import Config
from semroute.v1 import admin_pb2 as apb
from semroute.v1 import router_pb2 as pb

from .test_admin import _big_bundle, _wait
from .test_admin_support import AUTH, Bundles, bundles, running_app, status, stubs

__all__ = ["bundles"]  # the fixture, re-exported for pytest

ACTIVE = apb.ACTIVATION_MODE_ACTIVE


async def _states(adm: Any) -> dict[str, int]:
    listed = await adm.ListIndexes(apb.ListIndexesRequest(), metadata=AUTH)
    return {i.version: i.state for i in listed.indexes}


async def test_max_loaded_releases_the_oldest_unused_bundle(
    config: Config, encoder: Any, bundles: Bundles, tmp_path: Path
) -> None:
    c = _big_bundle(tmp_path / "c", bundles.config_b, encoder, 500)  # B's routes
    a, b = bundles.version_a, bundles.version_b
    async with (
        running_app(config, encoder, bundles.a, max_loaded=2) as (_, target),
        stubs(target) as (adm, rs),
    ):
        await adm.LoadIndex(
            apb.LoadIndexRequest(path=str(bundles.b), activate=ACTIVE), metadata=AUTH
        )
        assert (await status(adm)).loaded == 2  # B active, A previous
        r = await adm.LoadIndex(apb.LoadIndexRequest(path=str(c), activate=ACTIVE), metadata=AUTH)
        st = await status(adm)
        assert (st.active_version, st.previous_version, st.loaded) == (r.index.version, b, 2)
        assert (await _states(adm))[a] == apb.INDEX_STATE_UNLOADED
        d = await rs.Route(pb.RouteRequest(prompt="translate this paragraph into French"))
        assert d.index_version == r.index.version


async def test_keep_previous_false_releases_the_previous_bundle_at_the_swap(
    config: Config, encoder: Any, bundles: Bundles
) -> None:
    a, b = bundles.version_a, bundles.version_b
    async with (
        running_app(config, encoder, bundles.a, keep_previous=False) as (_, target),
        stubs(target) as (adm, rs),
    ):
        await adm.LoadIndex(
            apb.LoadIndexRequest(path=str(bundles.b), activate=ACTIVE), metadata=AUTH
        )
        st = await status(adm)
        assert (st.active_version, st.previous_version, st.loaded) == (b, a, 1)
        assert await _states(adm) == {a: apb.INDEX_STATE_UNLOADED, b: apb.INDEX_STATE_ACTIVE}
        # Rollback still works: the previous bundle is reloaded from its path.
        rb = await adm.Rollback(apb.RollbackRequest(), metadata=AUTH)
        assert rb.active_version == a
        d = await rs.Route(pb.RouteRequest(prompt="translate this paragraph into French"))
        assert d.index_version == a


async def test_watch_action_shadow_shadows_a_new_bundle_instead_of_activating_it(
    config: Config, encoder: Any, bundles: Bundles, tmp_path: Path
) -> None:
    watch = tmp_path / "watch"
    watch.mkdir()
    async with (
        running_app(
            config,
            encoder,
            bundles.a,
            watch_dir=watch,
            watch_interval_s=0.1,
            watch_action="shadow",
        ) as (_, target),
        stubs(target) as (adm, rs),
    ):
        shutil.copyfile(bundles.b_archive, watch / ".incoming.tar.gz")
        (watch / ".incoming.tar.gz").rename(watch / "b.tar.gz")
        st = await _wait(adm, lambda s: s.watch.loaded == 1)
        assert st.active_version == bundles.version_a and st.swaps == 0
        assert st.shadow.candidate_version == bundles.version_b
        d = await rs.Route(pb.RouteRequest(prompt="please translate this into German"))
        assert d.index_version == bundles.version_a
