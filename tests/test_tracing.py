"""Traces: off by default, and when on, a Route call continues the caller's W3C trace with
one `semroute.decide` span and a child per pipeline stage, none carrying the prompt."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from semroute import tracing
from semroute.config import Config
from semroute.v1 import router_pb2 as pb

from .test_admin_support import Bundles, bundles, running_app, stubs

__all__ = ["bundles"]

pytest.importorskip("opentelemetry.sdk")
pytest.importorskip("opentelemetry.instrumentation.grpc")

from opentelemetry.trace import SpanKind, StatusCode

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = (("traceparent", f"00-{TRACE_ID}-{PARENT_ID}-01"),)
# A word that appears nowhere but in the prompts: found in a span, it leaked.
MARK = "zebracorn"
PROMPT = f"translate this paragraph about the {MARK} into French"
ENCODER_STAGES = {"validate", "decision_cache", "rules", "fast_tier", "queue+encode"}


def _everything_said(span: Any) -> str:
    """Every string a span exports: name, attributes, status, events."""
    parts = [span.name, str(dict(span.attributes or {})), str(span.status.description)]
    for event in span.events:
        parts += [event.name, str(dict(event.attributes or {}))]
    return "\n".join(parts)


def test_off_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "OTEL_TRACES_EXPORTER",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_SDK_DISABLED",
    ):
        monkeypatch.delenv(name, raising=False)
    assert not tracing.wanted()
    assert not tracing.configure()
    assert not tracing.ENABLED
    assert tracing.server_interceptors() == []
    assert tracing.stage("validate") is tracing.stage("rules")  # the shared no-op
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    assert not tracing.wanted()
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    assert tracing.wanted()
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert not tracing.wanted()
    monkeypatch.delenv("OTEL_SDK_DISABLED")
    monkeypatch.delenv("OTEL_TRACES_EXPORTER")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
    assert tracing.wanted()


def test_configure_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "semroute-test")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    try:
        assert tracing.configure()
        assert tracing.ENABLED
        assert len(tracing.server_interceptors()) == 1
        provider = tracing._provider
        assert provider is not None
        assert provider.resource.attributes["service.name"] == "semroute-test"
        assert provider.sampler.get_description() == "AlwaysOffSampler"
    finally:
        tracing.disable()
    assert not tracing.ENABLED
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "no-such-exporter")
    assert not tracing.configure()  # nothing to export to: stays off
    assert not tracing.ENABLED


async def test_a_route_call_continues_the_callers_trace(
    config: Config, encoder: Any, bundles: Bundles, monkeypatch: pytest.MonkeyPatch
) -> None:
    request = pb.RouteRequest(prompt=PROMPT, request_id="t1", tenant="acme")
    with tracing.capture() as exporter:
        async with (
            running_app(config, encoder, bundles.a) as (app, target),
            stubs(target) as (_, rs),
        ):
            miss = await rs.Route(request, metadata=TRACEPARENT)
            request.request_id = "t2"
            hit = await rs.Route(request, metadata=TRACEPARENT)
            assert app.pipeline.wire_hits == 1
            bad = pb.RouteRequest(prompt=PROMPT, allowed_models=["no-such-model"])
            with pytest.raises(grpc.aio.AioRpcError):
                await rs.Route(bad, metadata=TRACEPARENT)

            def broken_plan(query: Any, state: Any) -> Any:
                raise RuntimeError(f"cannot plan {query.text!r}")

            monkeypatch.setattr(app.pipeline.router, "plan", broken_plan)
            with pytest.raises(grpc.aio.AioRpcError) as internal:
                await rs.Route(pb.RouteRequest(prompt=PROMPT + " again"), metadata=TRACEPARENT)
            assert internal.value.code() == grpc.StatusCode.INTERNAL
            async with grpc.aio.insecure_channel(target) as ch:
                check = health_pb2_grpc.HealthStub(ch).Check
                await check(health_pb2.HealthCheckRequest(), metadata=TRACEPARENT)
    spans = exporter.get_finished_spans()
    assert not tracing.ENABLED

    # Everything belongs to the caller's trace; the server spans are children of its span.
    assert spans and {f"{s.context.trace_id:032x}" for s in spans} == {TRACE_ID}
    servers = [s for s in spans if s.kind == SpanKind.SERVER]
    assert [s.name for s in servers] == ["/semroute.v1.RouterService/Route"] * 4  # no health
    assert {f"{s.parent.span_id:016x}" for s in servers} == {PARENT_ID}
    decides = [s for s in spans if s.name == "semroute.decide"]
    assert len(decides) == 4
    server_ids = {s.context.span_id for s in servers}
    assert all(d.parent.span_id in server_ids for d in decides)

    def children(parent: Any) -> dict[str, Any]:
        return {s.name: s for s in spans if s.parent and s.parent.span_id == parent.context.span_id}

    by_request = {d.attributes.get("semroute.request_id"): d for d in decides}
    first, repeat = by_request["t1"], by_request["t2"]
    # The miss: every stage it ran, each a child of semroute.decide, with the decision.
    stages = children(first)
    assert set(stages) >= ENCODER_STAGES and "classify+policy" in stages
    assert first.attributes["semroute.model"] == miss.model
    assert first.attributes["semroute.route"] == miss.route == "translation"
    assert first.attributes["semroute.tier"] == "encoder"
    assert (
        first.attributes["semroute.reason"]
        == pb.DecisionReason.Name(miss.reason).removeprefix("DECISION_REASON_").lower()
    )
    assert first.attributes["semroute.index_version"] == miss.index_version == bundles.version_a
    assert first.attributes["semroute.config_version"] == miss.config_version
    assert first.attributes["semroute.classifier_version"] == miss.classifier_version
    # The exact-bytes hit: one decision_cache child, the cached decision's attributes.
    hit_stages = children(repeat)
    assert set(hit_stages) == {"decision_cache"}
    assert hit_stages["decision_cache"].attributes["semroute.cache"] == "exact_bytes"
    assert (repeat.attributes["semroute.tier"], repeat.attributes["semroute.model"]) == (
        "cache",
        hit.model,
    )
    # Failures: marked on semroute.decide with their code.
    errors = sorted(d.attributes.get("semroute.error", "") for d in decides)
    assert errors == ["", "", "INTERNAL", "INVALID_ARGUMENT"]
    assert all(
        d.status.status_code == StatusCode.ERROR
        for d in decides
        if d.attributes.get("semroute.error")
    )
    # No span says anything about the prompt's text, the failing ones included.
    for s in spans:
        assert MARK not in _everything_said(s), s.name


def test_the_server_runs_without_opentelemetry_installed() -> None:
    """The extra is optional: with its packages unimportable, the server's modules load and
    a tracing request in the environment only logs a warning."""
    import os
    import subprocess
    import sys

    code = (
        "import sys\n"
        "class NoOtel:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'opentelemetry':\n"
        "            raise ImportError('blocked: ' + name)\n"
        "sys.meta_path.insert(0, NoOtel())\n"
        "import semroute.server.app, semroute.pipeline\n"
        "from semroute import tracing\n"
        "assert tracing.wanted()\n"
        "assert not tracing.configure() and not tracing.ENABLED\n"
        "assert tracing.server_interceptors() == []\n"
        "print('ok')\n"
    )
    env = {**os.environ, "OTEL_TRACES_EXPORTER": "console"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
