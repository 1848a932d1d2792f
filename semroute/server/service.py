"""RouterService over gRPC: a thin adapter over the serving pipeline.

Each handler hands its requests to `semroute.pipeline.Pipeline` and maps a
`RoutingError` to the gRPC status of the same name (for `Route`) or to the
item's own error (for `RouteBatch` and `RouteStream`, where one bad item never
fails the rest). Nothing here decides, caches or batches inference.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import grpc

from semroute.config import ServerSpec
from semroute.messages import batch_bytes, error_item, item_bytes
from semroute.pipeline import Pipeline, Reply, TimeRemaining
from semroute.server.decoding import BadInputLog, Malformed, decoder, guard, refuse
from semroute.types import RoutingError
from semroute.v1 import router_pb2 as pb
from semroute.v1 import router_pb2_grpc

# The gRPC metadata key of server pushback (gRPC retry design A6).
PUSHBACK = "grpc-retry-pushback-ms"


class RouterServicer(router_pb2_grpc.RouterServiceServicer):
    def __init__(self, pipeline: Pipeline, limits: ServerSpec) -> None:
        self._pipeline = pipeline
        self._max_batch = limits.max_batch_items
        self._window = limits.stream_window

    async def Route(self, request: pb.RouteRequest, context: grpc.aio.ServicerContext) -> Reply:
        # A body that did not parse arrives as Malformed (see add_router_service);
        # checked here rather than by a wrapper, which would cost every call.
        if request.__class__ is Malformed:
            await refuse(request, context)  # type: ignore[arg-type]
        try:
            return await self._pipeline.decide(request, context.time_remaining)
        except RoutingError as e:
            await _abort(context, e)

    async def RouteBatch(
        self, request: pb.RouteBatchRequest, context: grpc.aio.ServicerContext
    ) -> bytes:
        if request.__class__ is Malformed:
            await refuse(request, context)  # type: ignore[arg-type]
        n = len(request.requests)
        if n > self._max_batch:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"{n} requests exceed server.max_batch_items ({self._max_batch}); split the batch",
            )
        items: list[bytes | None] = [None] * n
        misses = []
        for i, req in enumerate(request.requests):
            rid = _ensure_id(req)
            blob = self._pipeline.cached(req, rid)
            if blob is None:
                misses.append(self._item(i, rid, req, context.time_remaining))
            else:
                items[i] = item_bytes(i, rid, blob)
        if misses:  # decided concurrently, sharing encoder runs where batching.max_batch > 1
            for i, item in await asyncio.gather(*misses):
                items[i] = item
        return batch_bytes(items)  # type: ignore[arg-type]

    async def RouteStream(
        self, requests: AsyncIterator[pb.RouteRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        """Read requests and write results concurrently, each result as soon as it is
        decided. At most `stream_window` results are outstanding (being decided, or
        decided and not yet sent): past that the stream stops reading, so a client that
        sends without reading cannot make the server hold more."""
        out: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue()
        window = asyncio.Semaphore(self._window)
        pending: set[asyncio.Task[None]] = set()

        async def decide(seq: int, rid: str, req: pb.RouteRequest) -> None:
            out.put_nowait((await self._item(seq, rid, req, context.time_remaining))[1])

        async def read() -> None:
            seq = 0
            try:
                async for req in requests:
                    await window.acquire()  # released once the result is sent
                    if req.__class__ is Malformed:
                        code = grpc.StatusCode.INVALID_ARGUMENT.value[0]
                        message = req.message()  # type: ignore[attr-defined]
                        out.put_nowait(error_item(seq, "", code, message))
                    elif (blob := self._pipeline.cached(req, rid := _ensure_id(req))) is not None:
                        out.put_nowait(item_bytes(seq, rid, blob))
                    else:
                        task = asyncio.ensure_future(decide(seq, rid, req))
                        pending.add(task)
                        task.add_done_callback(pending.discard)
                    seq += 1
                if pending:
                    await asyncio.gather(*pending)
                out.put_nowait(None)
            except BaseException as e:  # the stream broke: the writer re-raises it
                out.put_nowait(e)
                raise

        reader = asyncio.ensure_future(read())
        try:
            while (item := await out.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
                window.release()
        finally:  # cancelled, or the client went away: nothing keeps running for it
            reader.cancel()
            for task in list(pending):
                task.cancel()

    async def _item(
        self, seq: int, rid: str, req: pb.RouteRequest, time_remaining: TimeRemaining
    ) -> tuple[int, bytes]:
        """One item's result: its decision, or its error, as a serialised RouteItem."""
        try:
            reply = await self._pipeline.decide_uncached(req, time_remaining)
        except RoutingError as e:
            retry_ms = round(e.retry_after_s * 1000) if e.retry_after_s is not None else 0
            code = grpc.StatusCode[e.code].value[0]
            return seq, error_item(seq, rid, code, e.message, retry_ms)
        return seq, item_bytes(seq, rid, reply)

    async def LookupResponse(
        self, request: pb.LookupResponseRequest, context: grpc.aio.ServicerContext
    ) -> pb.LookupResponseResult:
        try:
            return await self._pipeline.lookup_response(request)
        except RoutingError as e:
            await _abort(context, e)

    async def StoreResponse(
        self, request: pb.StoreResponseRequest, context: grpc.aio.ServicerContext
    ) -> pb.StoreResponseResult:
        try:
            return await self._pipeline.store_response(request)
        except RoutingError as e:
            await _abort(context, e)


