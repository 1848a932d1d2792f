"""What a bundle's decisions cost and how often they route labelled prompts right.

Build-time evaluation and shadow reports read the model a decision chose; the
decisions themselves come from `Router.route`, the same tiers as serving.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from semroute.router import Router, RoutingState
from semroute.types import Decision, RouteQuery


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
            d = router.route(RouteQuery(text=prompt), state)
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
