"""AdminService on a real in-process server: every rejection, rollback, shadow figures,
auth (token and mTLS), the directory watcher, shutdown, and memory release."""

from __future__ import annotations

import asyncio
import gc
import hashlib
import io
import json
import re
import shutil
import subprocess
import tarfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import faiss
import grpc
import numpy as np
import pytest

from semroute.admin.auth import AdminAuth
from semroute.admin.registry import AdminError
from semroute.bundle import write_bundle
from semroute.config import Config, ConfigError
from semroute.route_index import routes_digest
from semroute.v1 import admin_pb2 as apb
from semroute.v1 import admin_pb2_grpc
from semroute.v1 import router_pb2 as pb

from .test_admin_support import (
    AUTH,
    EXPECTED,
    PROMPTS,
    READ_TOKEN,
    TOKEN,
    Bundles,
    bundles,
    copy_bundle,
    running_app,
    status,
    stubs,
)

__all__ = ["bundles"]  # the fixture, re-exported for pytest


def _rewrite_manifest(bundle: Path, **changes: Any) -> None:
    m = json.loads((bundle / "manifest.json").read_text())
    m.update(changes)
    (bundle / "manifest.json").write_text(json.dumps(m))


def _corrupt(b: Path) -> None:
    with (b / "index.faiss").open("r+b") as f:
        f.seek(-8, 2)
        f.write(b"\x01" * 8)


