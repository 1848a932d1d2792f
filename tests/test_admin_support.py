"""Shared pieces of the admin / hot-swap tests: two real bundles and an in-process server.

Bundle A is built from the default config; bundle B from a variant whose
`translation` route has one more utterance and is served by gpt-5.5 only, so
B's index and its decisions differ from A's in a known way. No tests here.
"""

from __future__ import annotations

import contextlib
import copy
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml

from semroute.admin.bundles import build_bundle, pack_archive
from semroute.config import Config, load_config
from semroute.router import Router, RoutingState
from semroute.server import app as app_module
from semroute.server.app import App
from semroute.v1 import admin_pb2 as apb
from semroute.v1 import admin_pb2_grpc, router_pb2_grpc

TOKEN = "test-admin-token-0123456789abcdef"
READ_TOKEN = "test-read-token-0123456789abcdef"
AUTH = (("authorization", f"Bearer {TOKEN}"),)
# One clear prompt per route family, with the route and the model bundle A (the default
# config) and bundle B (translation served by gpt-5.5 only) decide for it. Fixed by hand,
# so the admin and hot-swap tests do not take their expectations from the code they test.
EXPECTED: dict[str, tuple[str, str, str]] = {
    "what are your opening hours?": ("faq_lookup", "mistral-small-3.2", "mistral-small-3.2"),
    "translate this paragraph into French": ("translation", "gemini-2.5-flash", "gpt-5.5"),
    "summarize this report in three bullet points": (
        "summarization",
        "gemini-2.5-flash",
        "gemini-2.5-flash",
    ),
    "write a python function that parses a CSV file": (
        "code_generation",
        "claude-sonnet-4.5",
        "claude-sonnet-4.5",
    ),
    "please translate this into German": ("translation", "gemini-2.5-flash", "gpt-5.5"),
    "hi there!": ("greeting", "mistral-small-3.2", "mistral-small-3.2"),
    "how do I reset my password?": ("faq_lookup", "mistral-small-3.2", "mistral-small-3.2"),
    # formal_math's bar (0.95) is cleared by gpt-5.5 (0.95) and claude-opus-4.5 (0.96); opus
    # is cheaper per output token.
    "prove that the square root of two is irrational": (
        "formal_math",
        "claude-opus-4.5",
        "claude-opus-4.5",
    ),
}
PROMPTS = tuple(EXPECTED)


@dataclass(frozen=True)
class Bundles:
    a: Path
    b: Path
    b_archive: Path
    config_a: Config
    config_b: Config
    version_a: str
    version_b: str


_BUILT: dict[str, Bundles] = {}


def variant_config(out: Path) -> Config:
    data = yaml.safe_load(Path(load_config().source).read_text())  # type: ignore[arg-type]
    data = copy.deepcopy(data)
    for route in data["routes"]:
        if route["name"] == "translation":
            route["models"] = ["gpt-5.5"]
            route["utterances"] = [*route["utterances"], "render this sentence in Portuguese"]
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return load_config(out)


def two_bundles(root: Path, config: Config, encoder: Any) -> Bundles:
    """Build A and B (and B as .tar.gz) once per test session."""
    if "pair" not in _BUILT:
        root.mkdir(parents=True, exist_ok=True)
        config_b = variant_config(root / "variant.yaml")
        ma = build_bundle(config, encoder, root / "A", eval_figures={"probe_route_accuracy": 0.9})
        mb = build_bundle(config_b, encoder, root / "B", eval_figures={"probe_route_accuracy": 0.8})
        archive = pack_archive(root / "B", root / "B.tar.gz")
        _BUILT["pair"] = Bundles(
            root / "A", root / "B", archive, config, config_b, ma["version"], mb["version"]
        )
    return _BUILT["pair"]


@pytest.fixture(scope="session")
def bundles(tmp_path_factory: pytest.TempPathFactory, config: Config, encoder: Any) -> Bundles:
    return two_bundles(tmp_path_factory.mktemp("admin-bundles"), config, encoder)


def copy_bundle(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def expectations(bundles: Bundles) -> dict[str, dict[str, tuple[str, str, str]]]:
    """version -> prompt -> (config_version, model, route) that version decides."""
    return {
        bundles.version_a: {
            p: (bundles.config_a.version, model_a, route)
            for p, (route, model_a, _) in EXPECTED.items()
        },
        bundles.version_b: {
            p: (bundles.config_b.version, model_b, route)
            for p, (route, _, model_b) in EXPECTED.items()
        },
    }


@contextlib.asynccontextmanager
async def running_app(
    config: Config,
    encoder: Any,
    index_dir: Path,
    *,
    env: dict[str, str] | None = None,
    **admin: Any,
) -> AsyncIterator[tuple[App, str]]:
    """An in-process App on 127.0.0.1 with the session encoder, admin settings overridden."""
    cfg = config.model_copy(update={"admin": config.admin.model_copy(update=admin)})
    env = {"SEMROUTE_ADMIN_TOKEN": TOKEN} if env is None else env
    with pytest.MonkeyPatch.context() as mp:
        for name in ("SEMROUTE_ADMIN_TOKEN", "SEMROUTE_ADMIN_READ_TOKEN"):
            mp.delenv(name, raising=False)
        for k, v in env.items():
            mp.setenv(k, v)
        mp.setattr(
            app_module,
            "load_router",
            lambda c, idx=None: Router(encoder, RoutingState.load(c, encoder, idx)),
        )
        app = App(cfg, "127.0.0.1", 0, index_dir=index_dir)
        port = await app.start()
        try:
            await app.load()
        except BaseException:
            await app.stop(grace=0)
            raise
    try:
        yield app, f"127.0.0.1:{port}"
    finally:
        await app.stop(grace=1)


@contextlib.asynccontextmanager
async def stubs(
    target: str,
) -> AsyncIterator[tuple[admin_pb2_grpc.AdminServiceStub, router_pb2_grpc.RouterServiceStub]]:
    async with grpc.aio.insecure_channel(target) as ch:
        yield admin_pb2_grpc.AdminServiceStub(ch), router_pb2_grpc.RouterServiceStub(ch)


async def status(admin: admin_pb2_grpc.AdminServiceStub) -> apb.GetStatusResponse:
    return await admin.GetStatus(apb.GetStatusRequest(), metadata=AUTH, timeout=10)
