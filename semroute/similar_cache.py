"""Similar-prompt cache: reuse the decision of a recent near-identical prompt.

Sits between the exact decision cache and the encoder. A prompt that missed
the exact cache and that no rule decided is embedded by the static encoder
(20-90 µs, against milliseconds for the encoder) and compared with the recent
prompts decided under the same constraints, knob, config and index; one at or
above the threshold lends its decision. It catches what exact matching cannot:
the same question retyped with a greeting, a "thanks", or a word swapped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from semroute.config import SimilarCacheSpec
from semroute.route_index import TextEncoder
from semroute.semantic_cache import SemanticCache

# Hard byte bound per entry (decision template plus embedding row and bookkeeping):
# the cache's byte budget is max_entries times this.
BYTES_PER_ENTRY = 8192


@dataclass(frozen=True, slots=True)
class Probe:
    """A missed lookup, kept to store the decision under once it is made."""

    constraints: bytes
    embedding: np.ndarray
    encode_ns: int


class SimilarCache:
    def __init__(self, encoder: TextEncoder, spec: SimilarCacheSpec) -> None:
        self.encoder = encoder
        self._cache: SemanticCache[bytes] = SemanticCache(
            encoder.dim,
            max_entries=spec.max_entries,
            max_bytes=spec.max_entries * BYTES_PER_ENTRY,
            ttl_s=spec.ttl_s,
            threshold=spec.threshold,
        )

    def __len__(self) -> int:
        return len(self._cache)

    def lookup(self, text: str, constraints: bytes) -> tuple[bytes | None, Probe]:
        """The decision template of a near-identical recent prompt, if any, and the probe."""
        t0 = time.perf_counter_ns()
        emb = self.encoder.encode([text])
        probe = Probe(constraints, emb, time.perf_counter_ns() - t0)
        hit = self._cache.lookup((constraints,), emb)
        return (None if hit is None else hit.value), probe

    def store(self, probe: Probe, template: bytes) -> None:
        self._cache.store((probe.constraints,), probe.embedding, template, len(template))
