"""Envoy ext_proc over gRPC: a thin adapter over the serving pipeline.

Envoy opens one `Process` stream per HTTP request. The request headers are answered
with CONTINUE (Envoy, configured to buffer the request body, then sends the body); for a
body `semroute.openai_body` can route, the body response carries the decision as
headers (`x-selected-model` for Envoy's route table), the body with its `model`
rewritten and a matching `content-length` (in BUFFERED mode that is the processor's
job), and `clear_route_cache`, without which Envoy keeps the route it chose before the
header existed. Every other request passes through unchanged, counted by cause.
Nothing here decides, caches or batches.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import AsyncIterator, Iterable

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as ep_grpc

from semroute.config import ExtProcSpec
from semroute.messages import as_decision
from semroute.openai_body import NotRoutable, parse
from semroute.pipeline import Pipeline
from semroute.types import RoutingError

SERVICE_NAME = ep.DESCRIPTOR.services_by_name["ExternalProcessor"].full_name

# Request headers that carry routing constraints (documented in examples/envoy/README.md).
TENANT_HEADER = "x-semroute-tenant"
TAGS_HEADER = "x-semroute-tags"
REQUEST_ID_HEADER = "x-request-id"  # Envoy sets one on every request by default

# Why a request was passed through (or routed): the keys of `counters()`.
CAUSES = (
    "routed",
    "model",  # `model` missing or not one semroute chooses for
    "not_json",
    "oversize",
    "no_prompt",
    "no_body",  # headers only (e.g. GET)
    "partial_body",  # a body chunk without end of stream (Envoy not in BUFFERED mode)
    "invalid",  # decide() refused the request as invalid (INVALID_ARGUMENT)
    "error",  # decide() failed otherwise (loading, overload, no eligible model, ...)
)

_OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD


class ExtProcServicer(ep_grpc.ExternalProcessorServicer):
    def __init__(self, pipeline: Pipeline, spec: ExtProcSpec) -> None:
        self._pipeline = pipeline
        self._spec = spec
        self._counts: Counter[str] = Counter()

    def counters(self) -> dict[str, int]:
        """Requests seen, by cause (every key of CAUSES, zeros included)."""
        return {cause: self._counts[cause] for cause in CAUSES}

    async def Process(
        self, requests: AsyncIterator[ep.ProcessingRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[ep.ProcessingResponse]:
        headers: dict[str, str] = {}
        async for message in requests:
            phase = message.WhichOneof("request")
            if phase == "request_headers":
                headers = _header_map(message.request_headers.headers.headers)
                if message.request_headers.end_of_stream:
                    self._counts["no_body"] += 1
                yield ep.ProcessingResponse(request_headers=ep.HeadersResponse())
            elif phase == "request_body":
                yield await self._request_body(message.request_body, headers)
            elif phase == "response_headers":
                yield ep.ProcessingResponse(response_headers=ep.HeadersResponse())
            elif phase == "response_body":
                yield ep.ProcessingResponse(response_body=ep.BodyResponse())
            elif phase == "request_trailers":
                yield ep.ProcessingResponse(request_trailers=ep.TrailersResponse())
            elif phase == "response_trailers":
                yield ep.ProcessingResponse(response_trailers=ep.TrailersResponse())

    async def _request_body(
        self, body: ep.HttpBody, headers: dict[str, str]
    ) -> ep.ProcessingResponse:
        passthrough = ep.ProcessingResponse(request_body=ep.BodyResponse())
        if not body.end_of_stream:
            self._counts["partial_body"] += 1
            return passthrough
        spec = self._spec
        try:
            parsed = parse(body.body, spec.models, spec.max_body_bytes)
        except NotRoutable as e:
            self._counts[e.cause] += 1
            return passthrough
        tags = tuple(t.strip() for t in headers.get(TAGS_HEADER, "").split(",") if t.strip())
        request = parsed.route_request(
            headers.get(REQUEST_ID_HEADER, ""), headers.get(TENANT_HEADER, ""), tags
        )
        deadline = time.monotonic() + spec.message_timeout_ms / 1000
        try:
            reply = await self._pipeline.decide(request, lambda: deadline - time.monotonic())
        except RoutingError as e:
            self._counts["invalid" if e.code == "INVALID_ARGUMENT" else "error"] += 1
            return passthrough
        decision = as_decision(reply)
        new_body = parsed.with_model(decision.model)
        self._counts["routed"] += 1
        mutation = ep.HeaderMutation(
            set_headers=_set(
                ("x-selected-model", decision.model),
                ("x-semroute-route", decision.route),
                ("x-semroute-decision-id", decision.request_id),
                ("x-semroute-fallbacks", ",".join(decision.fallbacks)),
                ("content-length", str(len(new_body))),
            )
        )
        return ep.ProcessingResponse(
            request_body=ep.BodyResponse(
                response=ep.CommonResponse(
                    header_mutation=mutation,
                    body_mutation=ep.BodyMutation(body=new_body),
                    clear_route_cache=spec.clear_route_cache,
                )
            )
        )


def _header_map(headers: Iterable[base_pb2.HeaderValue]) -> dict[str, str]:
    """Request headers by lower-case name (Envoy sends values as raw bytes)."""
    return {
        h.key.lower(): h.raw_value.decode("utf-8", "replace") if h.raw_value else h.value
        for h in headers
    }


def _set(*pairs: tuple[str, str]) -> list[base_pb2.HeaderValueOption]:
    """Overwrite each header; empty values are left out (Envoy would drop them anyway)."""
    return [
        base_pb2.HeaderValueOption(
            header=base_pb2.HeaderValue(key=k, raw_value=v.encode()), append_action=_OVERWRITE
        )
        for k, v in pairs
        if v
    ]


def add_ext_proc_service(servicer: ExtProcServicer, server: object) -> tuple[str, ...]:
    """Register ExternalProcessor on `server` (a GuardedServer: a stream message that does
    not parse aborts the stream with INVALID_ARGUMENT); returns the names for reflection."""
    ep_grpc.add_ExternalProcessorServicer_to_server(servicer, server)  # type: ignore[arg-type]
    return (SERVICE_NAME,)
