"""The thin client (clients/python): retries, deadlines, fail-open, TLS, and a clean install.

Retries are checked against a scripted fake RouterService on loopback that counts attempts;
decisions against the real server (`server` fixture); the install from a fresh venv proves
the client needs neither the server's dependencies nor semroute itself.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import threading
import venv
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from semroute_client import (
    AsyncSemrouteClient,
    Decision,
    RetryPolicy,
    SemrouteClient,
    build_request,
)
from semroute_client.v1 import router_pb2, router_pb2_grpc

from tests.conftest import REPO, free_port
from tests.tls_certs import Authority

PROMPT = "design a sharded, replicated key-value store with exactly-once semantics"
# Generous budgets for the shared 2-core box: these tests are about behaviour, not speed.
PATIENT = RetryPolicy(max_attempts=3, initial_backoff_s=0.001, max_backoff_s=0.005)
SLOW_OK = 10.0


class ScriptedRouter(router_pb2_grpc.RouterServiceServicer):
    """Answers Route with the next scripted status (OK once the script runs out)."""

    def __init__(self) -> None:
        self.script: list[grpc.StatusCode] = []
        self.attempts = 0
        self.hold_s = 0.0
        self.pushback_ms: str | None = None  # sent with a refusal, like semroute under load
        self._lock = threading.Lock()
        self._release = threading.Event()

    def reset(
        self, *script: grpc.StatusCode, hold_s: float = 0.0, pushback_ms: str | None = None
    ) -> None:
        with self._lock:
            self.script = list(script)
            self.attempts = 0
            self.hold_s = hold_s
            self.pushback_ms = pushback_ms

    def release(self) -> None:
        self._release.set()

    def Route(
        self, request: router_pb2.RouteRequest, context: grpc.ServicerContext
    ) -> router_pb2.RouteDecision:
        with self._lock:
            self.attempts += 1
            code = self.script.pop(0) if self.script else grpc.StatusCode.OK
            hold = self.hold_s
        if hold:
            self._release.wait(hold)  # bounded: the client's deadline ends the call first
        if code != grpc.StatusCode.OK:
            if self.pushback_ms is not None:
                context.set_trailing_metadata((("grpc-retry-pushback-ms", self.pushback_ms),))
            context.abort(code, f"scripted {code.name}")
        return router_pb2.RouteDecision(
            request_id=request.request_id or "fake-1",
            model="fake-model",
            fallbacks=["fake-fallback"],
            route="general",
            reason=router_pb2.DECISION_REASON_CLASSIFIER,
        )


def _serve(
    servicer: ScriptedRouter, creds: grpc.ServerCredentials | None = None
) -> tuple[grpc.Server, str]:
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    router_pb2_grpc.add_RouterServiceServicer_to_server(servicer, srv)
    port = free_port()
    if creds is None:
        srv.add_insecure_port(f"127.0.0.1:{port}")
    else:
        srv.add_secure_port(f"127.0.0.1:{port}", creds)
    srv.start()
    return srv, f"127.0.0.1:{port}"


@pytest.fixture(scope="module")
def fake() -> Iterator[tuple[ScriptedRouter, str]]:
    servicer = ScriptedRouter()
    srv, target = _serve(servicer)
    yield servicer, target
    servicer.release()
    srv.stop(grace=None)


U, R, INV = (
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.INVALID_ARGUMENT,
)


@pytest.mark.parametrize(
    ("pushback_ms", "attempts"),
    [
        ("1", 2),  # short pushback: waited, then retried
        ("60000", 1),  # a pushback past the deadline: no retry into the same refusal
        ("garbage", 2),  # unreadable: plain backoff
    ],
)
def test_server_pushback_sets_the_retry_pause(
    fake: tuple[ScriptedRouter, str], pushback_ms: str, attempts: int
) -> None:
    servicer, target = fake
    servicer.reset(R, pushback_ms=pushback_ms)
    with SemrouteClient(target, timeout=SLOW_OK, retry=PATIENT) as client:
        d = client.route_or_default("hello there", default_model="cheap")
    assert servicer.attempts == attempts
    assert d.model == ("cheap" if attempts == 1 else "fake-model")


@pytest.mark.parametrize(
    ("script", "attempts", "outcome"),
    [
        ([U, U], 3, None),  # UNAVAILABLE twice, then OK
        ([R], 2, None),  # RESOURCE_EXHAUSTED is retried too
        ([INV], 1, INV),  # a bad request would fail again: not retried
        ([grpc.StatusCode.FAILED_PRECONDITION], 1, grpc.StatusCode.FAILED_PRECONDITION),
        ([U, U, U, U], 3, U),  # attempts are bounded by max_attempts
    ],
)
def test_sync_retries_only_unavailable_and_resource_exhausted(
    fake: tuple[ScriptedRouter, str],
    script: list[grpc.StatusCode],
    attempts: int,
    outcome: grpc.StatusCode | None,
) -> None:
    servicer, target = fake
    servicer.reset(*script)
    with SemrouteClient(target, timeout=SLOW_OK, retry=PATIENT) as client:
        if outcome is None:
            decision = client.route("hello there")
            assert (decision.model, decision.fallbacks) == ("fake-model", ("fake-fallback",))
            assert decision.reason == "CLASSIFIER" and not decision.from_fallback
        else:
            with pytest.raises(grpc.RpcError) as err:
                client.route("hello there")
            assert err.value.code() == outcome
    assert servicer.attempts == attempts


@pytest.mark.parametrize(
    ("script", "attempts", "outcome"),
    [([U, U], 3, None), ([R], 2, None), ([INV], 1, INV), ([R, R, R], 3, R)],
)
async def test_async_retries_only_unavailable_and_resource_exhausted(
    fake: tuple[ScriptedRouter, str],
    script: list[grpc.StatusCode],
    attempts: int,
    outcome: grpc.StatusCode | None,
) -> None:
    servicer, target = fake
    servicer.reset(*script)
    async with AsyncSemrouteClient(target, timeout=SLOW_OK, retry=PATIENT) as client:
        if outcome is None:
            assert (await client.route("hello there")).model == "fake-model"
        else:
            with pytest.raises(grpc.RpcError) as err:
                await client.route("hello there")
            assert err.value.code() == outcome
    assert servicer.attempts == attempts


def test_no_retry_starts_without_enough_deadline_left(fake: tuple[ScriptedRouter, str]) -> None:
    """Retries stay inside the call's deadline: a retry that could not get `min_attempt_s`
    before the deadline is not made, however many attempts remain."""
    servicer, target = fake
    servicer.reset(U, U)
    budget = RetryPolicy(max_attempts=10, min_attempt_s=SLOW_OK * 2)
    with (
        SemrouteClient(target, timeout=SLOW_OK, retry=budget) as client,
        pytest.raises(grpc.RpcError) as err,
    ):
        client.route("hello there")
    assert err.value.code() == U
    assert servicer.attempts == 1


def test_a_slow_server_times_out_once_and_fails_open(fake: tuple[ScriptedRouter, str]) -> None:
    servicer, target = fake
    servicer.reset(hold_s=3.0)
    with SemrouteClient(target, timeout=0.5, retry=PATIENT) as client:
        with pytest.raises(grpc.RpcError) as err:
            client.route("hello there")
        assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert servicer.attempts == 1  # DEADLINE_EXCEEDED is not retried
        servicer.reset(hold_s=3.0)
        decision = client.route_or_default("hello", default_model="house-model", request_id="r-1")
    assert decision == Decision(
        model="house-model",
        request_id="r-1",
        reason="FAIL_OPEN",
        from_fallback=True,
        error="DEADLINE_EXCEEDED",
    )


async def test_fail_open_never_raises(fake: tuple[ScriptedRouter, str]) -> None:
    """Refusals, bad arguments and dead servers all give the default model."""
    servicer, target = fake
    dead = f"127.0.0.1:{free_port()}"
    servicer.reset(INV)
    with SemrouteClient(target, timeout=SLOW_OK) as client:
        refused = client.route_or_default("x", default_model="d", default_fallbacks=["e"])
        bad = client.route_or_default("x", default_model="d", preset="cheapest")
    with SemrouteClient(dead, timeout=2.0) as client:
        down = client.route_or_default("x", default_model="d")
    async with AsyncSemrouteClient(dead, timeout=2.0) as aclient:
        adown = await aclient.route_or_default("x", default_model="d")
    assert (refused.model, refused.fallbacks, refused.error) == ("d", ("e",), "INVALID_ARGUMENT")
    assert (bad.model, bad.error) == ("d", "ValueError")
    assert (down.model, down.error, adown.model, adown.error) == (
        "d",
        "UNAVAILABLE",
        "d",
        "UNAVAILABLE",
    )
    assert all(d.from_fallback and not d.route for d in (refused, bad, down, adown))


def test_tls(tmp_path: Path) -> None:
    ca = Authority("semroute-test-ca")
    leaf = ca.issue("127.0.0.1", server=True)
    creds = grpc.ssl_server_credentials([(leaf.key, leaf.cert)])
    servicer = ScriptedRouter()
    srv, target = _serve(servicer, creds)
    try:
        with SemrouteClient(target, timeout=SLOW_OK, tls=True, root_certificates=ca.pem) as c:
            assert c.route("hi there").model == "fake-model"
        with SemrouteClient(target, timeout=1.0) as plaintext:
            assert plaintext.route_or_default("hi", default_model="d").from_fallback
        with pytest.raises(ValueError, match="tls=False"):
            SemrouteClient(target, root_certificates=ca.pem)
    finally:
        srv.stop(grace=None)


def test_backoff_is_jittered_and_capped() -> None:
    policy = RetryPolicy(initial_backoff_s=0.01, max_backoff_s=0.03, multiplier=2.0)
    rng = random.Random(7)
    for failed, cap in [(1, 0.01), (2, 0.02), (3, 0.03), (8, 0.03)]:
        pauses = [policy.pause(failed, rng) for _ in range(200)]
        assert all(0.0 <= p <= cap for p in pauses)
        assert max(pauses) > cap * 0.8 and len(set(pauses)) > 100  # spread, not fixed
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)


def test_build_request_from_openai_messages() -> None:
    req = build_request(
        messages=[
            {"role": "developer", "content": "be brief"},
            {
                "role": "user",
                "content": [{"type": "text", "text": "what is"}, {"type": "image_url"}],
            },
            {"role": "user", "content": "2+2?"},
        ],
        preset="cost",
        allowed_models=["a"],
        max_cost_usd=0.5,
    )
    assert [(m.role, m.content) for m in req.messages] == [
        ("system", "be brief"),
        ("user", "what is"),
        ("user", "2+2?"),
    ]
    assert req.preset == router_pb2.PRESET_COST and list(req.allowed_models) == ["a"]
    assert req.HasField("max_cost_usd") and not req.HasField("quality_preference")


def test_decisions_match_the_server(server: str, stub: router_pb2_grpc.RouterServiceStub) -> None:
    direct = stub.Route(router_pb2.RouteRequest(prompt=PROMPT), timeout=SLOW_OK)
    with SemrouteClient(server, timeout=SLOW_OK) as client:
        decision = client.route(PROMPT, request_id="client-1")
    assert (decision.model, decision.fallbacks) == (direct.model, tuple(direct.fallbacks))
    assert decision.route == direct.route and decision.request_id == "client-1"
    assert not decision.from_fallback and decision.raw.candidates


async def test_async_client_against_the_server(server: str) -> None:
    async with AsyncSemrouteClient(server, timeout=SLOW_OK) as client:
        decision = await client.route(
            messages=[{"role": "user", "content": "what are your opening hours?"}],
            excluded_models=["mistral-small-3.2"],
        )
    assert decision.model and decision.model != "mistral-small-3.2"
    assert "mistral-small-3.2" not in decision.fallbacks


CLEAN_SCRIPT = """
import importlib.util, json, sys
from semroute_client import SemrouteClient
target, dead, prompt = sys.argv[1:4]
present = [m for m in ("onnxruntime", "faiss", "numpy", "semroute")
           if importlib.util.find_spec(m) is not None]
