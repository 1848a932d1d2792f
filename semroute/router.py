"""The routing pipeline: query → rules → encoder → index → policy → decision.

`Router` holds the encoder and one immutable `RoutingState` (config, rules,
index, policy) behind a single reference. A request captures the state once
at its start and uses it to the end, so swapping in a new state is one
atomic assignment and never mixes two configs or indexes in one decision.

The pipeline is split so the server can run the encoder off the event loop:
`plan` (cheap, no encoder) → `early` (rules, fast tier) → `encode` (thread pool)
→ `decide`. `route` runs them all in the calling thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from semroute import _policy
from semroute.bundle import BundleError
from semroute.config import Config
from semroute.encoder.errors import EncoderError
from semroute.encoder.static_head import StaticRouteHead
from semroute.policy import Choice, Policy
from semroute.predictor import QualityPredictor
from semroute.route_classifier import ClassifierRoutes
from semroute.route_index import RouteIndex, TextEncoder, load_route_index
from semroute.rules import RuleSet
from semroute.types import Decision, Reason, RouteQuery, Tier, Timing

# An encoder's embedding of one text, (1, dim), and the nanoseconds it took.
Embedding = tuple[np.ndarray, int]

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
    # Learned per-model quality (config.learned.bundle), and for each pool model
    # its column in the predictor's output (-1: not in the bundle).
    predictor: QualityPredictor | None = None
    learned_columns: np.ndarray | None = None
    # The encoder's route classifier fitted to this config's routes (None: utterances decide).
    classifier: ClassifierRoutes | None = None
    # The static tier's route head fitted to the same routes (the cascade's first stage;
    # None: the fast tier, if on, searches routes by similarity).
    static_classifier: ClassifierRoutes | None = None

    @classmethod
    def load(
        cls,
        config: Config,
        encoder: TextEncoder,
        index_dir: Path | None = None,
        static_encoder: TextEncoder | None = None,
    ) -> RoutingState:
        index = load_route_index(
            index_dir or config.resolved_index_path(),
            config,
            encoder,
            index_static_encoder(config, static_encoder, encoder),
        )
        predictor = columns = None
        if config.learned.bundle is not None:
            predictor, columns = _load_predictor(config, encoder)
        classifier = ClassifierRoutes.build(config, getattr(encoder, "route_head", None))
        static_classifier = static_route_classifier(config, classifier, static_encoder)
        policy = Policy(config)
        return cls(
            config,
            RuleSet(config.rules),
            index,
            policy,
            predictor,
            columns,
            classifier,
            static_classifier,
        )

    @cached_property
    def cache_salt(self) -> bytes:
        """What a cached decision was made under: no entry outlives a config or index swap."""
        return f"{self.config.version}\x1f{self.index.version}".encode()


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
    def __init__(
        self, encoder: TextEncoder, state: RoutingState, static_encoder: TextEncoder | None = None
    ) -> None:
        self.encoder = encoder
        # The fast tier's encoder, when the config enables it.
        self.static_encoder = static_encoder
        # Decided once: a static encoder in the encoder's space searches its index.
        self._static_in_encoder_space = shares_space(static_encoder, encoder)
        self._state = state

    @property
    def state(self) -> RoutingState:
        return self._state

    def swap(self, state: RoutingState) -> None:
        """Make `state` the one new requests see; requests in flight keep theirs."""
        self._state = state

    def route(
        self,
        query: RouteQuery,
        state: RoutingState | None = None,
        embed: Callable[[], Embedding] | None = None,
    ) -> Decision:
        """The whole pipeline in the calling thread (CLI, evaluation, warm-up, shadow).

        `state` pins a routing state other than the current one; `embed` supplies the
        encoder's embedding of the query (called only when needed; by default the
        encoder runs here), so two states compared on one request share it.
        """
        plan = self.plan(query, state)
        return self.finish(plan, embed or (lambda: self.encode(query.text)))

    def finish(self, plan: Plan, embed: Callable[[], Embedding]) -> Decision:
        """Decide a planned request: `early` tiers, else the encoder's embedding."""
        return self.early(plan) or self.decide(plan, embed())

    def early(self, plan: Plan, static: Embedding | None = None) -> Decision | None:
        """The tiers before the encoder, in order: the rule that matched, then the static
        fast tier when confident. None: the request needs the encoder (`decide`).

        The one definition of the tier order: the serving pipeline (which awaits the
        encoder between this and `decide`) and `finish` both go through it.
        """
        if not plan.needs_encoder:
            return self._finish(plan, None, Tier.RULE, 0, 0)
        return self.fast_decide(plan, static)

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

    def encode(self, text: str) -> Embedding:
        """Embed one text; returns (embedding row (1, dim), nanoseconds spent)."""
        t0 = time.perf_counter_ns()
        emb = self.encoder.encode([text])
        return emb, time.perf_counter_ns() - t0

    def fast_decide(self, plan: Plan, static: Embedding | None = None) -> Decision | None:
        """The static fast tier: a decision when it is confident, else None (use the encoder).

        Beside the route classifier, the static route head decides (`_static_classified`).
        Otherwise: confident = the best route scores at least fast_tier.min_score and leads
        the runner-up by at least fast_tier.min_margin, or (clearly no route)
        scores below fast_tier.max_general_score. A static encoder that lives in
        the full encoder's space searches the encoder's own index; another one
        needs the bundle's static index.
        """
        state = plan.state
        tier = state.config.fast_tier
        in_encoder_space = self._static_in_encoder_space
        head = state.static_classifier
        if (
            self.static_encoder is None
            or not tier.enabled
            or (head is None and not in_encoder_space and state.index.static_index is None)
            or state.predictor is not None  # learned quality needs the encoder's embedding
        ):
            return None
        if static is None:  # else the caller's static embedding of this text, and its cost
            t0 = time.perf_counter_ns()
            static = self.static_encoder.encode([plan.query.text]), time.perf_counter_ns() - t0
        if head is not None:
            return self._static_classified(plan, head, static)
        emb, encode_ns = static
        per_route, search_ns = self._route_scores(state, emb, static=not in_encoder_space)
        best, second = _top_two(per_route)
        confident = best >= tier.min_score and best - second >= tier.min_margin
        no_route = tier.max_general_score is not None and best < tier.max_general_score
        if not (confident or no_route):
            return None
        return self._finish(plan, per_route, Tier.STATIC, encode_ns, search_ns)

    def _static_classified(
        self, plan: Plan, routes: ClassifierRoutes, static: Embedding
    ) -> Decision | None:
        """The static route head's decision when its top route probability and its lead over
        the runner-up clear the thresholds (calibrated out of source), else None."""
        if routes.custom:  # custom routes are matched on the encoder's embedding
            return None
        emb, encode_ns = static
        t0 = time.perf_counter_ns()
        tier = plan.state.config.fast_tier
        head = routes.head
        assert isinstance(head, StaticRouteHead)
        min_p = head.min_probability if tier.min_probability is None else tier.min_probability
        margin = head.min_margin
        if tier.min_probability_margin is not None:
            margin = tier.min_probability_margin
        probs = routes.probabilities(emb)
        scores = np.where(np.isnan(probs), -np.inf, probs)
        best, second = _top_two(scores)
        if best < min_p or best - second < margin:
            return None
        route_id, confidence, reason = routes.match(probs, None)
        if reason != Reason.CLASSIFIER:
            return None
        search_ns = time.perf_counter_ns() - t0
        match = (plan.state.policy.route_names[route_id], confidence, reason)
        return self._finish(
            plan, scores, Tier.STATIC, encode_ns, search_ns, None, match, routes.version
        )

    def decide(self, plan: Plan, embedding: Embedding) -> Decision:
        """Decide a planned request that needs the encoder, with the encoder's embedding."""
        if not plan.needs_encoder:
            raise ValueError("a rule decided this plan: use early()")
        emb, encode_ns = embedding
        learned = self._learned(plan, emb) if plan.state.predictor is not None else None
        if plan.state.classifier is not None:
            return self._classified(plan, emb, encode_ns, learned)
        per_route, search_ns = self._route_scores(plan.state, emb, static=False)
        return self._finish(plan, per_route, Tier.ENCODER, encode_ns, search_ns, learned)

    def _classified(
        self,
        plan: Plan,
        emb: np.ndarray,
        encode_ns: int,
        learned: tuple[np.ndarray, float] | None,
    ) -> Decision:
        """The route from the classifier's probabilities (custom config routes by utterances)."""
        state = plan.state
        classifier = state.classifier
        assert classifier is not None
        t0 = time.perf_counter_ns()
        probs = classifier.probabilities(emb)
        custom = None
        if classifier.custom:
            custom, _ = self._route_scores(state, emb, static=False)
        route_id, confidence, reason = classifier.match(probs, custom)
        scores = np.where(np.isnan(probs), custom if custom is not None else -np.inf, probs)
        search_ns = time.perf_counter_ns() - t0
        version = classifier.version if reason == Reason.CLASSIFIER else ""
        match = (state.policy.route_names[route_id], confidence, reason)
        return self._finish(
            plan, scores, Tier.ENCODER, encode_ns, search_ns, learned, match, version
        )

    @staticmethod
    def _learned(plan: Plan, emb: np.ndarray) -> tuple[np.ndarray, float]:
        """Predicted quality per pool model (NaN where the bundle has none) and the
        tolerance the request's knob maps to through the bundle's calibration."""
        state = plan.state
        predictor, columns = state.predictor, state.learned_columns
        assert predictor is not None and columns is not None
        texts = [plan.query.text] if predictor.uses_text else None
        predicted = predictor.predict(emb, texts)[0]
        quality = np.where(columns >= 0, predicted[np.maximum(columns, 0)], np.nan)
        tolerance = predictor.tolerance_for_knob(state.policy.knob(plan.query))
        return quality, tolerance

    @staticmethod
    def _route_scores(
        state: RoutingState, emb: np.ndarray, *, static: bool
    ) -> tuple[np.ndarray, int]:
        t0 = time.perf_counter_ns()
        scores, route_ids = state.index.search(emb, state.config.policy.top_k, static=static)
        per_route = _policy.route_scores(
            route_ids[0], scores[0], len(state.policy.route_names), state.config.policy.route_votes
        )
        return per_route, time.perf_counter_ns() - t0

    def _finish(
        self,
        plan: Plan,
        per_route: np.ndarray | None,
        tier: Tier,
        encode_ns: int,
        search_ns: int,
        learned: tuple[np.ndarray, float] | None = None,
        match: tuple[str, float, Reason] | None = None,
        classifier_version: str = "",
    ) -> Decision:
        """Match the route (unless a rule or the classifier decided) and choose the model."""
        state, query = plan.state, plan.query
        policy = state.policy
        matches: tuple[tuple[str, float], ...] = ()
        if per_route is None:
            route, confidence, reason = plan.rule_route, 1.0, Reason.RULE
        else:
            route, confidence, reason = match or self._match(state, per_route)
            order = np.argsort(-per_route)[:MAX_MATCHES]
            matches = tuple(
                (policy.route_names[i], float(per_route[i]))
                for i in order
                if np.isfinite(per_route[i])
            )
        t0 = time.perf_counter_ns()
        choice = policy.choose(
            query, route, plan.input_tokens, learned=learned, pinned_model=plan.rule_model
        )
        policy_ns = time.perf_counter_ns() - t0
        if learned is not None:
            reason = Reason.LEARNED_SCORE
        if not choice.cleared:
            reason = Reason.FALLBACK
        timing = Timing(
            total_us=(time.perf_counter_ns() - plan.started_ns) // 1000,
            rules_us=plan.rules_ns // 1000,
            encode_us=encode_ns // 1000,
            search_us=search_ns // 1000,
            policy_us=policy_ns // 1000,
        )
        encoder_id = self.static_encoder.id if tier == Tier.STATIC else self.encoder.id  # type: ignore[union-attr]
        return _decision(
            plan,
            choice,
            route,
            confidence,
            reason,
            matches,
            encoder_id,
            tier,
            timing,
            classifier_version,
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
    tier: Tier,
    timing: Timing,
    classifier_version: str = "",
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
        tier=tier,
        timing=timing,
        classifier_version=classifier_version,
    )


