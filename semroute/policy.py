"""The routing policy: from a matched route and a request's constraints to a model.

The model pool is laid out once per config as arrays (quality per route and
model, prices, provider ids); per request only an eligibility mask and a cost
vector are computed, and the compiled core (csrc/_policy.pyx) picks the
cheapest eligible model whose quality clears the bar, plus the fallback order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from semroute import _policy
from semroute.config import Config
from semroute.scoring import pick_models
from semroute.types import CandidateScore, Preset, RouteQuery, RoutingError


@dataclass(frozen=True, slots=True)
class Choice:
    """The policy's answer for one request."""

    model: str
    provider: str
    fallbacks: tuple[str, ...]
    quality_bar: float
    # False when no eligible model cleared the bar and the best one was taken.
    cleared: bool
    candidates: tuple[CandidateScore, ...]


class Policy:
    """Chooses models for one config; immutable, shared by all requests."""

    def __init__(self, config: Config) -> None:
        self.config = config
        models, routes = config.models, config.routes
        self.model_names = tuple(m.name for m in models)
        self.route_names = tuple(r.name for r in routes)
        self._model_pos = {name: i for i, name in enumerate(self.model_names)}
        self.route_pos = {name: i for i, name in enumerate(self.route_names)}
        providers = sorted({m.provider for m in models})
        self._provider_ids = np.array([providers.index(m.provider) for m in models], dtype=np.int32)
        self._in_price = np.array([m.input_price_per_mtok for m in models], dtype=np.float64)
        self._out_price = np.array([m.output_price_per_mtok for m in models], dtype=np.float64)
        # quality[route, model]
        self.quality = np.array(
            [[m.route_quality.get(r.name, m.quality) for m in models] for r in routes],
            dtype=np.float32,
        )
        # serves[route, model]: the route's own model restriction.
        self._serves = np.array(
            [[not r.models or m.name in r.models for m in models] for r in routes], dtype=bool
        )
        self._tags = tuple(m.tags for m in models)
        self._floor = np.array([r.min_quality for r in routes], dtype=np.float32)
        self._target = np.array([r.target_quality for r in routes], dtype=np.float32)
        self._output_tokens = tuple(
            r.expected_output_tokens or config.policy.default_output_tokens for r in routes
        )

    def knob(self, query: RouteQuery) -> float:
        """The request's 0-1 cost/quality knob: explicit value, else preset, else balanced."""
        if query.quality_preference is not None:
            return query.quality_preference
        presets = self.config.policy.presets
        return {
            Preset.COST: presets.cost,
            Preset.QUALITY: presets.quality,
        }.get(query.preset, presets.balanced)

    def check_models(self, query: RouteQuery) -> None:
        """Reject model names the pool does not have, before any work is done."""
        unknown = sorted((query.allowed_models | query.excluded_models) - set(self.model_names))
        if unknown:
            raise RoutingError(
                "INVALID_ARGUMENT",
                f"unknown model(s) {', '.join(unknown)}; "
                f"the pool has: {', '.join(self.model_names)}",
            )

    def choose(
        self,
        query: RouteQuery,
        route: str,
        input_tokens: int,
        *,
        learned: tuple[np.ndarray, float] | None = None,
        pinned_model: str | None = None,
    ) -> Choice:
        """Pick a model for a request matched to `route`.

        By default each model's quality is the configured one for the route and
        the knob sets the bar between the route's floor and the best model.
        `learned` = (predicted quality per pool model, NaN where unknown;
        tolerance) replaces both: the cheapest eligible model whose predicted
        quality is within the tolerance of every pricier one's is chosen.
        `pinned_model` (a rule's model) is chosen if it is eligible.
        """
        r = self.route_pos[route]
        out_tokens = query.expected_output_tokens or self._output_tokens[r]
        cost = (input_tokens * self._in_price + out_tokens * self._out_price) / 1e6
        eligible, why = self._eligibility(query, r, cost)
        if learned is None:
            q = self.quality[r]
        else:
            predicted, tolerance = learned
            q = np.nan_to_num(predicted, nan=0.0).astype(np.float32)
            for i in np.flatnonzero(np.isnan(predicted) & eligible):
                eligible[i] = False
                why[i] = "not in the learned index"
        if not eligible.any():
            raise RoutingError("FAILED_PRECONDITION", _no_model_message(why, self.model_names))
        if learned is None:
            best = float(q[eligible].max())
            bar = _policy.quality_bar(self.knob(query), self._floor[r], self._target[r], best)
            pin = self._model_pos[pinned_model] if pinned_model else -1
        else:
            idx = np.flatnonzero(eligible)
            pin = int(idx[pick_models(q[idx][None, :], cost[idx], tolerance)[0]])
            bar = float(q[pin])
        chosen, fallbacks, meets, cleared = _policy.choose(
            q, cost, eligible.view(np.uint8), self._provider_ids, bar, pin
        )
        candidates = tuple(
            CandidateScore(
                model=name,
                provider=self.config.models[i].provider,
                predicted_quality=float(q[i]),
                estimated_cost_usd=float(cost[i]),
                eligible=bool(eligible[i]),
                ineligible_reason=why[i],
                meets_bar=bool(meets[i]),
            )
            for i, name in enumerate(self.model_names)
        )
        return Choice(
            model=self.model_names[chosen],
            provider=self.config.models[chosen].provider,
            fallbacks=tuple(self.model_names[i] for i in fallbacks),
            quality_bar=float(bar),
            cleared=bool(cleared),
            candidates=candidates,
        )

    def route_bar_key(self, route: str) -> float:
        """The route's quality target, used to break ties between ambiguous matches."""
        return float(self._target[self.route_pos[route]])

    def _eligibility(
        self, query: RouteQuery, r: int, cost: np.ndarray
    ) -> tuple[np.ndarray, list[str]]:
        n = len(self.model_names)
        eligible = np.ones(n, dtype=bool)
        why = [""] * n
        for i, name in enumerate(self.model_names):
            missing = sorted(query.required_tags - self._tags[i])
            if name in query.excluded_models:
                why[i] = "excluded by the request"
            elif query.allowed_models and name not in query.allowed_models:
                why[i] = "not in allowed_models"
            elif missing:
                why[i] = f"missing tag {', '.join(missing)}"
            elif not self._serves[r, i]:
                why[i] = f"route {self.route_names[r]} is served by other models"
            elif query.max_cost_usd is not None and cost[i] > query.max_cost_usd:
                why[i] = f"estimated cost ${cost[i]:.6f} over max_cost_usd"
            else:
                continue
            eligible[i] = False
        return eligible, why


def _no_model_message(why: list[str], names: tuple[str, ...]) -> str:
    details = "; ".join(f"{n}: {w}" for n, w in zip(names, why, strict=True))
    return (
        f"no model satisfies the request's constraints ({details}); "
        "relax allowed/excluded models, tags or max_cost_usd"
    )
