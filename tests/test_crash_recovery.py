"""Crash recovery: kill -9 during an index build, a bundle load or an activation, then a
restart, serves the last good bundle; a full disk (ENOSPC, injected) fails a build or an
archive load with a clear error while the old index keeps serving."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml

from semroute.admin import bundles as bundle_module
from semroute.bundle import BundleError, read_manifest
from semroute.config import Config
from semroute.v1 import admin_pb2 as apb
from semroute.v1 import admin_pb2_grpc, router_pb2_grpc
from semroute.v1 import router_pb2 as pb

from .conftest import REPO, free_port, wait_serving
from .test_admin_support import (
    AUTH,
    TOKEN,
    Bundles,
    bundles,
    copy_bundle,
    running_app,
    status,
    stubs,
)

__all__ = ["bundles"]

PROMPT = pb.RouteRequest(prompt="translate this paragraph into French")

# Runs in a child process: builds a bundle at argv[1] from the default config, and at the
# chosen point (argv[2]) writes argv[3] and waits to be killed.
BUILD_AND_HANG = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    out, point, marker = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])

    def hang():
        marker.write_text("here")
        time.sleep(600)

    if point == "writing":  # the files are being written into the temporary directory
        import semroute.bundle as b
        real = b.sha256_file
        b.sha256_file = lambda p: (hang(), real(p))[1]
    else:  # "swapping": the old bundle was moved aside, the new one not yet in place
        real_rename = Path.rename
        calls = []
        def rename(self, target):
            calls.append(target)
            out = real_rename(self, target)
            if len(calls) == 2:  # 1: the inner index into place; 2: the old bundle aside
                hang()
            return out
        Path.rename = rename
    from semroute.admin.bundles import build_bundle
    from semroute.config import load_config
    from semroute.server.app import make_encoder
    config = load_config()
    build_bundle(config, make_encoder(config), out)
    """
)


def _wait_for(path: Path, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(6000):
        if path.exists():
            return
        assert proc.poll() is None, f"exited with {proc.returncode} before the crash point"
        time.sleep(0.02)
    raise AssertionError(f"{path} never appeared")


def _kill9(proc: subprocess.Popen[Any]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    assert proc.returncode == -signal.SIGKILL


@contextmanager
def _server(
    config_path: Path, index: Path, log: Path, env: dict[str, str] | None = None
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    port = free_port()
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "semroute", "serve", "--config", str(config_path),
             "--host", "127.0.0.1", "--port", str(port), "--index", str(index)],
            stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env={**os.environ, **(env or {})},
        )  # fmt: skip
    target = f"127.0.0.1:{port}"
    try:
        wait_serving(target, timeout=120, proc=proc)
        yield proc, target
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)


def _served_version(target: str) -> str:
    with grpc.insecure_channel(target) as ch:
        return router_pb2_grpc.RouterServiceStub(ch).Route(PROMPT, timeout=30).index_version


@pytest.mark.parametrize("point", ["writing", "swapping"])
def test_kill9_during_an_index_build_leaves_the_last_good_bundle(
    bundles: Bundles, encoder: Any, tmp_path: Path, point: str
) -> None:
    out = copy_bundle(bundles.b, tmp_path / "index")  # the last good bundle: B
    marker = tmp_path / "marker"
    proc = subprocess.Popen(
        [sys.executable, "-c", BUILD_AND_HANG, str(out), point, str(marker)], cwd=REPO
    )
    try:
        _wait_for(marker, proc)
    finally:
        _kill9(proc)
    if point == "swapping":
        assert not out.exists()  # killed between the renames: B is aside, not lost
    # The next reader (a restart) finds B, complete and verified.
    m = read_manifest(out, kind="routes", encoder_id=encoder.id, dim=encoder.dim)
    assert m["version"] == bundles.version_b
    if point == "swapping":
        with _server(bundles.config_b.source, out, tmp_path / "server.log") as (_, target):  # type: ignore[arg-type]
            assert _served_version(target) == bundles.version_b


def _slow_config(
    tmp_path: Path, staging: Path, delay_ms: int, state_file: Path | None = None
) -> Path:
    """The default config with a slow encoder (a wide window to kill in) and its own
    staging directory, written beside the default one so relative paths hold."""
    src = REPO / "configs" / "default.yaml"
    data = yaml.safe_load(src.read_text())
    data.setdefault("encoder", {})["test_delay_ms"] = delay_ms
    data.setdefault("admin", {})["staging_dir"] = str(staging)
    if state_file is not None:
        data["admin"]["state_file"] = str(state_file)
    out = src.with_name(f".crash-{os.getpid()}-{tmp_path.name}.yaml")
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return out


