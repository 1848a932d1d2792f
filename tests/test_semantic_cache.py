"""Semantic cache: similarity threshold, TTL, bounds, and partition (tenant) isolation."""

from __future__ import annotations

import numpy as np
import pytest

from semroute.semantic_cache import ENTRY_OVERHEAD_BYTES, SemanticCache


def unit(*xs: float) -> np.ndarray:
    v = np.array(xs, dtype=np.float32)
    return v / np.linalg.norm(v)


def make(**kw) -> SemanticCache[str]:  # type: ignore[no-untyped-def]
    args = {"max_entries": 100, "max_bytes": 10**6, "ttl_s": 60.0, "threshold": 0.9, **kw}
    return SemanticCache(3, **args)


def test_similar_prompt_hits_dissimilar_misses() -> None:
    c = make()
    c.store(("t1", "m"), unit(1, 0, 0), "answer", 6, now=0)
    hit = c.lookup(("t1", "m"), unit(1, 0.1, 0), now=1)
    assert hit is not None and hit.value == "answer" and hit.similarity > 0.99 and hit.age_s == 1
    assert c.lookup(("t1", "m"), unit(1, 1, 0), now=1) is None  # cosine 0.71 < 0.9
    assert c.lookup(("t1", "m"), unit(1, 1, 0), threshold=0.7, now=1) is not None


def test_partitions_never_leak_across_tenants_or_models() -> None:
    c = make()
    c.store(("tenant-a", "gpt"), unit(1, 0, 0), "a's secret", 10, now=0)
    assert c.lookup(("tenant-b", "gpt"), unit(1, 0, 0), now=0) is None
    assert c.lookup(("tenant-a", "claude"), unit(1, 0, 0), now=0) is None
    assert c.lookup(("tenant-a", "gpt"), unit(1, 0, 0), now=0).value == "a's secret"  # type: ignore[union-attr]


def test_ttl_cache_wide_and_per_entry() -> None:
    c = make(ttl_s=10)
    c.store(("t",), unit(1, 0, 0), "long", 4, now=0)
    c.store(("t",), unit(0, 1, 0), "short", 5, ttl_s=2, now=0)
    assert c.lookup(("t",), unit(0, 1, 0), now=1).value == "short"  # type: ignore[union-attr]
    assert c.lookup(("t",), unit(0, 1, 0), now=3) is None
    assert c.lookup(("t",), unit(1, 0, 0), now=9).value == "long"  # type: ignore[union-attr]
    assert c.lookup(("t",), unit(1, 0, 0), now=10) is None
    assert len(c) == 0 and c.bytes == 0


def test_entry_and_byte_bounds_evict_oldest() -> None:
    c = make(max_entries=3)
    for i in range(5):
        c.store(("t",), unit(1, i, i * i), f"v{i}", 10, now=i)
    assert len(c) == 3
    assert c.lookup(("t",), unit(1, 0, 0), threshold=0.9999, now=5) is None  # v0 evicted
    assert c.lookup(("t",), unit(1, 4, 16), threshold=0.9999, now=5).value == "v4"  # type: ignore[union-attr]
    per = 100 + ENTRY_OVERHEAD_BYTES
    b = make(max_bytes=2 * per)
    for i in range(4):
        b.store(("t",), unit(1, i, 0), str(i), 100, now=0)
    assert len(b) == 2 and b.bytes == 2 * per
    assert not b.store(("t",), unit(0, 0, 1), "too big", 10 * per, now=0)


def test_bad_embedding_dimension_is_an_error() -> None:
    with pytest.raises(ValueError, match="dimension"):
        make().store(("t",), np.ones(5, np.float32), "x", 1)


def test_evicted_entries_never_come_back_and_the_index_is_compacted() -> None:
    """Removal is lazy; a removed row must never answer, and dead rows stay bounded."""
    rng = np.random.default_rng(7)
    rows = rng.standard_normal((2000, 16)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    c: SemanticCache[int] = SemanticCache(
        16, max_entries=200, max_bytes=10**9, ttl_s=1e6, threshold=0.999
    )
    for i, row in enumerate(rows):
        c.store(("p",), row, i, 8, now=0)
        part = c._partitions[("p",)]
        assert part.index.ntotal - len(part.live) <= max(64, len(part.live) // 4) + 1
    assert len(c) == 200
    for i in range(0, 1800, 37):  # evicted: exact-match lookups miss
        assert c.lookup(("p",), rows[i], now=1) is None
    for i in range(1800, 2000):  # live: each finds itself
        hit = c.lookup(("p",), rows[i], now=1)
        assert hit is not None and hit.value == i
