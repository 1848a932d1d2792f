"""Route decisions from the encoder's trained route head, fitted to one config's routes.

The classifier knows a fixed taxonomy (models/route_corpus.py). A config may drop some of its
routes (their probability mass is shared out over the rest) and add routes of its own, which
are matched by their utterances as before and win when they clear their threshold: an operator
who wrote a route for their own traffic means it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from semroute.config import ClassifierSpec, Config
from semroute.encoder.route_head import RouteHead
from semroute.types import Reason

# Utterance similarity a config route outside the taxonomy needs, when it sets no threshold.
# Higher than policy.match_threshold: such a route competes with a trained classifier, not
# with other utterance lists.
CUSTOM_ROUTE_THRESHOLD = 0.55


@dataclass(frozen=True)
class ClassifierRoutes:
    """Immutable; built once per routing state."""

    head: RouteHead
    spec: ClassifierSpec
    # Per config route: its column in the head's output, or -1 (not in the taxonomy).
    columns: np.ndarray
    # Config route ids outside the taxonomy (matched by utterances).
    custom: tuple[int, ...]
    custom_thresholds: np.ndarray

    @classmethod
    def build(cls, config: Config, head: RouteHead | None) -> ClassifierRoutes | None:
        """None when the encoder has no head or the config turns the classifier off."""
        if head is None or not config.classifier.enabled:
            return None
        known = {r: i for i, r in enumerate(head.routes)}
        columns = np.array([known.get(r.name, -1) for r in config.routes], dtype=np.int64)
        if not (columns >= 0).any():
            return None  # nothing in common: the utterance matcher decides everything
        custom = tuple(i for i, c in enumerate(columns) if c < 0 and config.routes[i].utterances)
        thresholds = np.array(
            [CUSTOM_ROUTE_THRESHOLD if r.threshold is None else r.threshold for r in config.routes],
            dtype=np.float32,
        )
        return cls(head, config.classifier, columns, custom, thresholds)

    @property
    def version(self) -> str:
        return self.head.version

    def probabilities(self, embedding: np.ndarray) -> np.ndarray:
        """Per config route: the head's probability, renormalised over the config's taxonomy
        routes; NaN for routes outside the taxonomy."""
        probs = self.head.probabilities(embedding)[0]
        known = self.columns >= 0
        out = np.full(len(self.columns), np.nan, dtype=np.float32)
        mass = probs[self.columns[known]]
        out[known] = mass / max(float(mass.sum()), 1e-12)
        return out

    def match(
        self,
        probs: np.ndarray,
        custom_scores: np.ndarray | None,
        bar_key: tuple[float, ...],
        default_route: int,
    ) -> tuple[int, float, Reason]:
        """(config route id, confidence, reason) for one request.

        ``custom_scores`` are utterance similarities per config route (None when the config has
        no custom routes); ``bar_key`` orders routes by quality bar for near-ties.
        """
        if custom_scores is not None and self.custom:
            ids = np.array(self.custom)
            passing = ids[custom_scores[ids] >= self.custom_thresholds[ids]]
            if passing.size:
                best = int(passing[np.argmax(custom_scores[passing])])
                return best, float(custom_scores[best]), Reason.SEMANTIC_ROUTE
        known = np.flatnonzero(self.columns >= 0)
        best = int(known[np.argmax(probs[known])])
        top = float(probs[best])
        if top < self.spec.min_confidence:
            return default_route, top, Reason.DEFAULT
        close = [int(i) for i in known if probs[i] >= top - self.spec.tie_margin]
        deciding = max(close, key=lambda i: (bar_key[i], probs[i]))
        return deciding, float(probs[deciding]), Reason.CLASSIFIER
