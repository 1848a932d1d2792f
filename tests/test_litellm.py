"""semroute.integrations.litellm against the real litellm (pinned in the dev extra).

A fake OpenAI-compatible backend on loopback records which model each call asked for (and
answers 503 for chosen models); the real semroute server decides. The Router must serve the
model semroute chose for the prompt, then semroute's fallbacks in semroute's order.
"""

from __future__ import annotations

import os

# Before litellm is imported: never fetch the model cost map from the network.
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"

import json
import threading
import time
import warnings
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import litellm
import pytest
from litellm.caching.dual_cache import DualCache
from litellm.proxy._types import UserAPIKeyAuth

from semroute.config import Config
from semroute.integrations.litellm import (
    SemrouteProxyHook,
    SemrouteRoutingStrategy,
    router_fallbacks,
)
from semroute.v1 import router_pb2, router_pb2_grpc
from tests.conftest import free_port

SLOW_OK = 10.0  # semroute's deadline in these tests: the shared box is slow, not the code
CHAT = [{"role": "user", "content": "design a sharded, replicated key-value store"}]
OTHER = [{"role": "user", "content": "write a SQL query for the top 5 customers by revenue"}]


class FakeOpenAI:
    """/v1/chat/completions on 127.0.0.1 that records the requested model."""

    def __init__(self) -> None:
        self.models: list[str] = []
        self.failing: set[str] = set()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                model = str(body.get("model"))
                outer.models.append(model)
                if model in outer.failing:
                    status, payload = 503, {"error": {"message": "overloaded", "type": "x"}}
                else:
                    status, payload = 200, _completion(model)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.api_base = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def reset(self, failing: set[str] | None = None) -> None:
        self.models.clear()
        self.failing = set(failing or ())

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _completion(model: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": f"served by {model}"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


@pytest.fixture(scope="module")
def backend() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI()
    yield fake
    fake.close()


@pytest.fixture(scope="module")
def pool(config: Config) -> list[str]:
    return [m.name for m in config.models]


def _router(pool: list[str], backend: FakeOpenAI, target: str, **strategy: Any) -> Any:
    model_list = [
        {
            "model_name": name,
            "litellm_params": {
                "model": f"openai/{name}",
                "api_base": backend.api_base,
                "api_key": "k",
            },
        }
        for name in pool
    ]
    router = litellm.Router(model_list=model_list, fallbacks=router_fallbacks(pool))
    options = {"default_model": "claude-haiku-4.5", "timeout": SLOW_OK, **strategy}
    router.register_plugin(SemrouteRoutingStrategy(router, target, **options))
    return router


def _decide(stub: router_pb2_grpc.RouterServiceStub, messages: list[dict[str, str]]) -> Any:
    chat = [router_pb2.ChatMessage(**m) for m in messages]
    return stub.Route(router_pb2.RouteRequest(messages=chat), timeout=SLOW_OK)


def _served(response: Any) -> str:
    return response.choices[0].message.content.removeprefix("served by ")


async def test_router_serves_the_model_semroute_chose(
    server: str, stub: router_pb2_grpc.RouterServiceStub, backend: FakeOpenAI, pool: list[str]
) -> None:
    direct = _decide(stub, CHAT)
    router = _router(pool, backend, server)
    backend.reset()
    response = await router.acompletion(model="auto", messages=CHAT)
    assert backend.models == [direct.model]
    assert _served(response) == direct.model


async def test_on_503_the_router_walks_semroutes_fallbacks_in_order(
    server: str, stub: router_pb2_grpc.RouterServiceStub, backend: FakeOpenAI, pool: list[str]
) -> None:
    direct = _decide(stub, OTHER)
    first, second, third = direct.model, direct.fallbacks[0], direct.fallbacks[1]
    router = _router(pool, backend, server)
    backend.reset(failing={first, second})
    response = await router.acompletion(model="auto", messages=OTHER)
    assert backend.models == [first, second, third]
    assert _served(response) == third


def test_sync_router_and_named_models(
    server: str, stub: router_pb2_grpc.RouterServiceStub, backend: FakeOpenAI, pool: list[str]
) -> None:
    direct = _decide(stub, CHAT)
    router = _router(pool, backend, server)
    backend.reset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        routed = router.completion(model="auto", messages=CHAT)
        named = router.completion(model="gpt-5.5", messages=CHAT)  # not routed: passes through
    assert backend.models == [direct.model, "gpt-5.5"]
    assert (_served(routed), _served(named)) == (direct.model, "gpt-5.5")


async def test_router_fails_open_to_the_default_model(backend: FakeOpenAI, pool: list[str]) -> None:
    router = _router(pool, backend, f"127.0.0.1:{free_port()}", default_model="gemini-2.5-flash")
    backend.reset()
    response = await router.acompletion(model="auto", messages=CHAT)
    assert backend.models == ["gemini-2.5-flash"]
    assert _served(response) == "gemini-2.5-flash"


def _auth() -> UserAPIKeyAuth:
    return UserAPIKeyAuth(api_key="sk-test", team_id="team-a")


async def test_proxy_hook_sets_model_and_fallbacks(
    server: str, stub: router_pb2_grpc.RouterServiceStub
) -> None:
    direct = _decide(stub, CHAT)
    hook = SemrouteProxyHook(server, default_model="claude-haiku-4.5", timeout=SLOW_OK)
    data: dict[str, Any] = {"model": "auto", "messages": CHAT, "metadata": {"k": 1}}
    out = await hook.async_pre_call_hook(_auth(), DualCache(), data, "acompletion")
    assert out is data
    assert data["model"] == direct.model
    assert data["fallbacks"] == list(direct.fallbacks)
    assert data["metadata"]["k"] == 1
    assert data["metadata"]["semroute"]["route"] == direct.route
    assert data["metadata"]["semroute"]["from_fallback"] is False

    known = {direct.model, direct.fallbacks[-1]}
    narrow = SemrouteProxyHook(server, default_model="x", known_models=known, timeout=SLOW_OK)
    data = {"model": "auto", "messages": CHAT}
    await narrow.async_pre_call_hook(_auth(), DualCache(), data, "acompletion")
    assert data["fallbacks"] == [direct.fallbacks[-1]]

    untouched = {"model": "gpt-5.5", "messages": CHAT}
    await hook.async_pre_call_hook(_auth(), DualCache(), untouched, "acompletion")
    assert untouched == {"model": "gpt-5.5", "messages": CHAT}


async def test_proxy_hook_fails_open_when_semroute_is_down() -> None:
    hook = SemrouteProxyHook(
        f"127.0.0.1:{free_port()}",
        default_model="claude-sonnet-4.5",
        default_fallbacks=["gpt-5.5"],
        routed_models={"auto", "cheap"},
        timeout=2.0,
    )
    data: dict[str, Any] = {"model": "cheap", "prompt": "hello"}
    await hook.async_pre_call_hook(_auth(), DualCache(), data, "atext_completion")
    assert (data["model"], data["fallbacks"]) == ("claude-sonnet-4.5", ["gpt-5.5"])
    assert data["metadata"]["semroute"]["from_fallback"] is True
    assert data["metadata"]["semroute"]["error"] == "UNAVAILABLE"
