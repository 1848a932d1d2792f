"""Request decoding that turns an undecodable body into INVALID_ARGUMENT, never UNKNOWN.

gRPC runs a method's request deserializer before the handler: if it raises,
the call fails with UNKNOWN and gRPC logs a traceback per call. Every
service this server registers gets its deserializers wrapped instead: a body
that does not parse becomes a `Malformed` value, which the (wrapped) handler
refuses with INVALID_ARGUMENT and a short message. Malformed bodies are
counted and logged as one summary line per interval, so a flood of garbage
cannot flood the log.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import grpc

log = logging.getLogger("semroute.decoding")

# Longest decoder error kept in a status message or log line.
MAX_REASON_CHARS = 160
DEFAULT_INTERVAL_S = 10.0


@dataclass(frozen=True, slots=True)
class Malformed:
    """What a guarded deserializer returns for a body that does not parse."""

    method: str
    reason: str

    def message(self) -> str:
        return f"request body does not parse as the request message of {self.method}: {self.reason}"


class BadInputLog:
    """Counts malformed requests; logs at most one summary line per `interval_s`.

    The first malformed request logs at once; later ones are summed into the
    next line (count per method and the last reason). Runs on the event loop.
    """

    def __init__(
        self, interval_s: float = DEFAULT_INTERVAL_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.interval_s = interval_s
        self.total = 0
        self.lines = 0
        self._clock = clock
        self._window: Counter[str] = Counter()
        self._last_reason = ""
        self._last_line: float | None = None

    def record(self, method: str, reason: str) -> None:
        self.total += 1
        self._window[method] += 1
        self._last_reason = reason
        now = self._clock()
        if self._last_line is None or now - self._last_line >= self.interval_s:
            self._emit(now)

    def flush(self) -> None:
        """Log what the current window holds (at shutdown)."""
        if self._window:
            self._emit(self._clock())

    def _emit(self, now: float) -> None:
        self.lines += 1
        log.warning(
            "malformed requests refused",
            extra={
                "fields": {
                    "count": sum(self._window.values()),
                    "total": self.total,
                    "methods": dict(self._window),
                    "last_error": self._last_reason,
                    "interval_s": self.interval_s,
                }
            },
        )
        self._window.clear()
        self._last_line = now


def decoder(
    deserialize: Callable[[bytes], Any] | None, method: str, bad: BadInputLog
) -> Callable[[bytes], Any]:
    """`deserialize`, returning `Malformed` instead of raising."""

    def decode(data: bytes) -> Any:
        if deserialize is None:
            return data
        try:
            return deserialize(data)
        except Exception as e:  # DecodeError, and anything a parser may raise on garbage
            reason = f"{type(e).__name__}: {e}"[:MAX_REASON_CHARS]
            bad.record(method, reason)
            return Malformed(method, reason)

    return decode


async def refuse(request: Malformed, context: grpc.aio.ServicerContext) -> None:
    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message())


def guard(handler: grpc.RpcMethodHandler, method: str, bad: BadInputLog) -> grpc.RpcMethodHandler:
    """`handler` with its deserializer guarded and its behaviour refusing `Malformed`."""
    fields: dict[str, Any] = {
        "request_deserializer": decoder(handler.request_deserializer, method, bad)
    }
    if handler.unary_unary is not None:
        fields["unary_unary"] = _unary(handler.unary_unary)
    elif handler.unary_stream is not None:
        fields["unary_stream"] = _unary(handler.unary_stream)
    elif handler.stream_unary is not None:
        fields["stream_unary"] = _streaming(handler.stream_unary)
    elif handler.stream_stream is not None:
        fields["stream_stream"] = _streaming(handler.stream_stream)
    return handler._replace(**fields)  # type: ignore[attr-defined]


def _unary(inner: Callable[..., Any]) -> Callable[..., Any]:
    if inspect.isasyncgenfunction(inner):

        async def gen(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            if isinstance(request, Malformed):
                await refuse(request, context)
            async for item in inner(request, context):
                yield item

        return gen

    async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if isinstance(request, Malformed):
            await refuse(request, context)
        return await inner(request, context)

    return call


def _streaming(inner: Callable[..., Any]) -> Callable[..., Any]:
    """A streaming-request handler whose stream aborts at the first malformed message."""

    async def checked(requests: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        async for request in requests:
            if isinstance(request, Malformed):
                await refuse(request, context)
            yield request

    if inspect.isasyncgenfunction(inner):

        async def gen(requests: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            async for item in inner(checked(requests, context), context):
                yield item

        return gen

    async def call(requests: Any, context: grpc.aio.ServicerContext) -> Any:
        return await inner(checked(requests, context), context)

    return call


class _GuardedGeneric(grpc.GenericRpcHandler):
    def __init__(self, inner: grpc.GenericRpcHandler, bad: BadInputLog) -> None:
        self._inner = inner
        self._bad = bad

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        handler = self._inner.service(details)
        if handler is None:
            return None
        return guard(handler, details.method, self._bad)  # type: ignore[attr-defined]


class GuardedServer:
    """Stands in for a grpc.aio.Server when registering services (the generated
    `add_*Servicer_to_server` helpers call only these two methods): every handler
    is registered guarded."""

    def __init__(self, server: grpc.aio.Server, bad: BadInputLog) -> None:
        self._server = server
        self._bad = bad

    def add_generic_rpc_handlers(self, generic_handlers: Iterable[grpc.GenericRpcHandler]) -> None:
        self._server.add_generic_rpc_handlers(
            tuple(_GuardedGeneric(h, self._bad) for h in generic_handlers)
        )

    def add_registered_method_handlers(
        self, service_name: str, method_handlers: Mapping[str, grpc.RpcMethodHandler]
    ) -> None:
        self._server.add_registered_method_handlers(
            service_name,
            {
                name: guard(h, f"/{service_name}/{name}", self._bad)
                for name, h in method_handlers.items()
            },
        )