with SemrouteClient(target, timeout=30.0) as client:
    d = client.route(prompt)
with SemrouteClient(dead, timeout=0.5) as client:
    f = client.route_or_default(prompt, default_model="house-model")
print(json.dumps({"present": present, "model": d.model, "fallbacks": list(d.fallbacks),
                  "route": d.route, "default": f.model, "from_fallback": f.from_fallback}))
"""


@pytest.mark.venv
def test_clean_venv_install_needs_only_grpcio_and_protobuf(
    tmp_path: Path, server: str, stub: router_pb2_grpc.RouterServiceStub
) -> None:
    """pip install ./clients/python into a fresh venv (no semroute, no server dependencies),
    then route against the live server from there."""
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    subprocess.run(
        [py, "-m", "pip", "install", "-q", str(REPO / "clients" / "python")],
        check=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    out = subprocess.run(
        [py, "-I", "-c", CLEAN_SCRIPT, server, f"127.0.0.1:{free_port()}", PROMPT],
        check=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        capture_output=True,
        text=True,
    )
    got = json.loads(out.stdout)
    direct = stub.Route(router_pb2.RouteRequest(prompt=PROMPT), timeout=SLOW_OK)
    assert got["present"] == []
    assert (got["model"], got["fallbacks"], got["route"]) == (
        direct.model,
        list(direct.fallbacks),
        direct.route,
    )
    assert (got["default"], got["from_fallback"]) == ("house-model", True)