def _top_two(per_route: np.ndarray) -> tuple[float, float]:
    """Best and runner-up route scores (-inf when there is no runner-up)."""
    if per_route.size < 2:
        return float(per_route.max(initial=-np.inf)), -np.inf
    second, best = np.partition(per_route, per_route.size - 2)[-2:]
    return float(best), float(second)


def _load_predictor(config: Config, encoder: TextEncoder) -> tuple[QualityPredictor, np.ndarray]:
    """The config's learned bundle, checked against the pool's model names."""
    assert config.learned.bundle is not None
    predictor = QualityPredictor.for_encoder(config.resolve(config.learned.bundle), encoder)
    trained_at = predictor.manifest.get("encoder_max_tokens")
    if trained_at is not None and trained_at != config.encoder.max_tokens:
        raise BundleError(
            f"learned bundle {predictor.version} was trained on prompts truncated to "
            f"{trained_at} tokens but encoder.max_tokens is {config.encoder.max_tokens}; "
            "set them equal (or retrain with --max-tokens)"
        )
    pool = [m.name for m in config.models]
    columns = predictor.align(pool)
    # A bundle model no pool model stands for is most likely a misspelt name.
    unknown = sorted(set(predictor.models) - {predictor.models[c] for c in columns if c >= 0})
    if unknown:
        raise BundleError(
            f"learned bundle {predictor.version} scores models the pool does not have: "
            f"{', '.join(unknown)} (pool: {', '.join(pool)})"
        )
    return predictor, columns


