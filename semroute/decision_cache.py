"""Exact decision cache: a repeated request skips the encoder, index and policy.

Keyed by the normalised prompt and everything else that changes the answer
(constraints, knob, and the config and index versions, so no stale decision
survives a config or index swap). Bounded by entry count and by bytes, with
a TTL; least recently used entries go first. Not thread-safe by design: it
lives on the event loop, which is single-threaded.

An entry may carry its `origin` (the request it answers): `recent_origins`
lists the requests behind the most recently used entries, which an index swap
decides again before it happens (see semroute/admin/registry.py).
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from semroute.types import RouteQuery

V = TypeVar("V")

# Fixed per-entry overhead (key, node, tuple) added to each value's size.
ENTRY_OVERHEAD_BYTES = 200


def normalise(text: str) -> str:
    """Case and whitespace do not change a routing decision."""
    return " ".join(text.lower().split())


def constraints_key(
    query: RouteQuery, knob: float, config_version: str, index_version: str
) -> bytes:
    """Everything but the prompt that changes the answer."""
    parts = (
        ",".join(sorted(query.allowed_models)),
        ",".join(sorted(query.excluded_models)),
        ",".join(sorted(query.required_tags)),
        f"{knob:.4f}",
        "" if query.max_cost_usd is None else repr(query.max_cost_usd),
        "" if query.expected_output_tokens is None else str(query.expected_output_tokens),
        config_version,
        index_version,
    )
    return hashlib.blake2b("\x1f".join(parts).encode(), digest_size=16).digest()


def prompt_key(text: str, constraints: bytes) -> bytes:
    """The exact cache's key: the normalised prompt under `constraints_key`."""
    h = hashlib.blake2b(normalise(text).encode(), digest_size=16)
    h.update(constraints)
    return h.digest()


def cache_key(query: RouteQuery, knob: float, config_version: str, index_version: str) -> bytes:
    return prompt_key(query.text, constraints_key(query, knob, config_version, index_version))


@dataclass(slots=True)
class CacheStats:
    hits: int = 0
    misses: int = 0
    evictions: int = 0
    expirations: int = 0


class DecisionCache(Generic[V]):
    def __init__(self, max_entries: int, max_bytes: int, ttl_s: float) -> None:
        if max_entries < 1 or max_bytes < 1 or ttl_s <= 0:
            raise ValueError("cache bounds and TTL must be positive")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.ttl_s = ttl_s
        self.bytes = 0
        self.stats = CacheStats()
        # key -> (expires_at, size, value, origin); order = recency, oldest first.
        self._entries: OrderedDict[bytes, tuple[float, int, V, Any]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: bytes, now: float | None = None) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            self.stats.misses += 1
            return None
        now = time.monotonic() if now is None else now
        if entry[0] <= now:
            self._drop(key)
            self.stats.expirations += 1
            self.stats.misses += 1
            return None
        self._entries.move_to_end(key)
        self.stats.hits += 1
        return entry[2]

    def put(
        self, key: bytes, value: V, size: int, now: float | None = None, *, origin: Any = None
    ) -> None:
        """Store `value` (`size` bytes, the origin's included); values larger than the whole
        budget are not cached."""
        size += ENTRY_OVERHEAD_BYTES
        if size > self.max_bytes:
            return
        if key in self._entries:
            self._drop(key)
        now = time.monotonic() if now is None else now
        self._entries[key] = (now + self.ttl_s, size, value, origin)
        self.bytes += size
        while len(self._entries) > self.max_entries or self.bytes > self.max_bytes:
            oldest = next(iter(self._entries))
            self._drop(oldest)
            self.stats.evictions += 1

    def recent_origins(self, limit: int, now: float | None = None) -> list[Any]:
        """The origins of the most recently used live entries, most recent first, each
        object once, at most `limit`."""
        now = time.monotonic() if now is None else now
        out: list[Any] = []
        seen: set[int] = set()
        for expires, _, _, origin in reversed(self._entries.values()):
            if len(out) >= limit:
                break
            if origin is None or expires <= now or id(origin) in seen:
                continue
            seen.add(id(origin))
            out.append(origin)
        return out

    def clear(self) -> None:
        self._entries.clear()
        self.bytes = 0

    def _drop(self, key: bytes) -> None:
        size = self._entries.pop(key)[1]
        self.bytes -= size