async def _abort(context: grpc.aio.ServicerContext, e: RoutingError) -> None:
    """End the call with the error's status; a refusal under load carries gRPC server
    pushback (`grpc-retry-pushback-ms`), which tells clients when a retry can succeed
    instead of letting them hammer a saturated server."""
    trailers = ()
    if e.retry_after_s is not None:
        trailers = ((PUSHBACK, str(max(1, round(e.retry_after_s * 1000)))),)
    await context.abort(grpc.StatusCode[e.code], e.message, trailing_metadata=trailers)
    raise AssertionError("unreachable: abort raises") from e


def _ensure_id(request: pb.RouteRequest) -> str:
    """The request's id, assigned here when it has none: a batch or stream item carries
    it beside the decision, so the two must agree."""
    if not request.request_id:
        request.request_id = uuid.uuid4().hex
    return request.request_id


def _serialize_decision(response: pb.RouteDecision | bytes) -> bytes:
    """Route's response serializer: cache hits are already bytes."""
    return response if isinstance(response, bytes) else response.SerializeToString()


def _as_is(response: bytes) -> bytes:
    """RouteBatch's and RouteStream's serializer: their handlers build the wire form."""
    return response


def add_router_service(
    servicer: RouterServicer, server: grpc.aio.Server, bad_input: BadInputLog
) -> None:
    """Register RouterService like the generated helper, but with Route's
    serializer passing cache hits' bytes through untouched, and every request
    deserializer guarded (a body that does not parse gets INVALID_ARGUMENT)."""
    name = pb.DESCRIPTOR.services_by_name["RouterService"].full_name
    handlers = {
        "Route": grpc.unary_unary_rpc_method_handler(
            servicer.Route,
            request_deserializer=decoder(pb.RouteRequest.FromString, f"/{name}/Route", bad_input),
            response_serializer=_serialize_decision,
        ),
        "RouteBatch": grpc.unary_unary_rpc_method_handler(
            servicer.RouteBatch,
            request_deserializer=decoder(
                pb.RouteBatchRequest.FromString, f"/{name}/RouteBatch", bad_input
            ),
            response_serializer=_as_is,
        ),
        # Not guarded as a whole: a malformed message is that item's error, not the stream's.
        "RouteStream": grpc.stream_stream_rpc_method_handler(
            servicer.RouteStream,
            request_deserializer=decoder(
                pb.RouteRequest.FromString, f"/{name}/RouteStream", bad_input
            ),
            response_serializer=_as_is,
        ),
        "LookupResponse": guard(
            grpc.unary_unary_rpc_method_handler(
                servicer.LookupResponse,
                request_deserializer=pb.LookupResponseRequest.FromString,
                response_serializer=pb.LookupResponseResult.SerializeToString,
            ),
            f"/{name}/LookupResponse",
            bad_input,
        ),
        "StoreResponse": guard(
            grpc.unary_unary_rpc_method_handler(
                servicer.StoreResponse,
                request_deserializer=pb.StoreResponseRequest.FromString,
                response_serializer=pb.StoreResponseResult.SerializeToString,
            ),
            f"/{name}/StoreResponse",
            bad_input,
        ),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(name, handlers),))
    server.add_registered_method_handlers(name, handlers)
