"""Route decisions from the encoder's trained route head, fitted to one config's routes.

The classifier knows a fixed taxonomy (models/route_corpus.py). A config may drop some of its
routes (their probability mass is shared out over the rest) and add routes of its own, which
are matched by their utterances as before and win when they clear their threshold: an operator
who wrote a route for their own traffic means it.
"""

from __future__ import annotations

import numpy as np

from semroute.config import ClassifierSpec, Config
from semroute.encoder.route_head import RouteHead
from semroute.types import Reason

# Utterance similarity a config route outside the taxonomy needs, when it sets no threshold.
# Higher than policy.match_threshold: such a route competes with a trained classifier, not
# with other utterance lists.
CUSTOM_ROUTE_THRESHOLD = 0.55


class ClassifierRoutes:
    """Immutable; built once per routing state, so a request only indexes prepared arrays."""

    def __init__(self, config: Config, head: RouteHead, columns: np.ndarray) -> None:
        self.head = head
        self.spec: ClassifierSpec = config.classifier
        # Config route ids in the taxonomy, and their columns in the head's output.
        self._known = np.flatnonzero(columns >= 0)
        self._known_columns = columns[self._known]
        self._n_routes = len(columns)
        # Config route ids outside the taxonomy that have utterances to match.
        self.custom = tuple(
            i for i, c in enumerate(columns) if c < 0 and config.routes[i].utterances
        )
        self._custom_ids = np.array(self.custom, dtype=np.int64)
        self._custom_thresholds = np.array(
            [CUSTOM_ROUTE_THRESHOLD if r.threshold is None else r.threshold for r in config.routes],
            dtype=np.float32,
        )
        # Quality target per config route: near-ties go to the highest.
        self._bars = tuple(r.target_quality for r in config.routes)
        self._default_route = [r.name for r in config.routes].index(config.policy.default_route)

    @classmethod
    def build(cls, config: Config, head: RouteHead | None) -> ClassifierRoutes | None:
        """None when the encoder has no head or the config turns the classifier off."""
        if head is None or not config.classifier.enabled:
            return None
        known = {r: i for i, r in enumerate(head.routes)}
        columns = np.array([known.get(r.name, -1) for r in config.routes], dtype=np.int64)
        if not (columns >= 0).any():
            return None  # nothing in common: the utterance matcher decides everything
        return cls(config, head, columns)

    @property
    def version(self) -> str:
        return self.head.version

    def probabilities(self, embedding: np.ndarray) -> np.ndarray:
        """Per config route: the head's probability, renormalised over the config's taxonomy
        routes; NaN for routes outside the taxonomy."""
        mass = self.head.probabilities(embedding)[0][self._known_columns]
        out = np.full(self._n_routes, np.nan, dtype=np.float32)
        out[self._known] = mass / max(float(mass.sum()), 1e-12)
        return out

    def match(
        self, probs: np.ndarray, custom_scores: np.ndarray | None
    ) -> tuple[int, float, Reason]:
        """(config route id, confidence, reason) for one request.

        ``custom_scores`` are utterance similarities per config route (None when the config has
        no custom routes).
        """
        if custom_scores is not None and self.custom:
            ids = self._custom_ids
            passing = ids[custom_scores[ids] >= self._custom_thresholds[ids]]
            if passing.size:
                best = int(passing[np.argmax(custom_scores[passing])])
                return best, float(custom_scores[best]), Reason.SEMANTIC_ROUTE
        known = self._known
        best = int(known[np.argmax(probs[known])])
        top = float(probs[best])
        if top < self.spec.min_confidence:
            return self._default_route, top, Reason.DEFAULT
        close = [int(i) for i in known if probs[i] >= top - self.spec.tie_margin]
        deciding = max(close, key=lambda i: (self._bars[i], probs[i]))
        return deciding, float(probs[deciding]), Reason.CLASSIFIER
