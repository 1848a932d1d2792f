"""Kubernetes-friendly start: bundles already in `admin.watch_dir` when the server starts.

A restarted pod must not serve stale routes until a new file appears: the newest
valid bundle there (manifest `created_at`) is applied before health turns SERVING;
bad ones are refused with a log line; a bundle `admin.state_file` records wins.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import threading
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from semroute.admin.bundles import pack_archive
from semroute.admin.registry import IndexRegistry
from semroute.config import Config
from semroute.router import Router, RoutingState
from semroute.server import app as app_module
from semroute.server.app import App
from semroute.v1 import router_pb2 as pb

from .test_admin import _corrupt
from .test_admin_support import TOKEN, Bundles, bundles, copy_bundle, running_app, status, stubs

__all__ = ["bundles"]  # the fixture, re-exported for pytest

TRANSLATE = "translate this paragraph into French"
OLD = "2020-01-01T00:00:00+00:00"


def _dated(src: Path, dst: Path, created_at: str) -> Path:
    """A copy of a bundle with another build time (the manifest is not under its checksums)."""
    _dated_manifest(copy_bundle(src, dst), created_at)
    return dst


async def _health(target: str) -> int:
    async with grpc.aio.insecure_channel(target) as ch:
        r = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
        return r.status


async def test_the_newest_bundle_in_the_watch_dir_is_served_from_the_first_serving_answer(
    config: Config, encoder: Any, bundles: Bundles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    watch = tmp_path / "watch"
    watch.mkdir()
    # A, built earlier (dated back) under a name sorting last; B as an archive, newer.
    _dated(bundles.a, watch / "z-older", OLD)
    shutil.copyfile(bundles.b_archive, watch / "b.tar.gz")
    gate, entered = threading.Event(), threading.Event()
    real_warm = IndexRegistry._warm

    def gated_warm(self: IndexRegistry, state: Any) -> None:
        entered.set()
        assert gate.wait(30)
        real_warm(self, state)

    monkeypatch.setattr(IndexRegistry, "_warm", gated_warm)
    monkeypatch.setenv("SEMROUTE_ADMIN_TOKEN", TOKEN)
    monkeypatch.setattr(
        app_module,
        "load_router",
        lambda c, idx=None: Router(encoder, RoutingState.load(c, encoder, idx)),
    )
    cfg = config.model_copy(
        update={
            "admin": config.admin.model_copy(update={"watch_dir": watch, "watch_interval_s": 0.1})
        }
    )
    app = App(cfg, "127.0.0.1", 0, index_dir=bundles.a)
    port = await app.start()
    target = f"127.0.0.1:{port}"
    loading = asyncio.ensure_future(app.load())
    try:
        loop = asyncio.get_running_loop()
        assert await loop.run_in_executor(None, entered.wait, 30)
        # The configured index is loaded, the watched bundle not yet: not SERVING.
        assert await _health(target) == health_pb2.HealthCheckResponse.NOT_SERVING
        gate.set()
        await asyncio.wait_for(loading, 60)
        assert await _health(target) == health_pb2.HealthCheckResponse.SERVING
        async with stubs(target) as (adm, rs):
            d = await rs.Route(pb.RouteRequest(prompt=TRANSLATE))
            assert (d.index_version, d.config_version, d.model) == (
                bundles.version_b,
                bundles.config_b.version,
                "gpt-5.5",
            )
            st = await status(adm)
            assert (st.watch.loaded, st.watch.rejected, st.swaps) == (1, 0, 1)
    finally:
        gate.set()
        await app.stop(grace=1)


async def test_bad_bundles_in_the_watch_dir_at_start_are_refused_and_the_next_valid_one_serves(
    config: Config, encoder: Any, bundles: Bundles, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    watch = tmp_path / "watch"
    watch.mkdir()
    _corrupt(copy_bundle(bundles.b, watch / "newest-corrupt"))  # newest: refused at load
    data = bundles.b_archive.read_bytes()
    (watch / "cut.tar.gz").write_bytes(data[: len(data) // 2])  # unreadable: refused at once
    older_b = _dated(bundles.b, tmp_path / "older-b", OLD)
    pack_archive(older_b, watch / "older-b.tar.gz")  # valid, but older than the corrupt one
    with caplog.at_level(logging.WARNING, logger="semroute.admin"):
        async with (
            running_app(
                config, encoder, bundles.a, watch_dir=watch, staging_dir=tmp_path / "st"
            ) as (_, target),
            stubs(target) as (adm, rs),
        ):
            assert await _health(target) == health_pb2.HealthCheckResponse.SERVING
            d = await rs.Route(pb.RouteRequest(prompt=TRANSLATE))
            assert d.index_version == bundles.version_b
            st = await status(adm)
            assert (st.watch.loaded, st.watch.rejected) == (1, 2)
    refused = {
        Path(r.fields["path"]).name: r.fields["error"]  # type: ignore[attr-defined]
        for r in caplog.records
        if r.getMessage() == "bundle in the watched directory refused at start"
    }
    assert set(refused) == {"newest-corrupt", "cut.tar.gz"}
    assert "checksum mismatch" in refused["newest-corrupt"]
    assert "truncated or corrupt" in refused["cut.tar.gz"]
    assert not any((tmp_path / "st").iterdir())  # the archives' staging was removed


async def test_with_only_bad_bundles_in_the_watch_dir_the_configured_index_serves(
    config: Config, encoder: Any, bundles: Bundles, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    watch = tmp_path / "watch"
    watch.mkdir()
    _corrupt(copy_bundle(bundles.b, watch / "corrupt"))
    with caplog.at_level(logging.WARNING, logger="semroute.admin"):
        async with (
            running_app(config, encoder, bundles.a, watch_dir=watch) as (_, target),
            stubs(target) as (adm, rs),
        ):
            assert await _health(target) == health_pb2.HealthCheckResponse.SERVING
            d = await rs.Route(pb.RouteRequest(prompt=TRANSLATE))
            assert d.index_version == bundles.version_a
            assert (await status(adm)).watch.rejected == 1
    assert any("no bundle in the watched directory loads" in r.getMessage() for r in caplog.records)


async def test_the_state_files_bundle_wins_over_the_watch_dir_and_is_not_loaded_twice(
    config: Config, encoder: Any, bundles: Bundles, tmp_path: Path
) -> None:
    watch = tmp_path / "watch"
    watch.mkdir()
    shutil.copyfile(bundles.b_archive, watch / "b.tar.gz")  # the newest in the directory
    state = tmp_path / "active.json"
    # 1. The state file records A (say, a rollback from B): A serves, B stays unloaded.
    state.write_text(json.dumps({"version": bundles.version_a, "path": str(bundles.a)}))
    async with (
        running_app(config, encoder, bundles.a, watch_dir=watch, state_file=state) as (_, target),
        stubs(target) as (adm, rs),
    ):
        assert (
            await rs.Route(pb.RouteRequest(prompt=TRANSLATE))
        ).index_version == bundles.version_a
        st = await status(adm)
        assert (st.loaded, st.watch.loaded) == (1, 0)
    # 2. It records a bundle of the directory that is now corrupt: refused once (not again
    # by the directory's pass), then the directory's newest valid bundle serves and is recorded.
    bad = _corrupt_copy(bundles.b, watch / "recorded")
    _dated_manifest(bad, "2999-01-01T00:00:00+00:00")  # newest: would be tried first
    state.write_text(json.dumps({"version": bundles.version_b, "path": str(bad)}))
    async with (
        running_app(config, encoder, bundles.a, watch_dir=watch, state_file=state) as (_, target),
        stubs(target) as (adm, rs),
    ):
        assert (
            await rs.Route(pb.RouteRequest(prompt=TRANSLATE))
        ).index_version == bundles.version_b
        st = await status(adm)
        assert (st.rejected, st.watch.rejected, st.watch.loaded) == (1, 0, 1)
    assert json.loads(state.read_text())["path"] == str(watch / "b.tar.gz")


def _corrupt_copy(src: Path, dst: Path) -> Path:
    _corrupt(copy_bundle(src, dst))
    return dst


def _dated_manifest(bundle: Path, created_at: str) -> None:
    m = json.loads((bundle / "manifest.json").read_text())
    m["created_at"] = created_at
    (bundle / "manifest.json").write_text(json.dumps(m))
