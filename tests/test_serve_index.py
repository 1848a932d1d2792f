"""`semroute serve --index` with a .tar.gz archive and with a self-contained bundle (its own
config.yaml): real server processes on loopback, real bundles (tests/test_admin_support.py)."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import yaml

from semroute.admin.bundles import serving_config
from semroute.bundle import BundleError
from semroute.config import Config
from semroute.v1 import router_pb2 as pb
from semroute.v1 import router_pb2_grpc

from .conftest import REPO, free_port, wait_serving
from .test_admin_support import Bundles, bundles, copy_bundle

__all__ = ["bundles"]  # the fixture, re-exported for pytest

TRANSLATE = "translate this paragraph into French"


def _config_with_staging(tmp_path: Path, staging: Path) -> Path:
    """The default config, archives unpacked into `staging` (to see it cleaned up)."""
    out = tmp_path / "serve.yaml"
    default = REPO / "configs" / "default.yaml"
    out.write_text(
        yaml.safe_dump({"extends": str(default), "admin": {"staging_dir": str(staging)}})
    )
    return out


def _serve_cmd(index: Path, config: Path | None, port: int) -> list[str]:
    cmd = [sys.executable, "-m", "semroute", "serve", "--host", "127.0.0.1", "--port", str(port)]
    return [*cmd, "--index", str(index), *(["--config", str(config)] if config else [])]


@contextlib.contextmanager
def _server(index: Path, config: Path | None, log: Path) -> Iterator[str]:
    port = free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            _serve_cmd(index, config, port), stdout=out, stderr=subprocess.STDOUT, cwd=REPO
        )
    target = f"127.0.0.1:{port}"
    try:
        try:
            wait_serving(target, proc=proc)
        except Exception:
            raise RuntimeError(f"server failed to start:\n{log.read_text()}") from None
        yield target
    finally:
        proc.terminate()
        try:
            assert proc.wait(timeout=30) == 0
        except subprocess.TimeoutExpired:
            proc.kill()
            raise


def _decide(target: str) -> pb.RouteDecision:
    with grpc.insecure_channel(target) as ch:
        return router_pb2_grpc.RouterServiceStub(ch).Route(
            pb.RouteRequest(prompt=TRANSLATE), timeout=30
        )


def test_serve_index_archive_serves_the_bundle_with_its_own_config(
    bundles: Bundles, tmp_path: Path
) -> None:
    staging = tmp_path / "staging"
    cfg = _config_with_staging(tmp_path, staging)
    with _server(bundles.b_archive, cfg, tmp_path / "server.log") as target:
        d = _decide(target)
        assert (d.index_version, d.config_version, d.model) == (
            bundles.version_b,
            bundles.config_b.version,
            "gpt-5.5",
        )
        assert any(staging.iterdir())  # unpacked once, for the server's lifetime
    assert not any(staging.iterdir())  # removed on exit


def test_serve_index_self_contained_dir_uses_its_config(bundles: Bundles, tmp_path: Path) -> None:
    # The default config's routes differ from B's: without B's own config the server would
    # refuse B's index as built from other routes.
    with _server(bundles.b, None, tmp_path / "server.log") as target:
        d = _decide(target)
        assert (d.index_version, d.config_version) == (bundles.version_b, bundles.config_b.version)


def _truncated(bundles: Bundles, p: Path) -> None:
    data = bundles.b_archive.read_bytes()
    p.write_bytes(data[: len(data) // 2])


def _not_gzip(_: Bundles, p: Path) -> None:
    p.write_bytes(b"this is not an archive at all\n" * 10)


@pytest.mark.parametrize(
    ("make", "message"),
    [(_truncated, "not a readable .tar.gz bundle"), (_not_gzip, "not a readable .tar.gz bundle")],
)
def test_serve_index_bad_archive_exits_non_zero_with_a_readable_message(
    bundles: Bundles, tmp_path: Path, make: object, message: str
) -> None:
    bad = tmp_path / "bad.tar.gz"
    make(bundles, bad)  # type: ignore[operator]
    staging = tmp_path / "staging"
    cfg = _config_with_staging(tmp_path, staging)
    r = subprocess.run(
        _serve_cmd(bad, cfg, free_port()), capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert r.returncode == 2
    assert f"semroute serve: {bad}: {message}" in r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    assert not any(staging.iterdir())


def test_a_bundle_config_that_does_not_match_its_checksum_is_refused(
    config: Config, bundles: Bundles, tmp_path: Path
) -> None:
    b = copy_bundle(bundles.b, tmp_path / "b")
    assert serving_config(config, b).version == bundles.config_b.version
    (b / "config.yaml").write_text((b / "config.yaml").read_text() + "\n# edited\n")
    with pytest.raises(BundleError, match=r"checksum mismatch on config\.yaml"):
        serving_config(config, b)
