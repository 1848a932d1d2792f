"""The served router with a learned bundle: per-prompt predicted quality decides.

The bundle is crafted (known labels) so the expected choices are obvious:
maths prompts were answered well only by the strong model, small talk by both.
"""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np
import pytest
import yaml

from semroute.bundle import BundleError, write_bundle
from semroute.config import Config, load_config
from semroute.route_index import build_route_index
from semroute.router import Router, RoutingState
from semroute.types import Reason, RouteQuery

REPO = Path(__file__).resolve().parent.parent
WEAK, STRONG = "mistralai/Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview"
MATHS = [
    "solve the integral of x^2 sin x",
    "prove that there are infinitely many primes",
    "find the eigenvalues of this matrix",
    "compute the limit of (1+1/n)^n",
    "solve the differential equation y'' + y = 0",
    "how many subsets does a 10-element set have?",
]
CHAT = [
    "hello, how are you today?",
    "thanks for your help!",
    "what's your name?",
    "tell me a joke",
    "good morning!",
    "have a nice weekend",
]


def write_learned(out: Path, encoder, models: list[str], max_tokens: int = 128) -> None:  # type: ignore[no-untyped-def]
    emb = encoder.encode(MATHS + CHAT)
    # scores[i, m]: maths only the strong model gets right; chat both do.
    scores = np.array([[0.0, 1.0]] * len(MATHS) + [[1.0, 1.0]] * len(CHAT), dtype=np.float32)

    def files(tmp: Path) -> None:
        index = faiss.IndexFlatIP(encoder.dim)
        index.add(emb)
        faiss.write_index(index, str(tmp / "index.faiss"))
        np.save(tmp / "scores.npy", scores)

    meta = {
        "encoder_id": encoder.id,
        "dim": encoder.dim,
        "models": models,
        "prices": {WEAK: 0.24, STRONG: 24.7},
        "encoder_max_tokens": max_tokens,
        "predictor": {
            "k": 3,
            "power": 1.0,
            "prior": [0.5, 1.0],
            "prior_count": 0.1,
            "weights": {"knn": 1.0, "emb_head": 0.0, "text_head": 0.0},
        },
        "calibration": {
            "knob_table": [
                {"knob": 0.0, "tolerance": 1.0},
                {"knob": 0.5, "tolerance": 0.3},
                {"knob": 1.0, "tolerance": -1.0},
            ]
        },
    }
    write_bundle(out, "learned", files, meta)


def learned_config(tmp: Path, encoder) -> Config:  # type: ignore[no-untyped-def]
    """configs/routellm.yaml pointed at tmp/bundle, with its (empty) route index built."""
    cfg = yaml.safe_load((REPO / "configs" / "routellm.yaml").read_text())
    cfg["learned"]["bundle"] = str(tmp / "bundle")
    cfg["index_path"] = str(tmp / "index")
    (tmp / "c.yaml").write_text(yaml.safe_dump(cfg))
    config = load_config(tmp / "c.yaml")
    build_route_index(config, encoder, config.resolved_index_path())
    return config


@pytest.fixture(scope="module")
def learned_router(tmp_path_factory: pytest.TempPathFactory, encoder) -> Router:  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("learned")
    write_learned(tmp / "bundle", encoder, [WEAK, STRONG])
    config = learned_config(tmp, encoder)
    return Router(encoder, RoutingState.load(config, encoder))


def test_predicted_quality_decides(learned_router: Router) -> None:
    hard = learned_router.route(RouteQuery(text="integrate x^3 e^x and prove your answer"))
    easy = learned_router.route(RouteQuery(text="hi there, how's it going?"))
    assert hard.reason == Reason.LEARNED_SCORE and hard.model == STRONG
    assert easy.reason == Reason.LEARNED_SCORE and easy.model == WEAK
    q = {c.model: c.predicted_quality for c in hard.candidates}
    assert q[STRONG] > q[WEAK] + 0.3
    assert hard.route == "general" and hard.fallbacks == (WEAK,)


def test_knob_maps_to_tolerance(learned_router: Router) -> None:
    prompt = "integrate x^3 e^x and prove your answer"
    assert learned_router.route(RouteQuery(text=prompt, quality_preference=0.0)).model == WEAK
    assert learned_router.route(RouteQuery(text=prompt, quality_preference=1.0)).model == STRONG
    easy = RouteQuery(text="hi there, how's it going?", quality_preference=1.0)
    assert learned_router.route(easy).model == STRONG  # knob 1: the best, whatever the price


def test_constraints_still_apply(learned_router: Router) -> None:
    d = learned_router.route(
        RouteQuery(
            text="integrate x^3 e^x and prove your answer", required_tags=frozenset({"tools"})
        )
    )
    assert d.model == STRONG
    d = learned_router.route(
        RouteQuery(
            text="integrate x^3 e^x and prove your answer", excluded_models=frozenset({STRONG})
        )
    )
    assert d.model == WEAK


def test_bundle_with_models_outside_the_pool_is_refused(tmp_path: Path, encoder) -> None:  # type: ignore[no-untyped-def]
    write_learned(tmp_path / "bundle", encoder, ["some-other-model", STRONG])
    config = learned_config(tmp_path, encoder)
    with pytest.raises(BundleError, match="some-other-model"):
        RoutingState.load(config, encoder)


def test_bundle_trained_at_another_truncation_is_refused(tmp_path: Path, encoder) -> None:  # type: ignore[no-untyped-def]
    write_learned(tmp_path / "bundle", encoder, [WEAK, STRONG], max_tokens=512)
    config = learned_config(tmp_path, encoder)
    with pytest.raises(BundleError, match="512 tokens"):
        RoutingState.load(config, encoder)
