"""The RouterService handler: validation, cache, batching, and gRPC status mapping.

Runs on the event loop. A request is answered from the exact decision cache
when it can be; otherwise rules run, and only a request that needs the
encoder waits for a micro-batch (inference runs in a thread pool), so one slow
inference never blocks the cheap requests (cache and rule hits, bad input)
behind it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import grpc
import numpy as np

from semroute.batcher import MicroBatcher
from semroute.config import Config
from semroute.decision_cache import DecisionCache, cache_key
from semroute.router import Router, RoutingState
from semroute.semantic_cache import SemanticCache
from semroute.server.convert import decision_to_proto, query_from_proto, response_key_from_proto
from semroute.types import RouteQuery, RoutingError
from semroute.v1 import router_pb2 as pb
from semroute.v1 import router_pb2_grpc

if TYPE_CHECKING:
    from semroute.admin.shadow import ShadowEvaluator

log = logging.getLogger("semroute.service")


class RouterServicer(router_pb2_grpc.RouterServiceServicer):
    def __init__(self, config: Config, pool: ThreadPoolExecutor) -> None:
        self._limits = config.server
        self._pool = pool
        self._batching = config.batching
        self._inflight = 0
        c = config.cache
        self.cache: DecisionCache[bytes] | None = (
            DecisionCache(c.max_entries, c.max_bytes, c.ttl_s) if c.enabled else None
        )
        rc = config.response_cache
        self._response_limits = rc
        self.responses: SemanticCache[str] | None = None  # made when the encoder is known
        self.batcher: MicroBatcher | None = None
        # Requests being decided, by cache key: identical ones wait for these.
        self._leaders: dict[bytes, asyncio.Future[bytes | None]] = {}
        # Set once the model and index are loaded; None means still loading.
        self.router: Router | None = None
        # Set by semroute.admin while a candidate index is shadowed: told of each
        # decision once made; it samples and evaluates off the response path.
        self.shadow: ShadowEvaluator | None = None

    def set_router(self, router: Router) -> None:
        """Start serving with `router` (its encoder gets a fresh batcher)."""
        b = self._batching
        self.batcher = MicroBatcher(
            router.encoder.encode,
            self._pool,
            max_batch=b.max_batch,
            max_wait_us=b.max_wait_us,
            bucket_ratio=b.bucket_ratio,
            max_queue=b.max_queue,
        )
        rc = self._response_limits
        if rc.enabled and self.responses is None:
            self.responses = SemanticCache(
                router.encoder.dim,
                max_entries=rc.max_entries,
                max_bytes=rc.max_bytes,
                ttl_s=rc.ttl_s,
                threshold=rc.threshold,
            )
        self.router = router

    async def Route(
        self, request: pb.RouteRequest, context: grpc.aio.ServicerContext
    ) -> pb.RouteDecision:
        t0 = time.perf_counter_ns()
        router, batcher = self.router, self.batcher
        if router is None or batcher is None:
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
            return await self._cached_or_decided(router, batcher, query, t0)
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

    async def _cached_or_decided(
        self, router: Router, batcher: MicroBatcher, query: RouteQuery, t0: int
    ) -> pb.RouteDecision:
        """The cached decision for this request, else a new one (then cached).

        Identical requests arriving while one of them is being decided wait for
        that one's decision instead of each running the encoder (single flight).
        """
        state = router.state  # captured once: the decision and its cache key agree
        if self.cache is None:
            return await self._decide(router, batcher, state, query)
        key = cache_key(query, state.policy.knob(query), state.config.version, state.index.version)
        blob = self.cache.get(key)
        if blob is None and (leader := self._leaders.get(key)) is not None:
            blob = await asyncio.shield(leader)  # None: the leader failed, decide ourselves
        if blob is not None:
            if self.shadow is not None:
                self.shadow.observe(query, state)
            return _from_cache(blob, query.request_id, t0)
        future: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
        self._leaders[key] = future
        try:
            response = await self._decide(router, batcher, state, query)
            blob = _template(response)
            self.cache.put(key, blob, len(blob))
            return response
        finally:
            del self._leaders[key]
            future.set_result(blob)

    async def _decide(
        self, router: Router, batcher: MicroBatcher, state: RoutingState, query: RouteQuery
    ) -> pb.RouteDecision:
        """Rules, then the fast tier, then the encoder (micro-batched) and the policy."""
        plan = router.plan(query, state)
        embedding = None  # the encoder's, when it ran (the shadow reuses it)
        decision = router.fast_decide(plan) if plan.needs_encoder else None
        if decision is None:
            if plan.needs_encoder:
                if batcher.queued >= batcher.max_queue:
                    raise RoutingError(
                        "RESOURCE_EXHAUSTED",
                        f"{batcher.queued} requests are waiting for the encoder; "
                        "retry with backoff",
                    )
                embedding = await batcher.embed(query.text)
            decision = router.decide(plan, embedding)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("decision", extra={"fields": _log_fields(decision, query.tenant)})
        if self.shadow is not None:
            self.shadow.observe(query, state, embedding)
        return decision_to_proto(decision)

    async def LookupResponse(
        self, request: pb.LookupResponseRequest, context: grpc.aio.ServicerContext
    ) -> pb.LookupResponseResult:
        cache, partition, emb = await self._response_key(request, context)
        threshold = cache.threshold
        if request.HasField("min_similarity"):
            threshold = max(threshold, request.min_similarity)
        hit = cache.lookup(partition, emb, threshold=threshold)
        if hit is None:
            return pb.LookupResponseResult(hit=False)
        return pb.LookupResponseResult(
            hit=True, response=hit.value, similarity=hit.similarity, age_s=hit.age_s
        )

    async def StoreResponse(
        self, request: pb.StoreResponseRequest, context: grpc.aio.ServicerContext
    ) -> pb.StoreResponseResult:
        size = len(request.response.encode())
        limit = self._response_limits.max_response_bytes
        if size > limit:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"response is {size} bytes, over response_cache.max_response_bytes ({limit})",
            )
        ttl = request.ttl_s if request.HasField("ttl_s") else None
        if ttl is not None and not ttl > 0:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "ttl_s must be positive")
        cache, partition, emb = await self._response_key(request, context)
        stored = cache.store(partition, emb, request.response, size, ttl_s=ttl)
        return pb.StoreResponseResult(stored=stored, entries=len(cache))

    async def _response_key(
        self,
        request: pb.LookupResponseRequest | pb.StoreResponseRequest,
        context: grpc.aio.ServicerContext,
    ) -> tuple[SemanticCache[str], tuple[str, str, str], np.ndarray]:
        """Validate a response-cache request: (cache, partition, embedding of the prompt)."""
        if not self._response_limits.enabled:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                "the response cache is disabled (response_cache.enabled in the config)",
            )
        if self.responses is None or self.batcher is None:
            await context.abort(
                grpc.StatusCode.UNAVAILABLE,
                "semroute is loading its model and index; retry when health reports SERVING",
            )
        try:
            partition, text = response_key_from_proto(request, self._limits)
        except RoutingError as e:
            await context.abort(grpc.StatusCode[e.code], e.message)
        emb, _ = await self.batcher.embed(text)  # type: ignore[union-attr]
        return self.responses, partition, emb  # type: ignore[return-value]


def _template(response: pb.RouteDecision) -> bytes:
    """The cacheable part of a decision, serialised (so its size is exact): no request id,
    no timing, marked as a cache hit."""
    t = pb.RouteDecision()
    t.CopyFrom(response)
    t.ClearField("request_id")
    t.ClearField("timing")
    t.tier = pb.TIER_CACHE
    return t.SerializeToString()


def _from_cache(template: bytes, request_id: str, t0: int) -> pb.RouteDecision:
    out = pb.RouteDecision.FromString(template)
    out.request_id = request_id
    out.timing.total_us = (time.perf_counter_ns() - t0) // 1000
    return out


def _log_fields(decision, tenant: str) -> dict:  # type: ignore[no-untyped-def]
    return {
        "request_id": decision.request_id,
        "tenant": tenant,
        "model": decision.model,
        "route": decision.route,
        "reason": decision.reason.name,
        "tier": decision.tier.name,
        "total_us": decision.timing.total_us,
    }
