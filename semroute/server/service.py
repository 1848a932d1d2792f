"""The RouterService handler: validation, cache, batching, and gRPC status mapping.

Runs on the event loop. A request is answered from the exact decision cache
when it can be; otherwise rules run, and only a request that needs the
encoder waits for a micro-batch (inference runs in a thread pool), so one slow
inference never blocks the cheap requests (cache and rule hits, bad input)
behind it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
import traceback
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import grpc
import numpy as np

from semroute.batcher import MicroBatcher
from semroute.config import Config
from semroute.decision_cache import DecisionCache, constraints_key, prompt_key
from semroute.router import Router, RoutingState
from semroute.semantic_cache import SemanticCache
from semroute.server.convert import decision_to_proto, query_from_proto, response_key_from_proto
from semroute.server.decoding import BadInputLog, Malformed, decoder, guard, refuse
from semroute.similar_cache import Probe, SimilarCache
from semroute.types import RouteQuery, RoutingError
from semroute.v1 import router_pb2 as pb
from semroute.v1 import router_pb2_grpc

if TYPE_CHECKING:
    from semroute.admin.shadow import ShadowEvaluator

log = logging.getLogger("semroute.service")
# Keys the prompt digests in log lines: they correlate lines of one process, but
# cannot be matched against a dictionary of likely prompts.
_LOG_KEY = os.urandom(16)


class RouterServicer(router_pb2_grpc.RouterServiceServicer):
    def __init__(self, config: Config, pool: ThreadPoolExecutor) -> None:
        self._limits = config.server
        self._pool = pool
        self._batching = config.batching
        self._inference_threads = config.server.inference_threads
        self._inflight = 0
        self._wire_hits = 0
        c = config.cache
        self.cache: DecisionCache[bytes] | None = (
            DecisionCache(c.max_entries, c.max_bytes, c.ttl_s) if c.enabled else None
        )
        self._cache_spec = c
        # Near-identical recent prompts' decisions (made when the static encoder is known).
        self.similar: SimilarCache | None = None
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

    @property
    def wire_hits(self) -> int:
        """Requests answered by the exact-bytes path (tests and operators check it runs)."""
        return self._wire_hits

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
            max_queue_wait_ms=b.max_queue_wait_ms,
            parallelism=self._inference_threads,
        )
        if self._cache_spec.similar_active and router.static_encoder is not None:
            self.similar = SimilarCache(router.static_encoder, self._cache_spec.similar)
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
    ) -> pb.RouteDecision | bytes:
        t0 = time.perf_counter_ns()
        # A body that did not parse arrives as Malformed (see add_router_service);
        # checked here rather than by a wrapper, which would cost every call.
        if request.__class__ is Malformed:
            await refuse(request, context)  # type: ignore[arg-type]
        router, batcher = self.router, self.batcher
        wire_key = None
        if self.cache is not None and router is not None:
            # Hot path: a byte-identical request (but for its id) was answered before
            # under this config and index; it was valid then, so it is valid now.
            # Nothing is validated, normalised or re-serialised: the cached bytes go
            # out with this request's id and timing appended. A shadow (admin on)
            # decodes the request only when it samples this one.
            state = router.state
            wire_key = _wire_key(request, state)
            blob = self.cache.get(wire_key)
            if blob is not None:
                self._wire_hits += 1
                if self.shadow is not None:
                    self.shadow.observe(lambda: query_from_proto(request, self._limits), state)
                return blob + _stamp(request.request_id or uuid.uuid4().hex, t0)
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
            return await self._cached_or_decided(router, batcher, query, t0, wire_key, context)
        except RoutingError as e:
            code, message = grpc.StatusCode[e.code], e.message
        except asyncio.CancelledError:
            raise
        except Exception as e:
            self._log_failure(e, request)
            code = grpc.StatusCode.INTERNAL
            message = f"internal error routing request {request.request_id!r}; see server logs"
        finally:
            self._inflight -= 1
        await context.abort(code, message)
        raise AssertionError("unreachable: abort raises")

    def _log_failure(self, e: Exception, request: pb.RouteRequest) -> None:
        """An unexpected failure, logged with its traceback; the prompt is redacted from
        the error's message (it may quote its input) unless `redact_prompts` is off."""
        message = str(e)
        if self._limits.redact_prompts:
            for text in (request.prompt, *(m.content for m in request.messages)):
                if text.strip():
                    message = message.replace(text.strip(), "[redacted prompt]")
        log.error(
            "route failed",
            extra={
                "fields": {
                    "request_id": request.request_id,
                    "error": f"{type(e).__name__}: {message}",
                    "traceback": "".join(traceback.format_tb(e.__traceback__)),
                }
            },
        )

    async def _cached_or_decided(
        self,
        router: Router,
        batcher: MicroBatcher,
        query: RouteQuery,
        t0: int,
        wire_key: bytes | None,
        context: grpc.aio.ServicerContext,
    ) -> pb.RouteDecision | bytes:
        """The cached decision for this request, else a new one (then cached).

        Cached under the normalised request's key and, when given, under the
        exact request's `wire_key`, which the next identical request finds
        before any parsing. Identical requests arriving while one of them is
        being decided wait for that one's decision instead of each running the
        encoder (single flight).
        """
        state = router.state  # captured once: the decision and its cache key agree
        if self.cache is None:
            return (await self._decide(router, batcher, state, query, None, context))[0]
        knob = state.policy.knob(query)
        constraints = constraints_key(query, knob, state.config.version, state.index.version)
        key = prompt_key(query.text, constraints)
        blob = self.cache.get(key)
        if blob is None and (leader := self._leaders.get(key)) is not None:
            blob = await asyncio.shield(leader)  # None: the leader failed, decide ourselves
        if blob is not None:
            if self.shadow is not None:
                self.shadow.observe(query, state)
            if wire_key is not None:
                self.cache.put(wire_key, blob, len(blob) + len(query.text), origin=query)
            return blob + _stamp(query.request_id, t0)
        future: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
        self._leaders[key] = future
        try:
            response, probe = await self._decide(
                router, batcher, state, query, constraints, context
            )
            blob = _template(response)
            # The request rides along: an index swap decides it again before it happens.
            size = len(blob) + len(query.text)
            self.cache.put(key, blob, size, origin=query)
            if probe is not None and self.similar is not None:
                self.similar.store(probe, blob)
            if wire_key is not None:
                self.cache.put(wire_key, blob, size, origin=query)
            return response
        finally:
            del self._leaders[key]
            future.set_result(blob)

    async def _decide(
        self,
        router: Router,
        batcher: MicroBatcher,
        state: RoutingState,
        query: RouteQuery,
        constraints: bytes | None,
        context: grpc.aio.ServicerContext,
    ) -> tuple[pb.RouteDecision, Probe | None]:
        """Rules, then the similar-prompt cache (under the request's `constraints_key`;
        None without the caches), then the fast tier, then the encoder (micro-batched)
        and the policy. Also returns the similar-prompt cache's probe of a miss, to
        store the decision under."""
        plan = router.plan(query, state)
        embedding = None  # the encoder's, when it ran (the shadow reuses it)
        probe = static = None
        if plan.needs_encoder and self.similar is not None and constraints is not None:
            blob, probe = self.similar.lookup(query.text, constraints)
            if blob is not None:
                if self.shadow is not None:
                    self.shadow.observe(query, state)
                return _similar_decision(blob, query.request_id, plan.started_ns), None
            static = (probe.embedding, probe.encode_ns)
        decision = router.fast_decide(plan, static) if plan.needs_encoder else None
        if decision is None:
            if plan.needs_encoder:
                # Refused at once when the encoder is saturated, or when the caller's
                # deadline ends before its expected wait does (time spent queued in
                # gRPC before the handler counts: the deadline is absolute).
                if (refusal := batcher.refusal(context.time_remaining())) is not None:
                    raise RoutingError("RESOURCE_EXHAUSTED", refusal)
                embedding = await batcher.embed(query.text)
            decision = router.decide(plan, embedding)
        if log.isEnabledFor(logging.DEBUG):
            fields = _log_fields(decision, query.tenant)
            fields.update(prompt_fields(query.text, self._limits.redact_prompts))
            log.debug("decision", extra={"fields": fields})
        if self.shadow is not None:
            self.shadow.observe(query, state, embedding)
        return decision_to_proto(decision), probe

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


