"""Shared fixtures: the bundled encoder, a built index, and a real server on loopback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from semroute.config import Config, load_config
from semroute.v1 import router_pb2_grpc

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("SEMROUTE_SHARED_DATA", REPO.parent / "shared" / "data"))


def count_encodes(monkeypatch: pytest.MonkeyPatch, router) -> list[str]:  # type: ignore[no-untyped-def]
    """Record every text the router's (full) encoder embeds from now on."""
    encoded: list[str] = []
    real_encode = router.encoder.encode

    def counting_encode(texts):  # type: ignore[no-untyped-def]
        encoded.extend(texts)
        return real_encode(texts)

    monkeypatch.setattr(router.encoder, "encode", counting_encode)
    return encoded


# The cascade's static head is unsure of this prompt, so it reaches the encoder.
ENCODER_BOUND_PROMPT = "is it worth refinancing my mortgage when rates drop half a point"


def tiers_until_each_worker_encoded(target: str, workers: int = 2, tries: int = 400) -> list[int]:
    """Send ENCODER_BOUND_PROMPT over a new connection each time (the kernel spreads them
    over `--workers` processes, each with its own caches) until `workers` answers came
    from an encoder: one per process. Returns every answer's tier, in order."""
    from semroute.v1 import router_pb2 as pb

    request = pb.RouteRequest(prompt=ENCODER_BOUND_PROMPT)
    tiers: list[int] = []
    fresh = [("grpc.use_local_subchannel_pool", 1)]
    for _ in range(tries):
        with grpc.insecure_channel(target, options=fresh) as ch:
            try:
                d = router_pb2_grpc.RouterServiceStub(ch).Route(request, timeout=30)
            except grpc.RpcError as e:
                # the other process may still be loading its model: try another connection
                assert e.code() == grpc.StatusCode.UNAVAILABLE, e
                continue
        tiers.append(d.tier)
        if tiers.count(pb.TIER_ENCODER) == workers:
            break
    return tiers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_serving(target: str, timeout: float = 60.0, proc: subprocess.Popen | None = None) -> None:
    """Poll grpc.health.v1 until SERVING; fail early if the server process died."""
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(target) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}")
            try:
                r = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
                if r.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.1)
    raise TimeoutError(f"{target} not SERVING after {timeout}s")


@pytest.fixture(scope="session")
def config() -> Config:
    return load_config()


@pytest.fixture(scope="session")
def encoder(config: Config):  # type: ignore[no-untyped-def]
    from semroute.encoder import Encoder, default_model_dir

    return Encoder(default_model_dir(), max_tokens=config.encoder.max_tokens)


@pytest.fixture(scope="session")
def index_dir(tmp_path_factory: pytest.TempPathFactory, config: Config, encoder) -> Path:  # type: ignore[no-untyped-def]
    from semroute.route_index import build_route_index

    out = tmp_path_factory.mktemp("index") / "default"
    build_route_index(config, encoder, out)
    return out


@pytest.fixture(scope="session")
def router(config: Config, encoder, index_dir: Path):  # type: ignore[no-untyped-def]
    from semroute.router import Router, RoutingState

    return Router(encoder, RoutingState.load(config, encoder, index_dir))


def build_served_router(config: Config, encoder, index_dir: Path):  # type: ignore[no-untyped-def]
    """The default config as `semroute serve` runs it: with the static encoder, so the
    cascade's static tier answers what it is sure of and the classifier the rest. A new one
    has empty caches, so its first answer to a prompt comes from a tier, not a cache."""
    from semroute.encoder.static import StaticEncoder, default_static_dir
    from semroute.router import Router, RoutingState

    static = StaticEncoder(default_static_dir(), max_tokens=config.encoder.max_tokens)
    return Router(encoder, RoutingState.load(config, encoder, index_dir, static), static)


@pytest.fixture(scope="session")
def served_router(config: Config, encoder, index_dir: Path):  # type: ignore[no-untyped-def]
    return build_served_router(config, encoder, index_dir)


@pytest.fixture(scope="session")
def server(index_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `semroute serve` process on 127.0.0.1 with the bundled model and default config."""
    port = free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "semroute",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--index",
                str(index_dir),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
    target = f"127.0.0.1:{port}"
    try:
        wait_serving(target, proc=proc)
    except Exception:
        proc.kill()
        raise RuntimeError(f"server failed to start:\n{log.read_text()}") from None
    yield target
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="session")
def stub(server: str) -> Iterator[router_pb2_grpc.RouterServiceStub]:
    with grpc.insecure_channel(server) as ch:
        yield router_pb2_grpc.RouterServiceStub(ch)
