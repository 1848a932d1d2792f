"""Decision cache: entry and byte bounds, TTL, LRU order, and what the key covers."""

from __future__ import annotations

import pytest

from semroute.decision_cache import ENTRY_OVERHEAD_BYTES, DecisionCache, cache_key, normalise
from semroute.types import RouteQuery


def test_lru_eviction_by_entries() -> None:
    c: DecisionCache[str] = DecisionCache(max_entries=2, max_bytes=10**6, ttl_s=60)
    c.put(b"a", "A", 10, now=0)
    c.put(b"b", "B", 10, now=0)
    assert c.get(b"a", now=1) == "A"  # a is now most recent
    c.put(b"c", "C", 10, now=1)
    assert c.get(b"b", now=1) is None and c.get(b"a", now=1) == "A" and c.get(b"c", now=1) == "C"
    assert len(c) == 2 and c.stats.evictions == 1


def test_byte_bound_and_oversize_values() -> None:
    per = 100 + ENTRY_OVERHEAD_BYTES
    c: DecisionCache[str] = DecisionCache(max_entries=1000, max_bytes=3 * per, ttl_s=60)
    for i in range(5):
        c.put(bytes([i]), str(i), 100, now=0)
    assert len(c) == 3 and c.bytes == 3 * per
    assert c.get(bytes([0]), now=0) is None and c.get(bytes([4]), now=0) == "4"
    c.put(b"huge", "x", 10 * per, now=0)
    assert c.get(b"huge", now=0) is None and c.bytes == 3 * per


def test_ttl_expiry_and_replacement() -> None:
    c: DecisionCache[str] = DecisionCache(max_entries=10, max_bytes=10**6, ttl_s=5)
    c.put(b"k", "v1", 10, now=0)
    assert c.get(b"k", now=4.9) == "v1"
    assert c.get(b"k", now=5.0) is None and c.stats.expirations == 1 and len(c) == 0
    c.put(b"k", "v1", 10, now=10)
    c.put(b"k", "v2", 30, now=11)
    assert c.get(b"k", now=12) == "v2" and len(c) == 1
    assert c.bytes == 30 + ENTRY_OVERHEAD_BYTES


def test_invalid_bounds_rejected() -> None:
    with pytest.raises(ValueError):
        DecisionCache(max_entries=0, max_bytes=1, ttl_s=1)


def test_key_covers_everything_that_changes_the_answer() -> None:
    base = RouteQuery(text="What are your  opening hours?")
    k = cache_key(base, 0.5, "cfg1", "idx1")
    assert cache_key(RouteQuery(text="what are your opening hours?"), 0.5, "cfg1", "idx1") == k
    variants = [
        cache_key(base, 0.6, "cfg1", "idx1"),
        cache_key(base, 0.5, "cfg2", "idx1"),
        cache_key(base, 0.5, "cfg1", "idx2"),
        cache_key(
            RouteQuery(text=base.text, required_tags=frozenset({"region:eu"})), 0.5, "cfg1", "idx1"
        ),
        cache_key(RouteQuery(text=base.text, allowed_models=frozenset({"a"})), 0.5, "cfg1", "idx1"),
        cache_key(
            RouteQuery(text=base.text, excluded_models=frozenset({"a"})), 0.5, "cfg1", "idx1"
        ),
        cache_key(RouteQuery(text=base.text, max_cost_usd=0.01), 0.5, "cfg1", "idx1"),
        cache_key(RouteQuery(text=base.text, expected_output_tokens=9), 0.5, "cfg1", "idx1"),
        cache_key(RouteQuery(text="what are your closing hours?"), 0.5, "cfg1", "idx1"),
    ]
    assert len({k, *variants}) == len(variants) + 1


def test_normalise_folds_case_and_whitespace_only() -> None:
    assert normalise("  What are\tYOUR   opening\nhours? ") == "what are your opening hours?"