def _stamp(request_id: str, t0: int) -> bytes:
    """The per-request fields of a cached decision, serialised.

    Appending them to a template (which has neither field) gives the wire
    form of the template with them set: protobuf merges concatenated messages.
    """
    total_us = (time.perf_counter_ns() - t0) // 1000
    return pb.RouteDecision(
        request_id=request_id, timing=pb.Timing(total_us=total_us)
    ).SerializeToString()


def _similar_decision(template: bytes, request_id: str, t0: int) -> pb.RouteDecision:
    """A near-identical prompt's decision, stamped for this request."""
    out = pb.RouteDecision.FromString(template)
    out.request_id = request_id
    out.tier = pb.TIER_SIMILAR
    out.timing.total_us = (time.perf_counter_ns() - t0) // 1000
    return out


def _wire_key(request: pb.RouteRequest, state: RoutingState) -> bytes:
    """Cache key of the exact request (its id aside) under this config and index."""
    request_id = request.request_id
    if request_id:
        request.ClearField("request_id")
    h = hashlib.blake2b(
        request.SerializeToString(deterministic=True), digest_size=16, person=b"wire"
    )
    if request_id:
        request.request_id = request_id
    h.update(state.cache_salt)
    return h.digest()


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


def prompt_fields(text: str, redact: bool) -> dict[str, str | int]:
    """What a log line may say about a prompt: a digest and its length (to correlate
    lines without the text), or the text itself when redaction is off."""
    if not redact:
        return {"prompt": text}
    digest = hashlib.blake2b(text.encode(), digest_size=8, key=_LOG_KEY).hexdigest()
    return {"prompt_digest": digest, "prompt_chars": len(text)}


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