def test_kill9_during_a_load_and_an_activation_then_restart_serves_the_last_good(
    bundles: Bundles, encoder: Any, tmp_path: Path
) -> None:
    staging = tmp_path / "staging"
    cfg = _slow_config(tmp_path, staging, delay_ms=800)
    env = {"SEMROUTE_ADMIN_TOKEN": TOKEN}
    log = tmp_path / "server.log"
    a = copy_bundle(bundles.a, tmp_path / "A")
    try:
        # 1. kill -9 while a bundle is being loaded (unpacked into staging, warming up).
        with _server(cfg, a, log, env) as (proc, target):
            ch = grpc.insecure_channel(target)
            adm = admin_pb2_grpc.AdminServiceStub(ch)
            load = adm.LoadIndex.future(
                apb.LoadIndexRequest(path=str(bundles.b_archive)), metadata=AUTH, timeout=120
            )
            for _ in range(6000):  # the load is under way once its staging dir exists
                if staging.is_dir() and any(staging.iterdir()):
                    break
                time.sleep(0.02)
            else:
                raise AssertionError("the load never started")
            _kill9(proc)
            with pytest.raises(grpc.RpcError):
                load.result()
            ch.close()
        assert any(staging.iterdir())  # the killed load's leftovers
        with _server(cfg, a, log, env) as (proc, target):
            version = json.loads((a / "manifest.json").read_text())["version"]
            assert _served_version(target) == version
            assert not any(staging.iterdir())  # removed at start
            # 2. kill -9 while an activation is under way (it decides the hot requests
            # with the new index first: a new one needs the slow encoder).
            with grpc.insecure_channel(target) as ch:
                adm = admin_pb2_grpc.AdminServiceStub(ch)
                rs = router_pb2_grpc.RouterServiceStub(ch)
                adm.LoadIndex(apb.LoadIndexRequest(path=str(bundles.b)), metadata=AUTH, timeout=120)
                rs.Route(pb.RouteRequest(prompt="a question first seen after the load"), timeout=60)
                act = adm.ActivateIndex.future(
                    apb.ActivateIndexRequest(version=bundles.version_b), metadata=AUTH, timeout=120
                )
                time.sleep(0.2)  # let it start (where it is killed does not change the outcome)
                _kill9(proc)
                with pytest.raises(grpc.RpcError):
                    act.result()
        # The restart serves the configured bundle, intact (no admin.state_file here, so
        # activations are not recorded; see the next test).
        with _server(cfg, a, log, env) as (_, target):
            assert _served_version(target) == version
        read_manifest(a, kind="routes", encoder_id=encoder.id, dim=encoder.dim)
    finally:
        cfg.unlink(missing_ok=True)


def test_with_a_state_file_a_restart_after_kill9_serves_the_last_activated_bundle(
    bundles: Bundles, tmp_path: Path
) -> None:
    state = tmp_path / "active.json"
    cfg = _slow_config(tmp_path, tmp_path / "staging", delay_ms=0, state_file=state)
    env = {"SEMROUTE_ADMIN_TOKEN": TOKEN}
    log = tmp_path / "server.log"
    a = copy_bundle(bundles.a, tmp_path / "A")
    b = copy_bundle(bundles.b, tmp_path / "B")
    version_a = json.loads((a / "manifest.json").read_text())["version"]
    try:
        with _server(cfg, a, log, env) as (proc, target):
            assert _served_version(target) == version_a and not state.exists()
            with grpc.insecure_channel(target) as ch:
                adm = admin_pb2_grpc.AdminServiceStub(ch)
                r = adm.LoadIndex(
                    apb.LoadIndexRequest(path=str(b), activate=apb.ACTIVATION_MODE_ACTIVE),
                    metadata=AUTH,
                    timeout=120,
                )
                assert r.active_version == bundles.version_b
            assert json.loads(state.read_text()) == {
                "version": bundles.version_b,
                "path": str(b),
            }
            _kill9(proc)
        with _server(cfg, a, log, env) as (proc, target):
            assert _served_version(target) == bundles.version_b  # restored
            _kill9(proc)
        # The recorded bundle is gone: the configured one serves, with a warning.
        shutil.rmtree(b)
        with _server(cfg, a, log, env) as (_, target):
            assert _served_version(target) == version_a
        assert "recorded bundle not restored" in log.read_text()
    finally:
        cfg.unlink(missing_ok=True)


def _enospc(*_: Any, **__: Any) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


async def test_a_full_disk_during_a_build_or_a_load_is_a_clear_error_and_the_old_index_serves(
    config: Config, encoder: Any, bundles: Bundles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    live = copy_bundle(bundles.a, tmp_path / "live")
    async with running_app(config, encoder, live) as (_, target), stubs(target) as (adm, rs):
        before = await rs.Route(PROMPT)
        # A rebuild of the served directory fails half-way on a full disk.
        real_copy = shutil.copyfile

        def copy_then_full(src: Any, dst: Any, **kw: Any) -> Any:
            if str(dst).endswith("routes.json"):
                _enospc()
            return real_copy(src, dst, **kw)

        monkeypatch.setattr(bundle_module.shutil, "copyfile", copy_then_full)
        with pytest.raises(BundleError, match="no space left on device") as e:
            bundle_module.build_bundle(bundles.config_b, encoder, live)
        assert str(live) in str(e.value)
        monkeypatch.undo()
        assert (
            read_manifest(live, kind="routes", encoder_id=encoder.id, dim=encoder.dim)["version"]
            == bundles.version_a
        )
        assert sorted(p.name for p in tmp_path.iterdir()) == ["live"]  # no temporary left
        # Loading an archive fails while unpacking it on a full disk.
        monkeypatch.setattr(tarfile.TarFile, "extractall", _enospc)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await adm.LoadIndex(apb.LoadIndexRequest(path=str(bundles.b_archive)), metadata=AUTH)
        monkeypatch.undo()
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "no space left on device" in (err.value.details() or "")
        after = await rs.Route(PROMPT)
        assert after.index_version == before.index_version == bundles.version_a
        assert after.model == before.model
        st = await status(adm)
        assert st.active_version == bundles.version_a and "no space left" in st.last_error