def test_stats_count_each_hit_miss_expiry_and_eviction() -> None:
    c: DecisionCache[str] = DecisionCache(max_entries=2, max_bytes=10**6, ttl_s=5)
    assert c.get(b"absent", now=0) is None and c.get(b"absent", now=0) is None
    c.put(b"a", "A", 10, now=0)
    c.put(b"b", "B", 10, now=0)
    assert c.get(b"a", now=1) == "A" and c.get(b"a", now=2) == "A"
    assert c.get(b"b", now=6) is None  # expired
    c.put(b"c", "C", 10, now=6)
    c.put(b"d", "D", 10, now=6)
    c.put(b"e", "E", 10, now=6)  # two evictions: a, then c
    assert c.get(b"e", now=20) is None  # expired
    assert (c.stats.hits, c.stats.misses, c.stats.expirations, c.stats.evictions) == (2, 4, 2, 2)


def test_the_real_clock_is_used_when_no_time_is_given() -> None:
    c: DecisionCache[str] = DecisionCache(max_entries=2, max_bytes=10**6, ttl_s=3600)
    c.put(b"k", "v", 10)
    assert c.get(b"k") == "v"


def test_a_value_exactly_the_byte_budget_is_cached_and_clear_empties() -> None:
    c: DecisionCache[str] = DecisionCache(
        max_entries=10, max_bytes=100 + ENTRY_OVERHEAD_BYTES, ttl_s=60
    )
    c.put(b"k", "v", 100, now=0)
    assert c.get(b"k", now=0) == "v" and c.bytes == 100 + ENTRY_OVERHEAD_BYTES
    c.clear()
    assert len(c) == 0 and c.bytes == 0 and c.get(b"k", now=0) is None


@pytest.mark.parametrize(
    ("entries", "size", "ttl"), [(0, 1, 1.0), (1, 0, 1.0), (1, 1, 0.0), (1, 1, -1.0)]
)
def test_each_non_positive_bound_is_rejected(entries: int, size: int, ttl: float) -> None:
    with pytest.raises(ValueError, match=r"^cache bounds and TTL must be positive$"):
        DecisionCache(max_entries=entries, max_bytes=size, ttl_s=ttl)


def test_the_smallest_positive_bounds_are_accepted() -> None:
    c: DecisionCache[str] = DecisionCache(max_entries=1, max_bytes=1, ttl_s=0.5)
    assert len(c) == 0 and c.max_entries == 1 and c.max_bytes == 1


def test_keys_are_16_bytes_and_separate_each_cost_cap_and_output_length() -> None:
    """16 bytes: ENTRY_OVERHEAD_BYTES budgets for keys of this size."""
    base = RouteQuery(text="hello")
    keys = {
        cache_key(RouteQuery(text="hello", max_cost_usd=cost, expected_output_tokens=tokens), *args)
        for cost in (None, 0.01, 0.02)
        for tokens in (None, 10, 20)
        for args in [(0.5, "c", "i")]
    }
    assert len(keys) == 9
    assert {len(k) for k in keys} == {16}
    assert len(cache_key(base, 0.5, "c", "i")) == 16


def test_recent_origins_follow_use_most_recent_first_each_once() -> None:
    c: DecisionCache[bytes] = DecisionCache(max_entries=10, max_bytes=10_000, ttl_s=10)
    qa, qb, qc = (RouteQuery(text=t) for t in ("a", "b", "c"))
    c.put(b"a-prompt", b"x", 1, now=0, origin=qa)
    c.put(b"a-wire", b"x", 1, now=0, origin=qa)  # a second key for the same request
    c.put(b"b", b"x", 1, now=0, origin=qb)
    c.put(b"c", b"x", 1, now=5, origin=qc)
    c.put(b"none", b"x", 1, now=0)  # no origin: not listed
    assert c.recent_origins(10, now=1) == [qc, qb, qa]
    assert c.get(b"a-prompt", now=1) == b"x"  # a hit makes its request the hottest
    assert c.recent_origins(10, now=1) == [qa, qc, qb]
    assert c.recent_origins(2, now=1) == [qa, qc]
    assert c.recent_origins(10, now=12) == [qc]  # expired entries' requests are not hot
