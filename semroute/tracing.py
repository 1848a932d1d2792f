"""OpenTelemetry traces of the serving pipeline, off unless the `OTEL_*` environment asks.

All the tracing glue lives here; the pipeline calls it through a few hook
lines. Off (the default, and whenever `opentelemetry-sdk` is not installed),
`ENABLED` is False and every hook is one check of that flag, or a call that
returns a shared no-op context, so the exact-bytes hit path pays one branch.

On: the gRPC server gets OpenTelemetry's aio server interceptor, so a call's
server span continues the caller's W3C `traceparent`; `semroute.decide` is
its child, with one child per pipeline stage that ran (validate,
decision_cache, rules, similar_cache, fast_tier, queue+encode,
classify+policy). Attributes carry what was decided and by which versions;
never the prompt or anything derived from its text.

Configured by the standard variables: `OTEL_TRACES_EXPORTER` (e.g. `otlp`,
`console`; any installed exporter entry point), `OTEL_EXPORTER_OTLP_ENDPOINT`
(alone it means `otlp`), `OTEL_SERVICE_NAME` (default `semroute`),
`OTEL_TRACES_SAMPLER`/`_ARG`, `OTEL_SDK_DISABLED`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span, Tracer

    from semroute.v1 import router_pb2 as pb

log = logging.getLogger("semroute.tracing")

# Checked before any span work: the only cost of tracing when it is off.
ENABLED = False
_tracer: Tracer | None = None
_provider: TracerProvider | None = None
# The wall clock minus perf_counter at enable time: spans of work already done
# (an exact-bytes hit) are dated from the pipeline's perf_counter stamps.
_EPOCH_OFFSET_NS = 0
_NULL = contextlib.nullcontext()

TRACER_NAME = "semroute"


def wanted() -> bool:
    """Whether the environment asks for traces (nothing set: no)."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporters:
        return exporters != "none"
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    )


def configure() -> bool:
    """Turn tracing on when the environment asks and the SDK is installed; True if on.

    Called once per server process before the gRPC server is built.
    """
    if not wanted():
        return False
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        log.warning(
            "OTEL_* asks for traces but opentelemetry-sdk is not installed "
            "(pip install 'semroute[otel]'); tracing stays off"
        )
        return False
    exporters = _exporters()
    if not exporters:
        return False
    attrs: dict[str, str] = {}
    if not os.environ.get("OTEL_SERVICE_NAME") and "service.name=" not in os.environ.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    ):
        attrs["service.name"] = "semroute"
    provider = TracerProvider(resource=Resource.create(attrs))  # sampler: OTEL_TRACES_SAMPLER
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    enable(provider)
    log.info("tracing on", extra={"fields": {"exporters": [type(e).__name__ for e in exporters]}})
    return True


def _exporters() -> list[SpanExporter]:
    """The exporters OTEL_TRACES_EXPORTER names, by their entry points (as the SDK does)."""
    from importlib.metadata import entry_points

    names = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() or "otlp"
    out: list[SpanExporter] = []
    for name in (n.strip() for n in names.split(",") if n.strip() and n.strip() != "none"):
        found = list(entry_points(group="opentelemetry_traces_exporter", name=name))
        if not found:
            log.warning(
                "OTEL_TRACES_EXPORTER names %r but no such span exporter is installed "
                "(for otlp: pip install opentelemetry-exporter-otlp); skipped",
                name,
            )
            continue
        out.append(found[0].load()())
    return out


def enable(provider: TracerProvider) -> None:
    """Trace with `provider` (its processors and exporters); tests pass an in-memory one."""
    global ENABLED, _tracer, _provider, _EPOCH_OFFSET_NS
    _provider = provider
    _tracer = provider.get_tracer(TRACER_NAME)
    _EPOCH_OFFSET_NS = time.time_ns() - time.perf_counter_ns()
    ENABLED = True


def disable() -> None:
    """Stop tracing (flushes the provider's processors); hooks are no-ops again."""
    global ENABLED, _tracer, _provider
    ENABLED = False
    provider, _provider, _tracer = _provider, None, None
    if provider is not None:
        provider.shutdown()


def server_interceptors() -> list[Any]:
    """The gRPC aio interceptor that opens a server span per call (continuing the caller's
    `traceparent`); none when tracing is off, so calls pay nothing."""
    if not ENABLED:
        return []
    try:
        from opentelemetry.instrumentation.grpc import aio_server_interceptor
        from opentelemetry.instrumentation.grpc.filters import health_check, negate
    except ImportError:
        log.warning(
            "opentelemetry-instrumentation-grpc is not installed: spans start at "
            "semroute.decide and do not continue the caller's trace"
        )
        return []
    # Health checks (polled by every load balancer) would bury the Route traces.
    return [aio_server_interceptor(tracer_provider=_provider, filter_=negate(health_check()))]


