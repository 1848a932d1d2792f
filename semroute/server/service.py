"""RouterService over gRPC: a thin adapter over the serving pipeline.

Each handler hands its request to `semroute.pipeline.Pipeline` and maps a
`RoutingError` to the gRPC status of the same name. Nothing here decides,
caches or batches.
"""

from __future__ import annotations

import grpc

from semroute.pipeline import Pipeline, Reply
from semroute.server.decoding import BadInputLog, Malformed, decoder, guard, refuse
from semroute.types import RoutingError
from semroute.v1 import router_pb2 as pb
from semroute.v1 import router_pb2_grpc


class RouterServicer(router_pb2_grpc.RouterServiceServicer):
    def __init__(self, pipeline: Pipeline) -> None:
        self._pipeline = pipeline

    async def Route(self, request: pb.RouteRequest, context: grpc.aio.ServicerContext) -> Reply:
        # A body that did not parse arrives as Malformed (see add_router_service);
        # checked here rather than by a wrapper, which would cost every call.
        if request.__class__ is Malformed:
            await refuse(request, context)  # type: ignore[arg-type]
        try:
            return await self._pipeline.decide(request, context.time_remaining)
        except RoutingError as e:
            await context.abort(grpc.StatusCode[e.code], e.message)
            raise AssertionError("unreachable: abort raises") from e

    async def LookupResponse(
        self, request: pb.LookupResponseRequest, context: grpc.aio.ServicerContext
    ) -> pb.LookupResponseResult:
        try:
            return await self._pipeline.lookup_response(request)
        except RoutingError as e:
            await context.abort(grpc.StatusCode[e.code], e.message)
            raise AssertionError("unreachable: abort raises") from e

    async def StoreResponse(
        self, request: pb.StoreResponseRequest, context: grpc.aio.ServicerContext
    ) -> pb.StoreResponseResult:
        try:
            return await self._pipeline.store_response(request)
        except RoutingError as e:
            await context.abort(grpc.StatusCode[e.code], e.message)
            raise AssertionError("unreachable: abort raises") from e


def _serialize_decision(response: pb.RouteDecision | bytes) -> bytes:
    """Route's response serializer: cache hits are already bytes."""
    return response if isinstance(response, bytes) else response.SerializeToString()


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
