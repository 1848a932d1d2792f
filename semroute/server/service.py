"""The RouterService handler: validation, the pipeline, and gRPC status mapping.

Runs on the event loop; only the encoder call leaves it, to a thread pool
(onnxruntime releases the GIL), so one slow inference never blocks the
cheap requests (rule hits, bad input) behind it.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

import grpc

from semroute.config import ServerSpec
from semroute.router import Router
from semroute.server.convert import decision_to_proto, query_from_proto
from semroute.types import RoutingError
from semroute.v1 import router_pb2 as pb
from semroute.v1 import router_pb2_grpc

log = logging.getLogger("semroute.service")


class RouterServicer(router_pb2_grpc.RouterServiceServicer):
    def __init__(self, limits: ServerSpec, pool: ThreadPoolExecutor) -> None:
        self._limits = limits
        self._pool = pool
        self._inflight = 0
        # Set once the model and index are loaded; None means still loading.
        self.router: Router | None = None

    async def Route(
        self, request: pb.RouteRequest, context: grpc.aio.ServicerContext
    ) -> pb.RouteDecision:
        router = self.router
        if router is None:
            await context.abort(
                grpc.StatusCode.UNAVAILABLE,
                "semroute is loading its model and index; retry when health reports SERVING",
            )
        if self._inflight >= self._limits.max_concurrent_requests:
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"over {self._limits.max_concurrent_requests} concurrent requests; "
                "retry with backoff",
            )
        self._inflight += 1
        code, message = grpc.StatusCode.OK, ""
        try:
            query = query_from_proto(request, self._limits)
            plan = router.plan(query)
            embedding = None
            if plan.needs_encoder:
                loop = asyncio.get_running_loop()
                embedding = await loop.run_in_executor(self._pool, router.encode, query.text)
            decision = router.decide(plan, embedding)
            if log.isEnabledFor(logging.DEBUG):
                log.debug(
                    "decision",
                    extra={
                        "fields": {
                            "request_id": decision.request_id,
                            "tenant": query.tenant,
                            "model": decision.model,
                            "route": decision.route,
                            "reason": decision.reason.name,
                            "total_us": decision.timing.total_us,
                        }
                    },
                )
            return decision_to_proto(decision)
        except RoutingError as e:
            code, message = grpc.StatusCode[e.code], e.message
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("route failed", extra={"fields": {"request_id": request.request_id}})
            code = grpc.StatusCode.INTERNAL
            message = f"internal error routing request {request.request_id!r}; see server logs"
        finally:
            self._inflight -= 1
        await context.abort(code, message)
        raise AssertionError("unreachable: abort raises")