# --- pipeline hooks -------------------------------------------------------------------------


class DecideSpan:
    """The open `semroute.decide` span of one request and its context token."""

    __slots__ = ("span", "token")

    def __init__(self, span: Span, token: object) -> None:
        self.span = span
        self.token = token


def open_decide(t0_ns: int) -> DecideSpan:
    """Start `semroute.decide` (dated from the pipeline's `t0`) as the current span."""
    from opentelemetry import context, trace

    assert _tracer is not None
    span = _tracer.start_span("semroute.decide", start_time=t0_ns + _EPOCH_OFFSET_NS)
    token = context.attach(trace.set_span_in_context(span))
    return DecideSpan(span, token)


def close_decide(handle: DecideSpan, reply: pb.RouteDecision | bytes | None) -> None:
    """End `semroute.decide`, with the decision's attributes (None: it failed)."""
    from opentelemetry import context

    if reply is not None:
        handle.span.set_attributes(decision_attributes(reply))
    context.detach(handle.token)  # type: ignore[arg-type]
    handle.span.end()


def failed(handle: DecideSpan, code: str, message: str) -> None:
    """Mark `semroute.decide` failed with the RoutingError's code (its message names no prompt)."""
    from opentelemetry.trace import Status, StatusCode

    handle.span.set_attribute("semroute.error", code)
    handle.span.set_status(Status(StatusCode.ERROR, f"{code}: {message}"))


def stage(name: str) -> contextlib.AbstractContextManager[Any]:
    """A child span around one pipeline stage; a shared no-op when tracing is off."""
    if not ENABLED or _tracer is None:
        return _NULL
    return _stage(_tracer, name)


@contextlib.contextmanager
def _stage(tracer: Tracer, name: str) -> Iterator[Span]:
    """The SDK would put an exception's message (which may quote the prompt) on the span:
    only its type is recorded."""
    from opentelemetry.trace import Status, StatusCode

    with tracer.start_as_current_span(
        name, record_exception=False, set_status_on_exception=False
    ) as span:
        try:
            yield span
        except BaseException as e:
            span.set_status(Status(StatusCode.ERROR, type(e).__name__))
            raise


def exact_hit(reply: bytes, t0_ns: int) -> None:
    """Record an exact-bytes hit, already answered, as `semroute.decide` with one
    `decision_cache` child: no span is open while the hit is served."""
    from opentelemetry import trace

    assert _tracer is not None
    start, end = t0_ns + _EPOCH_OFFSET_NS, time.time_ns()
    span = _tracer.start_span("semroute.decide", start_time=start)
    span.set_attributes(decision_attributes(reply))
    child = _tracer.start_span(
        "decision_cache", context=trace.set_span_in_context(span), start_time=start
    )
    child.set_attribute("semroute.cache", "exact_bytes")
    child.end(end_time=end)
    span.end(end_time=end)


def annotate(key: str, value: str | int | float | bool) -> None:
    """Set an attribute on the current (stage) span, when tracing."""
    if ENABLED:
        from opentelemetry import trace

        trace.get_current_span().set_attribute(key, value)


def decision_attributes(reply: pb.RouteDecision | bytes) -> dict[str, str | int | float]:
    """What a span says about a decision: route, model, tier, reason, versions (never the
    prompt)."""
    from semroute.messages import as_decision
    from semroute.v1 import router_pb2 as pb

    d = as_decision(reply)
    return {
        "semroute.route": d.route,
        "semroute.model": d.model,
        "semroute.provider": d.provider,
        "semroute.tier": pb.Tier.Name(d.tier).removeprefix("TIER_").lower(),
        "semroute.reason": pb.DecisionReason.Name(d.reason)
        .removeprefix("DECISION_REASON_")
        .lower(),
        "semroute.confidence": round(d.confidence, 4),
        "semroute.rule": d.rule,
        "semroute.index_version": d.index_version,
        "semroute.config_version": d.config_version,
        "semroute.classifier_version": d.classifier_version,
        "semroute.encoder_id": d.encoder_id,
        "semroute.request_id": d.request_id,
    }


@contextlib.contextmanager
def capture() -> Iterator[Any]:
    """Trace into an in-memory exporter for the duration (tests): yields the exporter."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    enable(provider)
    try:
        yield exporter
    finally:
        disable()
