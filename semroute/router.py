"""The routing pipeline: query → rules → encoder → index → policy → decision.

`Router` holds the encoder and one immutable `RoutingState` (config, rules,
index, policy) behind a single reference. A request captures the state once
at its start and uses it to the end, so swapping in a new state is one
atomic assignment and never mixes two configs or indexes in one decision.

The pipeline is split so the server can run the encoder off the event loop:
`plan` (cheap, no encoder) → `encode` (thread pool) → `decide`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from semroute import _policy
from semroute.config import Config
from semroute.encoder import Encoder
from semroute.policy import Choice, Policy
from semroute.route_index import RouteIndex, load_route_index
from semroute.rules import RuleSet
from semroute.types import Decision, Reason, RouteQuery, Tier, Timing

# Routes reported in a decision's `matches`.
MAX_MATCHES = 5
# A rough, model-agnostic token estimate for cost figures (≈4 bytes/token in
# English for GPT/Claude-style BPE tokenizers); the router never sees the
# target model's tokenizer.
BYTES_PER_TOKEN = 4


@dataclass(frozen=True)
class RoutingState:
    """Everything a decision depends on besides the encoder; swapped as a unit."""

    config: Config
    rules: RuleSet
    index: RouteIndex
    policy: Policy

    @classmethod
    def load(cls, config: Config, encoder: Encoder, index_dir: Path | None = None) -> RoutingState:
        index = load_route_index(index_dir or config.resolved_index_path(), config, encoder)
        return cls(config, RuleSet(config.rules), index, Policy(config))


@dataclass(frozen=True, slots=True)
class Plan:
    """A request after the cheap checks: either decided by a rule or needing the encoder."""

    query: RouteQuery
    state: RoutingState
    input_tokens: int
    started_ns: int
    rules_ns: int
    rule_name: str = ""
    rule_route: str = ""
    rule_model: str | None = None

    @property
    def needs_encoder(self) -> bool:
        return not self.rule_name


class Router:
    def __init__(self, encoder: Encoder, state: RoutingState) -> None:
        self.encoder = encoder
        self._state = state

    @property
    def state(self) -> RoutingState:
        return self._state

    def swap(self, state: RoutingState) -> None:
        """Make `state` the one new requests see; requests in flight keep theirs."""
        self._state = state

    def route(self, query: RouteQuery) -> Decision:
        """The whole pipeline in the calling thread (CLI, eval, tests)."""
        plan = self.plan(query)
        embedding = self.encode(plan.query.text) if plan.needs_encoder else None
        return self.decide(plan, embedding)

    def plan(self, query: RouteQuery, state: RoutingState | None = None) -> Plan:
        """Validate model names and run the rules; raises RoutingError on a bad request.

        `state` pins the routing state the caller already looked at (e.g. for a
        cache key); by default the current one is used.
        """
        t0 = time.perf_counter_ns()
        state = state or self._state
        state.policy.check_models(query)
        tokens = max(1, len(query.text.encode()) // BYTES_PER_TOKEN)
        rule = state.rules.first_match(query.text)
        rules_ns = time.perf_counter_ns() - t0
        if rule is None:
            return Plan(query, state, tokens, t0, rules_ns)
        route = rule.route or state.config.policy.default_route
        return Plan(query, state, tokens, t0, rules_ns, rule.name, route, rule.model)

    def encode(self, text: str) -> tuple[np.ndarray, int]:
        """Embed one text; returns (embedding row (1, dim), nanoseconds spent)."""
        t0 = time.perf_counter_ns()
        emb = self.encoder.encode([text])
        return emb, time.perf_counter_ns() - t0

    def decide(self, plan: Plan, embedding: tuple[np.ndarray, int] | None) -> Decision:
        """Finish a planned request: match routes (unless a rule decided) and choose a model."""
        state, query = plan.state, plan.query
        policy = state.policy
        encode_ns = search_ns = 0
        matches: tuple[tuple[str, float], ...] = ()
        if not plan.needs_encoder:
            route, confidence, reason = plan.rule_route, 1.0, Reason.RULE
        else:
            if embedding is None:
                raise ValueError("this plan needs an embedding")
            emb, encode_ns = embedding
            t0 = time.perf_counter_ns()
            scores, route_ids = state.index.search(emb, state.config.policy.top_k)
            per_route = _policy.route_scores(
                route_ids[0], scores[0], len(policy.route_names), state.config.policy.route_votes
            )
            search_ns = time.perf_counter_ns() - t0
            route, confidence, reason = self._match(state, per_route)
            order = np.argsort(-per_route)[:MAX_MATCHES]
            matches = tuple(
                (policy.route_names[i], float(per_route[i]))
                for i in order
                if np.isfinite(per_route[i])
            )
        t0 = time.perf_counter_ns()
        choice = policy.choose(query, route, plan.input_tokens, pinned_model=plan.rule_model)
        policy_ns = time.perf_counter_ns() - t0
        if not choice.cleared:
            reason = Reason.FALLBACK
        return _decision(
            plan,
            choice,
            route,
            confidence,
            reason,
            matches,
            self.encoder.id,
            Timing(
                total_us=(time.perf_counter_ns() - plan.started_ns) // 1000,
                rules_us=plan.rules_ns // 1000,
                encode_us=encode_ns // 1000,
                search_us=search_ns // 1000,
                policy_us=policy_ns // 1000,
            ),
        )

    @staticmethod
    def _match(state: RoutingState, per_route: np.ndarray) -> tuple[str, float, Reason]:
        """The deciding route: the best match above its threshold; among near-ties
        (within the ambiguity margin) the one with the highest quality target wins,
        so an ambiguous prompt errs on the side of quality."""
        cfg = state.config
        policy = state.policy
        best = int(np.argmax(per_route))
        best_score = float(per_route[best])

        def passes(i: int) -> bool:
            threshold = cfg.routes[i].threshold
            t = cfg.policy.match_threshold if threshold is None else threshold
            return bool(per_route[i] >= t)

        if not passes(best):
            return cfg.policy.default_route, max(best_score, 0.0), Reason.DEFAULT
        close = [
            i
            for i in np.flatnonzero(per_route >= best_score - cfg.policy.ambiguity_margin)
            if passes(int(i))
        ]
        deciding = max(close, key=lambda i: policy.route_bar_key(policy.route_names[i]))
        return policy.route_names[deciding], float(per_route[deciding]), Reason.SEMANTIC_ROUTE


def _decision(
    plan: Plan,
    choice: Choice,
    route: str,
    confidence: float,
    reason: Reason,
    matches: tuple[tuple[str, float], ...],
    encoder_id: str,
    timing: Timing,
) -> Decision:
    return Decision(
        request_id=plan.query.request_id,
        model=choice.model,
        provider=choice.provider,
        fallbacks=choice.fallbacks,
        route=route,
        confidence=confidence,
        reason=reason,
        quality_bar=choice.quality_bar,
        candidates=choice.candidates,
        matches=matches,
        index_version=plan.state.index.version,
        encoder_id=encoder_id,
        config_version=plan.state.config.version,
        rule=plan.rule_name,
        tier=Tier.ENCODER if plan.needs_encoder else Tier.RULE,
        timing=timing,
    )
