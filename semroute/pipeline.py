"""The serving pipeline: one `decide()` behind every transport.

request → exact-bytes cache → validate → decision cache (single flight) →
rules → similar-prompt cache → fast tier → encoder (micro-batched, admitted)
→ classifier / index → policy → decision.

Transports (gRPC `Route`, batch and stream RPCs, Envoy ext_proc) are thin
adapters: each turns its input into a `RouteRequest`, awaits `decide()`, and
maps a `RoutingError` to its own status. The admin side reaches in through two
narrow seams only: a `DecisionTap` told of each decision (shadow evaluation)
and `hot_requests`/`prime` (decisions prepared before an index swap).

Runs on the event loop; only the encoder runs in the thread pool, so one slow
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
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple, Protocol

import numpy as np

from semroute import metrics as m
from semroute import tracing
from semroute.batcher import MicroBatcher
from semroute.config import Config
from semroute.decision_cache import DecisionCache, constraints_key, prompt_key
from semroute.decision_log import DecisionLog
from semroute.messages import (
    cache_template,
    decision_to_proto,
    query_from_proto,
    response_key_from_proto,
    similar_decision,
    stamp,
    wire_key,
)
from semroute.router import Embedding, Router, RoutingState
from semroute.semantic_cache import SemanticCache
from semroute.similar_cache import Probe, SimilarCache
from semroute.types import Decision, RouteQuery, RoutingError
from semroute.v1 import router_pb2 as pb

log = logging.getLogger("semroute.pipeline")
# Keys the prompt digests in log lines: they correlate lines of one process, but
# cannot be matched against a dictionary of likely prompts.
_LOG_KEY = os.urandom(16)

LOADING = "semroute is loading its model and index; retry when health reports SERVING"

# A decision as a transport sends it: a message, or a cache hit already serialised.
Reply = pb.RouteDecision | bytes
# The caller's remaining deadline in seconds (None: no deadline), asked only when needed.
TimeRemaining = Callable[[], float | None]
# (decision-cache key, serialised template, the request it was made for)
PrimedEntry = tuple[bytes, bytes, RouteQuery]


class _Miss(NamedTuple):
    """An exact-bytes cache miss: the routing state its key was made under (the decision
    is made, and cached, under the same one), the key, and when the request began."""

    state: RoutingState
    wire: bytes
    t0: int


class DecisionTap(Protocol):
    """Told of every decision after it is made (shadow evaluation); must never block."""

    def observe(
        self,
        query: RouteQuery | Callable[[], RouteQuery],
        state: RoutingState,
        embedding: Embedding | None = None,
    ) -> None: ...


class Pipeline:
    def __init__(
        self, config: Config, pool: ThreadPoolExecutor, metrics: m.Recorder | None = None
    ) -> None:
        self._limits = config.server
        self.metrics = metrics or m.NULL_RECORDER
        self._pool = pool
        self._batching = config.batching
        self._inflight = 0
        self._wire_hits = 0
        c = config.cache
        self.cache: DecisionCache[bytes] | None = (
            DecisionCache(c.max_entries, c.max_bytes, c.ttl_s) if c.enabled else None
        )
        self._cache_spec = c
        # Near-identical recent prompts' decisions (made when the static encoder is known).
        self.similar: SimilarCache | None = None
        self._response_limits = config.response_cache
        self.responses: SemanticCache[str] | None = None  # made when the encoder is known
        self.batcher: MicroBatcher | None = None
        # Requests being decided, by cache key: identical ones wait for these.
        self._leaders: dict[bytes, asyncio.Future[bytes | None]] = {}
        # Set once the model and index are loaded; None means still loading.
        self.router: Router | None = None
        self.tap: DecisionTap | None = None
        # Sampled decisions, written by a thread (None: decision_log.path unset).
        self.decisions: DecisionLog | None = DecisionLog.from_config(config)

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
            parallelism=self._limits.inference_threads,
            metrics=self.metrics,
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

    def set_tap(self, tap: DecisionTap | None) -> None:
        self.tap = tap

    # --- decisions ----------------------------------------------------------------------

    async def decide(
        self, request: pb.RouteRequest, time_remaining: TimeRemaining | None = None
    ) -> Reply:
        """The decision for one request; raises RoutingError (code, actionable message)."""
        reply, miss = self._lookup(request)
        if reply is not None:
            return reply
        return await self._decide_missed(request, time_remaining, miss)

    def cached(self, request: pb.RouteRequest, request_id: str = "") -> bytes | None:
        """The wire form of the decision for a byte-identical request (but for its id) answered
        before under this config and index, else None (then `decide_uncached`).

        Synchronous, so a batch answers its hits without a task each."""
        return self._lookup(request, request_id)[0]

    async def decide_uncached(
        self, request: pb.RouteRequest, time_remaining: TimeRemaining | None = None
    ) -> Reply:
        """`decide` past the exact-bytes cache (a caller that just missed it)."""
        return await self._decide_missed(request, time_remaining, None)

    def _lookup(
        self, request: pb.RouteRequest, request_id: str = ""
    ) -> tuple[bytes | None, _Miss | None]:
        """(the exact-bytes cache's reply, None), or (None, the miss: its key and state, for
        the decision to be cached under) when there is a cache to miss.

        A hit was valid when first answered, so it is valid now: nothing is validated,
        normalised or re-serialised. A tap decodes such a request only when it samples it.
        """
        t0 = time.perf_counter_ns()
        router, cache = self.router, self.cache
        if cache is None or router is None:
            return None, None
        state = router.state
        wire = wire_key(request, state.cache_salt)
        blob = cache.get(wire)
        if blob is None:
            self.metrics.cache_miss(m.WIRE)
            return None, _Miss(state, wire, t0)
        self._wire_hits += 1
        if self.tap is not None:
            self.tap.observe(lambda: query_from_proto(request, self._limits), state)
        rid = request_id or request.request_id or uuid.uuid4().hex
        reply = blob + stamp(rid, t0)
        self.metrics.cache_hit(m.WIRE, blob, t0)
        if tracing.ENABLED:
            tracing.exact_hit(reply, t0)
        if self.decisions is not None and self.decisions.sampled():
            self.decisions.record(request, reply)
        return reply, None

    async def _decide_missed(
        self, request: pb.RouteRequest, time_remaining: TimeRemaining | None, miss: _Miss | None
    ) -> Reply:
        """Decide a request the exact-bytes cache did not answer. `miss` carries the key and
        state the lookup used (None: look them up here), so neither is computed twice."""
        t0 = miss.t0 if miss is not None else time.perf_counter_ns()
        router, batcher = self.router, self.batcher
        if router is None or batcher is None:
            self.metrics.refused(m.LOADING)
            raise RoutingError("UNAVAILABLE", LOADING)
        if miss is not None:
            state, wire = miss.state, miss.wire
        else:
            state = router.state
            wire = wire_key(request, state.cache_salt) if self.cache is not None else None
        limit = self._limits.max_concurrent_requests
        if self._inflight >= limit:
            self.metrics.refused(m.OVERLOAD)
            raise RoutingError(
                "RESOURCE_EXHAUSTED",
                f"over {limit} concurrent requests; retry with backoff",
                retry_after_s=batcher.retry_after_s(),
            )
        self._inflight += 1
        span = tracing.open_decide(t0) if tracing.ENABLED else None
        reply = None
        try:
            with tracing.stage("validate"):
                query = query_from_proto(request, self._limits)
            reply = await self._cached_or_decided(
                router, batcher, state, query, t0, wire, time_remaining
            )
            if self.decisions is not None and self.decisions.sampled():
                self.decisions.record(request, reply)
            return reply
        except RoutingError as e:
            self.metrics.failed(e.code)
            if span is not None:
                tracing.failed(span, e.code, e.message)
            raise
        except asyncio.CancelledError:
            raise
        except Exception as e:
            self.metrics.refused(m.INTERNAL)
            self._log_failure(e, request)
            message = f"internal error routing request {request.request_id!r}; see server logs"
            if span is not None:
                tracing.failed(span, "INTERNAL", message)
            raise RoutingError("INTERNAL", message) from None
        finally:
            self._inflight -= 1
            if span is not None:
                tracing.close_decide(span, reply)

    async def _cached_or_decided(
        self,
        router: Router,
        batcher: MicroBatcher,
        state: RoutingState,
        query: RouteQuery,
        t0: int,
        wire: bytes | None,
        time_remaining: TimeRemaining | None,
    ) -> Reply:
        """The cached decision for this request, else a new one (then cached).

        Cached under the normalised request's key and, when given, under the
        exact request's `wire` key, which the next identical request finds
        before any parsing. Identical requests arriving while one of them is
        being decided wait for that one's decision instead of each running the
        encoder (single flight). `state` is the one the keys were made under:
        the decision and its cache keys agree.
        """
        if self.cache is None:
            response, _ = await self._decide(router, batcher, state, query, None, time_remaining)
            self.metrics.decided(response, t0)
            return response
        with tracing.stage("decision_cache"):
            knob = state.policy.knob(query)
            constraints = constraints_key(query, knob, state.config.version, state.index.version)
            key = prompt_key(query.text, constraints)
            blob = self.cache.get(key)
            if blob is None and (leader := self._leaders.get(key)) is not None:
                blob = await asyncio.shield(leader)  # None: the leader failed, decide ourselves
        if blob is not None:
            if self.tap is not None:
                self.tap.observe(query, state)
            if wire is not None:
                self.cache.put(wire, blob, len(blob) + len(query.text), origin=query)
            reply = blob + stamp(query.request_id, t0)
            self.metrics.cache_hit(m.DECISION, blob, t0)
            return reply
        self.metrics.cache_miss(m.DECISION)
        future: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
        self._leaders[key] = future
        try:
            response, probe = await self._decide(
                router, batcher, state, query, constraints, time_remaining
            )
            blob = cache_template(response)
            # The request rides along: an index swap decides it again before it happens.
            size = len(blob) + len(query.text)
            self.cache.put(key, blob, size, origin=query)
            if probe is not None and self.similar is not None:
                self.similar.store(probe, blob)
            if wire is not None:
                self.cache.put(wire, blob, size, origin=query)
            self.metrics.decided(response, t0)
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
        time_remaining: TimeRemaining | None,
    ) -> tuple[pb.RouteDecision, Probe | None]:
        """The router's early tiers (rules, fast tier), with the similar-prompt cache (under
        the request's `constraints_key`; None without the caches) before the fast tier,
        then the encoder (micro-batched) and the rest. Also returns the similar-prompt
        cache's probe of a miss, to store the decision under."""
        with tracing.stage("rules"):
            plan = router.plan(query, state)
        embedding = None  # the encoder's, when it ran (the tap reuses it)
        probe = static = None
        if plan.needs_encoder and self.similar is not None and constraints is not None:
            with tracing.stage("similar_cache"):
                blob, probe = self.similar.lookup(query.text, constraints)
            self.metrics.cache_result(m.SIMILAR, blob is not None)
            if blob is not None:
                if self.tap is not None:
                    self.tap.observe(query, state)
                return similar_decision(blob, query.request_id, plan.started_ns), None
            static = (probe.embedding, probe.encode_ns)
        with tracing.stage("fast_tier" if plan.needs_encoder else "policy"):
            decision = router.early(plan, static)
        if decision is None:
            # Refused at once when the encoder is saturated, or when the caller's
            # deadline ends before its expected wait does (time spent queued in the
            # transport before the pipeline counts: the deadline is absolute).
            remaining = time_remaining() if time_remaining is not None else None
            if (refusal := batcher.refusal(remaining)) is not None:
                raise RoutingError(
                    "RESOURCE_EXHAUSTED", refusal, retry_after_s=batcher.retry_after_s()
                )
            with tracing.stage("queue+encode"):
                embedding = await batcher.embed(query.text)
            with tracing.stage("classify+policy"):
                decision = router.decide(plan, embedding)
        if log.isEnabledFor(logging.DEBUG):
            fields = _log_fields(decision, query.tenant)
            fields.update(prompt_fields(query.text, self._limits.redact_prompts))
            log.debug("decision", extra={"fields": fields})
        if self.tap is not None:
            self.tap.observe(query, state, embedding)
        return decision_to_proto(decision), probe

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

    # --- index swaps (admin) ------------------------------------------------------------

    def hot_requests(self, n: int) -> list[RouteQuery]:
        """The requests behind the `n` most recently used decision-cache entries."""
        return self.cache.recent_origins(n) if self.cache is not None else []

    def prime(self, entries: Iterable[PrimedEntry]) -> None:
        """Cache decisions made ahead of a swap (keyed by the new version: invisible until
        the swap), so hot requests never all reach the encoder at once after it."""
        if self.cache is None:
            return
        for key, blob, query in entries:
            self.cache.put(key, blob, len(blob) + len(query.text), origin=query)

    # --- response cache -----------------------------------------------------------------

    async def lookup_response(self, request: pb.LookupResponseRequest) -> pb.LookupResponseResult:
        cache, partition, emb = await self._response_key(request)
        threshold = cache.threshold
        if request.HasField("min_similarity"):
            threshold = max(threshold, request.min_similarity)
        hit = cache.lookup(partition, emb, threshold=threshold)
        self.metrics.cache_result(m.RESPONSE, hit is not None)
        if hit is None:
            return pb.LookupResponseResult(hit=False)
        return pb.LookupResponseResult(
            hit=True, response=hit.value, similarity=hit.similarity, age_s=hit.age_s
        )

    async def store_response(self, request: pb.StoreResponseRequest) -> pb.StoreResponseResult:
        size = len(request.response.encode())
        limit = self._response_limits.max_response_bytes
        if size > limit:
            raise RoutingError(
                "INVALID_ARGUMENT",
                f"response is {size} bytes, over response_cache.max_response_bytes ({limit})",
            )
        ttl = request.ttl_s if request.HasField("ttl_s") else None
        if ttl is not None and not ttl > 0:
            raise RoutingError("INVALID_ARGUMENT", "ttl_s must be positive")
        cache, partition, emb = await self._response_key(request)
        stored = cache.store(partition, emb, request.response, size, ttl_s=ttl)
        return pb.StoreResponseResult(stored=stored, entries=len(cache))

    async def _response_key(
        self, request: pb.LookupResponseRequest | pb.StoreResponseRequest
    ) -> tuple[SemanticCache[str], tuple[str, str, str], np.ndarray]:
        """Validate a response-cache request: (cache, partition, embedding of the prompt)."""
        if not self._response_limits.enabled:
            raise RoutingError(
                "FAILED_PRECONDITION",
                "the response cache is disabled (response_cache.enabled in the config)",
            )
        if self.responses is None or self.batcher is None:
            raise RoutingError("UNAVAILABLE", LOADING)
        partition, text = response_key_from_proto(request, self._limits)
        emb, _ = await self.batcher.embed(text)
        return self.responses, partition, emb


def prompt_fields(text: str, redact: bool) -> dict[str, str | int]:
    """What a log line may say about a prompt: a digest and its length (to correlate
    lines without the text), or the text itself when redaction is off."""
    if not redact:
        return {"prompt": text}
    digest = hashlib.blake2b(text.encode(), digest_size=8, key=_LOG_KEY).hexdigest()
    return {"prompt_digest": digest, "prompt_chars": len(text)}


def _log_fields(decision: Decision, tenant: str) -> dict[str, str | int]:
    return {
        "request_id": decision.request_id,
        "tenant": tenant,
        "model": decision.model,
        "route": decision.route,
        "reason": decision.reason.name,
        "tier": decision.tier.name,
        "total_us": decision.timing.total_us,
    }
