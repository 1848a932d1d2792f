"""Metric code on hand-computed cases (RouteLLM §3.2 definitions)."""

from __future__ import annotations

import numpy as np
import pytest

from semroute.quality.metrics import (
    apgr,
    cost_quality_curve,
    cpt,
    oracle_curve,
    pick_models,
    strong_share_curve,
    two_model_report,
)

# A 4-prompt example worked by hand:
#   weak   correct on prompts 0, 2      -> r(weak)   = 0.50
#   strong correct on prompts 0, 1, 3   -> r(strong) = 0.75
#   router scores 0.1, 0.9, 0.5, 0.3    -> strong order: 1 (+1), 2 (-1), 3 (+1), 0 (0)
#   quality after k strong calls: 0.50, 0.75, 0.50, 0.75, 0.75
#   PGR:                          0,    1,    0,    1,    1
#   APGR = 0.25 * (0.5 + 0.5 + 0.5 + 1.0) = 0.625; CPT(50%) = CPT(80%) = 25%
Q_WEAK = np.array([1, 0, 1, 0], dtype=float)
Q_STRONG = np.array([1, 1, 0, 1], dtype=float)
SCORES = np.array([0.1, 0.9, 0.5, 0.3])
TOKENS = np.array([10, 20, 30, 40], dtype=float)


def test_four_prompt_example_by_hand() -> None:
    c = strong_share_curve(SCORES, Q_WEAK, Q_STRONG, TOKENS * 1.0, TOKENS * 10.0)
    np.testing.assert_allclose(c.shares, [0, 0.25, 0.5, 0.75, 1])
    np.testing.assert_allclose(c.quality, [0.5, 0.75, 0.5, 0.75, 0.75])
    np.testing.assert_allclose(c.pgr, [0, 1, 0, 1, 1])
    assert apgr(c) == pytest.approx(0.625)
    assert cpt(c, 0.5) == pytest.approx(0.25)
    assert cpt(c, 0.8) == pytest.approx(0.25)
    # cost: all weak = 100; sending prompt 1 (20 tokens) to strong adds 20 * 9 = 180
    np.testing.assert_allclose(c.cost, [100, 280, 550, 910, 1000])
    rep = two_model_report(c)
    assert rep.apgr == pytest.approx(0.625)
    first = rep.operating_points[0]
    assert first["strong_calls"] == 1
    assert first["cost_saved_vs_strong"] == pytest.approx(0.72)


def test_perfect_router_is_the_oracle() -> None:
    # Oracle order by gain: +1, +1, 0, -1 -> quality 0.5, 0.75, 1.0, 1.0, 0.75
    c = oracle_curve(Q_WEAK, Q_STRONG)
    np.testing.assert_allclose(c.pgr, [0, 1, 2, 2, 1])
    assert apgr(c) == pytest.approx(1.375)
    assert cpt(c, 0.5) == pytest.approx(0.25)
    # a router that knows the gains exactly is the oracle
    assert apgr(strong_share_curve(Q_STRONG - Q_WEAK, Q_WEAK, Q_STRONG)) == pytest.approx(1.375)


def test_perfect_ranking_when_strong_dominates() -> None:
    # strong always right; weak wrong on half: a perfect router reaches PGR 1 at 50% strong.
    qw = np.array([0, 0, 1, 1], dtype=float)
    qs = np.ones(4)
    c = strong_share_curve(np.array([1.0, 0.9, 0.1, 0.0]), qw, qs)
    np.testing.assert_allclose(c.pgr, [0, 0.5, 1, 1, 1])
    assert apgr(c) == pytest.approx(0.25 * (0.25 + 0.75 + 1 + 1))
    assert cpt(c, 0.5) == pytest.approx(0.25)
    assert cpt(c, 0.8) == pytest.approx(0.5)
    # the reversed router is the worst case
    bad = strong_share_curve(np.array([0.0, 0.1, 0.9, 1.0]), qw, qs)
    np.testing.assert_allclose(bad.pgr, [0, 0, 0, 0.5, 1])
    assert cpt(bad, 0.5) == pytest.approx(0.75)


def test_constant_router_is_the_straight_line() -> None:
    # All scores tie: resolved in expectation, PGR grows linearly with the strong share.
    rng = np.random.default_rng(0)
    qw = rng.integers(0, 2, 101).astype(float)
    qs = np.clip(qw + rng.integers(0, 2, 101), 0, 1).astype(float)
    c = strong_share_curve(np.zeros(101), qw, qs)
    np.testing.assert_allclose(c.pgr, c.shares, atol=1e-12)
    assert apgr(c) == pytest.approx(0.5)
    assert cpt(c, 0.5) == pytest.approx(51 / 101)


def test_random_router_averages_to_half() -> None:
    rng = np.random.default_rng(1)
    n = 2000
    qw = (rng.random(n) < 0.65).astype(float)
    qs = np.maximum(qw, (rng.random(n) < 0.5).astype(float))
    vals = [apgr(strong_share_curve(rng.random(n), qw, qs)) for _ in range(20)]
    cpts = [cpt(strong_share_curve(rng.random(n), qw, qs), 0.5) for _ in range(20)]
    assert np.mean(vals) == pytest.approx(0.5, abs=0.02)
    assert np.mean(cpts) == pytest.approx(0.5, abs=0.04)


def test_pick_models_tolerance() -> None:
    prices = np.array([1.0, 10.0, 5.0])  # cheap, pricey, middle
    pred = np.array(
        [
            [0.50, 0.90, 0.85],  # middle is within 0.1 of the pricey one, cheap is not
            [0.95, 0.90, 0.85],  # cheap is the best: chosen at any tolerance
            [0.10, 0.90, 0.20],
        ]
    )
    np.testing.assert_array_equal(pick_models(pred, prices, 0.0), [1, 0, 1])
    np.testing.assert_array_equal(pick_models(pred, prices, 0.1), [2, 0, 1])
    np.testing.assert_array_equal(pick_models(pred, prices, 0.45), [0, 0, 1])
    np.testing.assert_array_equal(pick_models(pred, prices, 0.75), [0, 0, 2])
    np.testing.assert_array_equal(pick_models(pred, prices, 1.0), [0, 0, 0])
    np.testing.assert_array_equal(pick_models(pred, prices, -1.0), [1, 1, 1])


def test_cost_quality_curve_two_models_matches_strong_share_curve() -> None:
    rng = np.random.default_rng(2)
    n = 200
    qw = (rng.random(n) < 0.6).astype(float)
    qs = np.maximum(qw, (rng.random(n) < 0.5).astype(float))
    pred = np.stack([rng.random(n), rng.random(n)], axis=1)
    tokens = rng.integers(5, 50, n).astype(float)
    prices = np.array([0.24, 24.7])
    curve = cost_quality_curve(
        pred, np.stack([qw, qs], 1), tokens[:, None] * prices[None, :] / 1e6, prices
    )
    # end points: all weak and all strong
    assert curve.quality[0] == pytest.approx(qw.mean())
    assert curve.quality[-1] == pytest.approx(qs.mean())
    assert curve.cost[-1] == pytest.approx(tokens.sum() * 24.7 / 1e6)
    # every point lies on the exact two-model curve of the score pred_s - pred_w
    exact = strong_share_curve(pred[:, 1] - pred[:, 0], qw, qs)
    for share, q in zip(curve.shares[:, 1], curve.quality, strict=True):
        k = round(share * n)
        assert q == pytest.approx(exact.quality[k])
