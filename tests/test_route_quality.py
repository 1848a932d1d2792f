"""Routing quality of the default config on held-out prompts (tests/data/route_probes.yaml).

A regression gate for the bundled routes: edits to utterances, thresholds or
the encoder must keep the default routing sensible.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from semroute.config import Config
from semroute.types import RouteQuery

PROBES = Path(__file__).parent / "data" / "route_probes.yaml"
CHEAP_ROUTES = {"greeting", "faq_lookup", "classification"}
HARD_ROUTES = {"reasoning", "formal_math", "high_stakes"}


@pytest.fixture(params=["classifier", "served"])
def probe_router(request, router, served_router):  # type: ignore[no-untyped-def]
    """The classifier alone, and the default config as `semroute serve` runs it (the cascade)."""
    return router if request.param == "classifier" else served_router


def _probes() -> list[tuple[str, str]]:
    data = yaml.safe_load(PROBES.read_text())
    return [(route, prompt) for route, prompts in data.items() for prompt in prompts]


def test_probes_are_held_out(config: Config) -> None:
    utterances = {u.lower() for r in config.routes for u in r.utterances}
    assert not [p for _, p in _probes() if p.lower() in utterances]


def test_route_accuracy_on_held_out_prompts(probe_router) -> None:  # type: ignore[no-untyped-def]
    probes = _probes()
    wrong = []
    for expected, prompt in probes:
        d = probe_router.route(RouteQuery(text=prompt))
        if d.route != expected:
            wrong.append((expected, d.route, prompt))
    accuracy = 1 - len(wrong) / len(probes)
    assert accuracy >= 0.90, f"accuracy {accuracy:.2f}; misrouted: {wrong}"


def test_easy_prompts_stay_cheap_and_hard_ones_go_frontier(probe_router, config: Config) -> None:  # type: ignore[no-untyped-def]
    price = {m.name: m.input_price_per_mtok + m.output_price_per_mtok for m in config.models}
    median = sorted(price.values())[len(price) // 2]
    cheap, hard = [], []
    for expected, prompt in _probes():
        d = probe_router.route(RouteQuery(text=prompt))
        if expected in CHEAP_ROUTES:
            cheap.append((price[d.model] < median, prompt, d.model))
        if expected in HARD_ROUTES:
            hard.append((price[d.model] > median, prompt, d.model))
    # Hard prompts must never go to a model below the median price.
    assert all(ok for ok, *_ in hard), [x for x in hard if not x[0]]
    assert sum(ok for ok, *_ in cheap) >= 0.9 * len(cheap), [x for x in cheap if not x[0]]
