"""One decision on a given routing state, off the serving path.

Warm-up, shadow evaluation and build-time evaluation all decide a query with a
state other than (or besides) the active one, the way the server would: rules,
then the static fast tier when the router has one, then the full encoder. The
full-encoder embedding is passed in (or fetched lazily) so two states compared
on the same request share it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from semroute.router import Plan, Router, RoutingState
from semroute.types import Decision, RouteQuery

Embedding = tuple[np.ndarray, int]


def finish(router: Router, plan: Plan, embed: Callable[[], Embedding]) -> Decision:
    """Decide a planned request like the server does; `embed` is called only if needed."""
    if not plan.needs_encoder:
        return router.decide(plan, None)
    fast_decide = getattr(router, "fast_decide", None)
    if fast_decide is not None:
        fast = fast_decide(plan)
        if fast is not None:
            return fast
    return router.decide(plan, embed())


def decide(
    router: Router, query: RouteQuery, state: RoutingState, embed: Callable[[], Embedding]
) -> Decision:
    return finish(router, router.plan(query, state), embed)


def chosen(decision: Decision) -> tuple[float, float]:
    """(estimated cost USD, predicted quality) of the model a decision chose."""
    for c in decision.candidates:
        if c.model == decision.model:
            return c.estimated_cost_usd, c.predicted_quality
    return 0.0, 0.0


def evaluate_probes(
    router: Router, state: RoutingState, probes: Mapping[str, Sequence[str]]
) -> dict[str, float]:
    """Routing accuracy on labelled held-out prompts ({route: [prompt, ...]}) and the
    chosen models' mean cost and quality: the figures a bundle records when built."""
    total = right = 0
    cost = quality = 0.0
    for expected, prompts in probes.items():
        for prompt in prompts:
            d = decide(router, RouteQuery(text=prompt), state, lambda p=prompt: router.encode(p))
            total += 1
            right += d.route == expected
            c, q = chosen(d)
            cost += c
            quality += q
    if not total:
        return {}
    return {
        "probes": float(total),
        "probe_route_accuracy": right / total,
        "probe_mean_cost_usd": cost / total,
        "probe_mean_quality": quality / total,
    }
