"""HDR histograms: recorded per client process, merged in the parent.

Values are microseconds with 3 significant digits from 1 µs to 60 s, so the
tail (p99.9, max) is exact to 0.1% whatever the request count, and histograms
from several processes merge losslessly (percentiles of a merge are not the
mean of per-process percentiles).
"""

from __future__ import annotations

from collections.abc import Iterable

from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 60_000_000
SIGNIFICANT_DIGITS = 3
PERCENTILES = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p99.9", 99.9))


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)


def record(hist: HdrHistogram, value_us: int) -> None:
    """Record a value, clamped into the trackable range (never dropped silently)."""
    hist.record_value(min(max(int(value_us), 0), HIGHEST_US))


def encode(hist: HdrHistogram) -> str:
    """The standard compressed HDR encoding (base64 text): picklable, JSON-safe, tool-readable."""
    return hist.encode().decode("ascii")


def merge(encoded: Iterable[str]) -> HdrHistogram:
    """Decode and add several encoded histograms into one."""
    out = new_histogram()
    for e in encoded:
        out.add(HdrHistogram.decode(e))
    return out


def summarize(hist: HdrHistogram) -> dict[str, float | int]:
    """count, min, mean, p50/p90/p99/p99.9 and max, in µs (all zero when empty)."""
    count = hist.get_total_count()
    out: dict[str, float | int] = {"count": count}
    if count == 0:
        out.update({"min": 0, "mean": 0.0, **{k: 0 for k, _ in PERCENTILES}, "max": 0})
        return out
    out["min"] = hist.get_min_value()
    out["mean"] = round(hist.get_mean_value(), 1)
    for key, pct in PERCENTILES:
        out[key] = hist.get_value_at_percentile(pct)
    out["max"] = hist.get_max_value()
    return out