def _truncate(b: Path) -> None:
    data = (b / "index.faiss").read_bytes()
    (b / "index.faiss").write_bytes(data[: len(data) // 2])


def _half_written(b: Path) -> None:
    (b / "manifest.json").unlink()


def _missing_file(b: Path) -> None:
    (b / "labels.npy").unlink()


def _other_encoder(b: Path) -> None:
    _rewrite_manifest(b, encoder_id="another-encoder/v9")


def _other_dim(b: Path) -> None:
    _rewrite_manifest(b, dim=768)


def _unknown_kind(b: Path) -> None:
    _rewrite_manifest(b, kind="learned")


def _bad_config(b: Path) -> None:
    """A config.yaml that fails validation, with its checksum updated to match."""
    (b / "config.yaml").write_text("models: []\nroutes: []\npolicy: {default_route: x}\n")
    m = json.loads((b / "manifest.json").read_text())
    m["files"]["config.yaml"] = hashlib.sha256((b / "config.yaml").read_bytes()).hexdigest()
    (b / "manifest.json").write_text(json.dumps(m))


def _plain_other_routes(b: Path) -> None:
    """An index-only bundle (no config) built from other routes than the active config's."""
    m = json.loads((b / "manifest.json").read_text())
    (b / "config.yaml").unlink()
    del m["files"]["config.yaml"]
    (b / "manifest.json").write_text(json.dumps(m))


REJECTIONS: dict[str, tuple[Callable[[Path], None], str]] = {
    "corrupt": (_corrupt, r"checksum mismatch on index\.faiss"),
    "truncated": (_truncate, r"checksum mismatch on index\.faiss"),
    "half-written": (_half_written, "half-written"),
    "missing-file": (_missing_file, r"labels\.npy listed in the manifest is missing"),
    "other-encoder": (_other_encoder, "built for encoder 'another-encoder/v9'"),
    "other-dim": (_other_dim, "dim 768"),
    "unknown-kind": (_unknown_kind, "no loader for bundle kind 'learned'"),
    "invalid-config": (_bad_config, "invalid config"),
    "routes-mismatch": (_plain_other_routes, "built from other routes"),
}


async def test_every_bad_bundle_is_refused_and_the_active_index_keeps_serving(
    config: Config, encoder: Any, bundles: Bundles, tmp_path: Path
) -> None:
    async with running_app(config, encoder, bundles.a) as (_, target), stubs(target) as (adm, rs):
        cases: list[tuple[str, str, str]] = []
        for name, (mutate, _) in REJECTIONS.items():
            b = copy_bundle(bundles.b, tmp_path / name)
            mutate(b)
            cases.append((name, str(b), "FAILED_PRECONDITION"))
        # A truncated archive (a copy cut short), and one escaping its directory.
        data = bundles.b_archive.read_bytes()
        (tmp_path / "cut.tar.gz").write_bytes(data[: len(data) * 2 // 3])
        cases.append(("truncated-archive", str(tmp_path / "cut.tar.gz"), "FAILED_PRECONDITION"))
        evil = tmp_path / "evil.tar.gz"
        with tarfile.open(evil, "w:gz") as tf:
            info = tarfile.TarInfo("../escape.txt")
            info.size = 2
            tf.addfile(info, io.BytesIO(b"hi"))
        cases.append(("escaping-archive", str(evil), "FAILED_PRECONDITION"))
        cases.append(("missing", str(tmp_path / "nope"), "NOT_FOUND"))
        patterns = {
            **{k: v[1] for k, v in REJECTIONS.items()},
            "truncated-archive": "truncated or corrupt",
            "escaping-archive": "outside the bundle",
            "missing": "no such bundle",
        }
        for name, path, code in cases:
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await adm.LoadIndex(
                    apb.LoadIndexRequest(path=path, activate=apb.ACTIVATION_MODE_ACTIVE),
                    metadata=AUTH,
                )
            assert e.value.code().name == code, (name, e.value.details())
            assert re.search(patterns[name], e.value.details()), (name, e.value.details())
            d = await rs.Route(pb.RouteRequest(prompt="translate this paragraph into French"))
            assert d.index_version == bundles.version_a, name
        st = await status(adm)
        assert st.active_version == bundles.version_a and st.swaps == 0
        assert st.rejected == len(cases) and st.loaded == 1
        assert "no such bundle" in st.last_error


async def test_load_shadow_activate_and_rollback(
    config: Config, encoder: Any, bundles: Bundles
) -> None:
    a, b = bundles.version_a, bundles.version_b
    async with running_app(config, encoder, bundles.a) as (_, target), stubs(target) as (adm, rs):
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await adm.Rollback(apb.RollbackRequest(), metadata=AUTH)
        assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        r = await adm.LoadIndex(apb.LoadIndexRequest(path=str(bundles.b_archive)), metadata=AUTH)
        assert r.index.version == b and r.index.state == apb.INDEX_STATE_STANDBY
        assert r.index.self_contained and r.index.eval["probe_route_accuracy"] == 0.8
        assert r.active_version == a and not r.already_loaded
        again = await adm.LoadIndex(apb.LoadIndexRequest(path=str(bundles.b)), metadata=AUTH)
        assert again.already_loaded and again.index.version == b
        act = await adm.ActivateIndex(apb.ActivateIndexRequest(version=b), metadata=AUTH)
        assert (act.active_version, act.previous_version) == (b, a)
        d = await rs.Route(pb.RouteRequest(prompt="translate this paragraph into French"))
        assert (d.index_version, d.config_version, d.model) == (
            b,
            bundles.config_b.version,
            "gpt-5.5",
        )
        listed = {
            i.version: i.state
            for i in (await adm.ListIndexes(apb.ListIndexesRequest(), metadata=AUTH)).indexes
        }
        assert listed == {a: apb.INDEX_STATE_PREVIOUS, b: apb.INDEX_STATE_ACTIVE}
        rb = await adm.Rollback(apb.RollbackRequest(), metadata=AUTH)
        assert (rb.active_version, rb.rolled_back_from) == (a, b)
        d = await rs.Route(pb.RouteRequest(prompt="translate this paragraph into French"))
        assert d.index_version == a and d.model != "gpt-5.5"
        # Nothing earlier than A: a second rollback is refused, A keeps serving.
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await adm.Rollback(apb.RollbackRequest(), metadata=AUTH)
        assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        # A released version is reloaded from its path when rolled back to.
        await adm.ActivateIndex(apb.ActivateIndexRequest(version=b), metadata=AUTH)
        await adm.ActivateIndex(apb.ActivateIndexRequest(version=a), metadata=AUTH)
        un = await adm.UnloadIndex(apb.UnloadIndexRequest(version=b), metadata=AUTH)
        assert un.released
        rb = await adm.Rollback(apb.RollbackRequest(to_version=b), metadata=AUTH)
        assert rb.active_version == b
        st = await status(adm)
        assert st.swaps == 5 and st.active_version == b and st.loaded == 2
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await adm.UnloadIndex(apb.UnloadIndexRequest(version=b), metadata=AUTH)
        assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await adm.ActivateIndex(apb.ActivateIndexRequest(version="routes-nope"), metadata=AUTH)
        assert e.value.code() == grpc.StatusCode.NOT_FOUND


async def test_shadow_figures_on_a_crafted_candidate(
    config: Config, encoder: Any, bundles: Bundles
) -> None:
    """B sends translation to gpt-5.5 only: the shadow must count exactly the prompts whose
    model changes (fixed by hand in EXPECTED), price them as B prices them once active,
    and never change an answer."""
    changed = [(a, b) for _, a, b in EXPECTED.values() if a != b]
    diffs = len(changed)
    assert 0 < diffs < len(PROMPTS)  # the crafted candidate changes some decisions only
    async with running_app(config, encoder, bundles.a) as (_, target), stubs(target) as (adm, rs):
        await adm.LoadIndex(
            apb.LoadIndexRequest(
                path=str(bundles.b),
                activate=apb.ACTIVATION_MODE_SHADOW,
                shadow_sample_rate=1.0,
            ),
            metadata=AUTH,
        )
        # Each prompt twice: once through the encoder, once from the decision cache.
        served_a = []
        for _round in range(2):
            for p, (route, model_a, _) in EXPECTED.items():
                d = await rs.Route(pb.RouteRequest(prompt=p))
                assert (d.index_version, d.route, d.model) == (bundles.version_a, route, model_a)
                served_a.append(d)
        n = 2 * len(PROMPTS)
        for _ in range(200):
            sh = (await status(adm)).shadow
            if sh.compared + sh.internal_errors >= n:
                break
            await asyncio.sleep(0.05)
        assert sh.candidate_version == bundles.version_b
        assert sh.active_version == bundles.version_a
        assert (sh.sampled, sh.compared, sh.dropped, sh.internal_errors) == (n, n, 0, 0)
        assert sh.model_diffs == 2 * diffs and sh.candidate_errors == 0
        assert sh.decision_diff_rate == pytest.approx(diffs / len(PROMPTS))
        assert sh.candidate_decide.count == n and sh.active_decide.count == n
        assert sh.candidate_decide.p99_us > 0
        assert {(c.from_model, c.to_model) for c in sh.top_model_changes} == set(changed)
        final = await adm.StopShadow(apb.StopShadowRequest(), metadata=AUTH)
        assert final.report.compared == n
        assert not (await status(adm)).HasField("shadow")
        # B's own answers, served once it is active, price the candidate's side.
        await adm.ActivateIndex(apb.ActivateIndexRequest(version=bundles.version_b), metadata=AUTH)
        served_b = []
        for p, (route, _, model_b) in EXPECTED.items():
            d = await rs.Route(pb.RouteRequest(prompt=p))
            assert (d.index_version, d.route, d.model) == (bundles.version_b, route, model_b)
            served_b.append(d)
    cost_a = sum(_chosen(d)[0] for d in served_a)
    cost_b = 2 * sum(_chosen(d)[0] for d in served_b)
    assert sh.active_cost_usd == pytest.approx(cost_a, rel=1e-6)
    assert sh.candidate_cost_usd == pytest.approx(cost_b, rel=1e-6)
    assert sh.cost_delta_ratio == pytest.approx(cost_b / cost_a - 1, rel=1e-6)
    assert sh.cost_delta_usd_per_request == pytest.approx((cost_b - cost_a) / n, rel=1e-6)
    q = (2 * sum(_chosen(d)[1] for d in served_b) - sum(_chosen(d)[1] for d in served_a)) / n
    assert sh.quality_delta == pytest.approx(q, abs=1e-6)


def _chosen(d: Any) -> tuple[float, float]:
    c = next(c for c in d.candidates if c.model == d.model)
    return c.estimated_cost_usd, c.predicted_quality


async def test_token_auth(config: Config, encoder: Any, bundles: Bundles) -> None:
    env = {"SEMROUTE_ADMIN_TOKEN": TOKEN, "SEMROUTE_ADMIN_READ_TOKEN": READ_TOKEN}
    async with (
        running_app(config, encoder, bundles.a, env=env) as (_, target),
        stubs(target) as (adm, rs),
    ):
        load = apb.LoadIndexRequest(path=str(bundles.b))
        for metadata, code in (
            ((), grpc.StatusCode.UNAUTHENTICATED),
            (
                (("authorization", "Bearer wrong-token-wrong-token"),),
                grpc.StatusCode.UNAUTHENTICATED,
            ),
            ((("authorization", TOKEN),), grpc.StatusCode.UNAUTHENTICATED),  # no scheme
            ((("authorization", f"Bearer {READ_TOKEN}"),), grpc.StatusCode.PERMISSION_DENIED),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await adm.LoadIndex(load, metadata=metadata)
            assert e.value.code() == code, metadata
        read = (("authorization", f"Bearer {READ_TOKEN}"),)
        st = await adm.GetStatus(apb.GetStatusRequest(), metadata=read)
        assert st.active_version == bundles.version_a and st.loaded == 1
        await adm.ListIndexes(apb.ListIndexesRequest(), metadata=read)
        assert (await rs.Route(pb.RouteRequest(prompt="hi there"))).model  # Route needs no token
        r = await adm.LoadIndex(load, metadata=AUTH)
        assert r.index.version == bundles.version_b


async def test_admin_is_off_without_a_token_and_refuses_short_ones(
    config: Config, encoder: Any, bundles: Bundles
) -> None:
    async with running_app(config, encoder, bundles.a, env={}) as (app, target):
        assert app.admin is None
        async with stubs(target) as (adm, _):
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await adm.GetStatus(apb.GetStatusRequest(), metadata=AUTH)
            assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
    with pytest.raises(ConfigError, match="at least 16 characters"):
        async with running_app(config, encoder, bundles.a, env={"SEMROUTE_ADMIN_TOKEN": "short"}):
            pass
    with pytest.raises(ValueError, match="at least 16"):
        AdminAuth(None, "short")


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def _cert(cwd: Path, name: str, cn: str, ca: str, san: str | None = None) -> None:
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl(
        "req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}", cwd=cwd
    )
    ext = []
    if san:
        (cwd / f"{name}.ext").write_text(f"subjectAltName={san}\n")
        ext = ["-extfile", f"{name}.ext"]
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
        "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", *ext, cwd=cwd,
    )  # fmt: skip


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
async def test_mtls_admin_port(
    config: Config, encoder: Any, bundles: Bundles, tmp_path: Path
) -> None:
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    for ca in ("ca", "rogue"):
        _openssl("req", "-x509", *ec, "-keyout", f"{ca}.key", "-out", f"{ca}.crt", "-days", "2",
                 "-subj", f"/CN={ca}", cwd=tmp_path)  # fmt: skip
    _cert(tmp_path, "server", "localhost", "ca", "IP:127.0.0.1,DNS:localhost")
    _cert(tmp_path, "operator", "operator", "ca")
    _cert(tmp_path, "intruder", "intruder", "ca")
    _cert(tmp_path, "stranger", "operator", "rogue")
    tls = {
        "cert_file": tmp_path / "server.crt",
        "key_file": tmp_path / "server.key",
        "client_ca_file": tmp_path / "ca.crt",
        "allowed_common_names": ("operator",),
    }
    from semroute.config import AdminTlsSpec

    async with running_app(
        config, encoder, bundles.a, env={}, listen="127.0.0.1:0", tls=AdminTlsSpec(**tls)
    ) as (app, target):
        assert app.admin is not None and app.admin.port
        admin_target = f"127.0.0.1:{app.admin.port}"
        ca = (tmp_path / "ca.crt").read_bytes()

        async def call(client: str | None) -> apb.GetStatusResponse:
            creds = grpc.ssl_channel_credentials(
                root_certificates=ca,
                private_key=(tmp_path / f"{client}.key").read_bytes() if client else None,
                certificate_chain=(tmp_path / f"{client}.crt").read_bytes() if client else None,
            )
            async with grpc.aio.secure_channel(admin_target, creds) as ch:
                stub = admin_pb2_grpc.AdminServiceStub(ch)
                return await stub.GetStatus(apb.GetStatusRequest(), timeout=10)

        assert (await call("operator")).active_version == bundles.version_a
        for client, code in (
            (None, grpc.StatusCode.UNAVAILABLE),  # no client certificate: no handshake
            ("stranger", grpc.StatusCode.UNAVAILABLE),  # signed by another CA
            ("intruder", grpc.StatusCode.PERMISSION_DENIED),  # good cert, name not allowed
        ):
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await call(client)
            assert e.value.code() == code, client
        # The serving port does not carry the admin service.
        async with stubs(target) as (adm, _):
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await adm.GetStatus(apb.GetStatusRequest())
            assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_watched_directory(
    config: Config, encoder: Any, bundles: Bundles, tmp_path: Path
) -> None:
    watch = tmp_path / "watch"
    watch.mkdir()
    # Present at start: applied before SERVING; A's own version, so no swap.
    copy_bundle(bundles.a, watch / "already-there")
    async with (
        running_app(config, encoder, bundles.a, watch_dir=watch, watch_interval_s=0.1) as (
            app,
            target,
        ),
        stubs(target) as (adm, rs),
    ):
        bad = copy_bundle(bundles.b, tmp_path / "bad")
        _corrupt(bad)
        shutil.move(bad, watch / "bad")
        shutil.copyfile(bundles.b_archive, watch / ".partial.tar.gz")  # hidden: ignored
        st = await _wait(adm, lambda s: s.watch.rejected >= 1)
        assert st.active_version == bundles.version_a and "checksum mismatch" in st.watch.last_error
        shutil.copyfile(bundles.b_archive, watch / ".incoming.tar.gz")
        (watch / ".incoming.tar.gz").rename(watch / "b.tar.gz")
        st = await _wait(adm, lambda s: s.active_version == bundles.version_b)
        assert st.watch.loaded == 2 and st.watch.rejected == 1 and st.watch.enabled
        assert st.swaps == 1
        d = await rs.Route(pb.RouteRequest(prompt="please translate this into German"))
        assert d.index_version == bundles.version_b
        assert app.admin is not None and app.admin.watcher is not None


async def _wait(
    adm: admin_pb2_grpc.AdminServiceStub, cond: Callable[[apb.GetStatusResponse], bool]
) -> apb.GetStatusResponse:
    for _ in range(200):
        st = await status(adm)
        if cond(st):
            return st
        await asyncio.sleep(0.05)
    raise AssertionError(f"condition not met; last status:\n{st}")


async def test_swap_during_shutdown_is_refused(
    config: Config, encoder: Any, bundles: Bundles
) -> None:
    async with running_app(config, encoder, bundles.a) as (app, target), stubs(target) as (adm, _):
        assert app.admin is not None and app.admin.registry is not None
        reg = app.admin.registry
        gate, entered = threading.Event(), threading.Event()
        real_warm = reg._warm

        def slow_warm(state: Any) -> None:
            entered.set()
            assert gate.wait(20)
            real_warm(state)

        reg._warm = slow_warm  # type: ignore[method-assign]
        call = adm.LoadIndex(
            apb.LoadIndexRequest(path=str(bundles.b), activate=apb.ACTIVATION_MODE_ACTIVE),
            metadata=AUTH,
            timeout=30,
        )
        await asyncio.get_running_loop().run_in_executor(None, entered.wait, 20)
        stopping = asyncio.ensure_future(app.stop(grace=10))
        for _ in range(1000):  # until stop() has closed the registry (its first step)
            if reg.closing:
                break
            await asyncio.sleep(0)
        assert reg.closing
        gate.set()
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await call
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "shutting down" in e.value.details()
        await stopping
        assert reg.active == bundles.version_a and reg.swaps == 0
        with pytest.raises(AdminError, match="shutting down"):
            await reg.activate(bundles.version_a)


def _rss() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096


def _big_bundle(out: Path, config: Config, encoder: Any, n: int) -> Path:
    """A real "routes" bundle with n random unit vectors (~n * 1.5 KB of index)."""
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((n, encoder.dim), dtype=np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    index = faiss.IndexFlatIP(encoder.dim)
    index.add(emb)
    del emb
    names = [r.name for r in config.routes]

    def write(tmp: Path) -> None:
        faiss.write_index(index, str(tmp / "index.faiss"))
        np.save(tmp / "labels.npy", (np.arange(n) % len(names)).astype(np.int32))
        (tmp / "routes.json").write_text(json.dumps({"routes": names, "utterances": []}))

    meta = {
        "encoder_id": encoder.id,
        "dim": encoder.dim,
        "count": n,
        "routes_sha256": routes_digest(config),
        "config_version": config.version,
    }
    write_bundle(out, "routes", write, meta)
    return out


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads /proc")
async def test_memory_returns_after_the_old_index_is_released(
    config: Config, encoder: Any, bundles: Bundles, tmp_path: Path
) -> None:
    big = _big_bundle(tmp_path / "big", config, encoder, 60_000)  # ~92 MB of vectors
    async with running_app(config, encoder, bundles.a) as (_, target), stubs(target) as (adm, rs):
        gc.collect()
        before = _rss()
        r = await adm.LoadIndex(
            apb.LoadIndexRequest(path=str(big), activate=apb.ACTIVATION_MODE_ACTIVE),
            metadata=AUTH,
        )
        assert r.index.index_bytes >= 60_000 * encoder.dim * 4
        d = await rs.Route(pb.RouteRequest(prompt="summarize this article for me"))
        assert d.index_version == r.index.version
        loaded = _rss()
        assert loaded - before > 60 * 2**20, (before, loaded)
        await adm.Rollback(apb.RollbackRequest(), metadata=AUTH)
        un = await adm.UnloadIndex(apb.UnloadIndexRequest(version=r.index.version), metadata=AUTH)
        assert un.released
        st = await status(adm)
        assert st.active_version == bundles.version_a and not st.draining_versions
        gc.collect()
        after = _rss()
        assert after - before < 25 * 2**20, (before, loaded, after)


async def test_operator_cli_workflow(
    config: Config,
    encoder: Any,
    bundles: Bundles,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The README's commands: load --shadow, status, activate, rollback, list."""
    from semroute.admin.cli import main as admin_cli

    loop = asyncio.get_running_loop()

    async def cli(*argv: str) -> dict[str, Any]:
        capsys.readouterr()
        code = await loop.run_in_executor(None, admin_cli, list(argv))
        out = capsys.readouterr().out
        assert code == 0, out
        return json.loads(out)

    async with running_app(config, encoder, bundles.a) as (_, target):
        monkeypatch.setenv("SEMROUTE_ADMIN_TOKEN", TOKEN)
        t = ("--target", target)
        r = await cli("load", str(bundles.b_archive), "--shadow", "--rate", "1", *t)
        assert r["index"]["state"] == "INDEX_STATE_SHADOW" and r["index"]["entries"] > 0
        st = await cli("status", *t)
        assert st["shadow"]["candidate_version"] == bundles.version_b
        assert st["active_version"] == bundles.version_a
        r = await cli("activate", bundles.version_b, *t)
        assert (r["active_version"], r["previous_version"]) == (
            bundles.version_b,
            bundles.version_a,
        )
        r = await cli("rollback", *t)
        assert r["active_version"] == bundles.version_a
        listed = await cli("list", *t)
        assert {i["version"] for i in listed["indexes"]} == {bundles.version_a, bundles.version_b}
        monkeypatch.setenv("SEMROUTE_ADMIN_TOKEN", "not-the-token-at-all")
        code = await loop.run_in_executor(None, admin_cli, ["status", *t])
        assert code == 1 and "UNAUTHENTICATED" in capsys.readouterr().err