def shares_space(static: TextEncoder | None, encoder: TextEncoder) -> bool:
    """Whether a static encoder's vectors live in `encoder`'s space (search its index)."""
    return (
        static is not None
        and getattr(static, "space", "") == "source"
        and getattr(static, "source_encoder_id", None) == encoder.id
        and static.dim == encoder.dim
    )


def index_static_encoder(
    config: Config, static: TextEncoder | None, encoder: TextEncoder
) -> TextEncoder | None:
    """The static encoder a route bundle needs its own index for: only the fast tier searches
    routes with it, and not when it shares the encoder's space (None: no static index)."""
    if static is None or not config.fast_tier.enabled or shares_space(static, encoder):
        return None
    if (
        static_route_classifier(
            config, ClassifierRoutes.build(config, getattr(encoder, "route_head", None)), static
        )
        is not None
    ):
        return None  # the static route head decides the fast tier: nothing to search
    return static


def static_route_classifier(
    config: Config, classifier: ClassifierRoutes | None, static: TextEncoder | None
) -> ClassifierRoutes | None:
    """The static encoder's route head fitted to the config's routes, when the fast tier runs
    beside the route classifier (the cascade); raises EncoderError for a head trained on
    another route taxonomy than the classifier's."""
    head = getattr(static, "route_head", None)
    if classifier is None or head is None or not config.fast_tier.enabled:
        return None
    if head.routes != classifier.head.routes:
        raise EncoderError(
            f"static route head {head.version} predicts routes {list(head.routes)}, not the "
            f"route classifier's {list(classifier.head.routes)}; rebuild it with "
            "models/build_static_head.py"
        )
    return ClassifierRoutes.build(config, head)
