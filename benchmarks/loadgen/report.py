"""Plain-text tables and baseline ratios for a load-generator report."""

from __future__ import annotations

from typing import Any

_RATIO_KEYS = {
    "achieved_rps": ("achieved_rps",),
    "p50": ("latency_us", "p50"),
    "p99": ("latency_us", "p99"),
    "p99.9": ("latency_us", "p99.9"),
    "server_cpu_per_request": ("server_cpu", "cpu_per_request_us"),
    "client_cpu_per_call": ("client", "cpu_per_call_us"),
}


def _get(d: dict[str, Any] | None, path: tuple[str, ...]) -> float | None:
    cur: Any = d
    for key in path:
        if not isinstance(cur, dict):
            return None
        cur = cur.get(key)
    return float(cur) if isinstance(cur, int | float) else None


def ratios(scenarios: list[dict[str, Any]], baseline: str) -> dict[str, dict[str, float | None]]:
    """Each scenario's figures divided by the baseline's (same run, same machine)."""
    base = next((s for s in scenarios if s.get("name") == baseline and "failed" not in s), None)
    if base is None:
        return {}
    out: dict[str, dict[str, float | None]] = {}
    for s in scenarios:
        if "failed" in s:
            continue
        row: dict[str, float | None] = {}
        for key, path in _RATIO_KEYS.items():
            a, b = _get(s, path), _get(base, path)
            row[key] = round(a / b, 3) if a is not None and b else None
        out[s["name"]] = row
    return out


def _ms(us: float | None) -> str:
    return "-" if us is None else f"{us / 1000:.2f}"


def _num(x: float | None, fmt: str = "{:.0f}") -> str:
    return "-" if x is None else fmt.format(x)


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for j, r in enumerate(rows):
        cells = [
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        lines.append("  ".join(cells))
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _shares(d: dict[str, float], n: int = 4) -> str:
    return ", ".join(f"{k} {v:.0%}" for k, v in list(d.items())[:n]) or "-"


def format_report(report: dict[str, Any]) -> str:
    scs = report["scenarios"]
    head = [
        "scenario",
        "mode",
        "offered/s",
        "achieved/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms",
        "errors",
        "client µs/call",
        "server µs/req",
        "srv total_us p50/p99",
    ]
    rows = [head]
    for s in scs:
        if "failed" in s:
            rows.append([s["name"], "FAILED", *["-"] * (len(head) - 2)])
            continue
        lat = s["latency_us"]
        total = s["server_timing_us"].get("total_us") or {}
        rows.append(
            [
                s["name"],
                s["mode"],
                _num(s["offered_rps"]),
                _num(s["achieved_rps"]),
                _ms(lat["p50"]),
                _ms(lat["p90"]),
                _ms(lat["p99"]),
                _ms(lat["p99.9"]),
                _ms(lat["max"]),
                str(s["error_total"]),
                _num(s["client"]["cpu_per_call_us"]),
                _num((s["server_cpu"] or {}).get("cpu_per_request_us")),
                f"{total.get('p50', 0)}/{total.get('p99', 0)}" if total else "-",
            ]
        )
    out = [f"run {report['name']} ({report['timestamp']}), baseline: {report['baseline']}", ""]
    out.append(_table(rows))
    for s in scs:
        if "failed" in s:
            out += ["", f"[{s['name']}] FAILED: {s['failed']}"]
            continue
        srv = s["server_cpu"] or {}
        rss = s["server_rss"] or {}
        timing = ", ".join(
            f"{k} {v['p50']}/{v['p99']}" for k, v in s["server_timing_us"].items() if v["count"]
        )
        out += [
            "",
            f"[{s['name']}] {s['requests']} requests in {s['elapsed_s']} s, mix {s['mix']} "
            f"({_shares(s['prompt_kinds'])}), client {s['client']['processes']} proc "
            f"{_num(s['client']['cores'], '{:.2f}')} cores, "
            f"server {_num(srv.get('cores'), '{:.2f}')} cores",
            f"  errors: {s['errors'] or 'none'}",
            f"  reason: {_shares(s['decisions']['reason'])}; "
            f"model: {_shares(s['decisions']['model'], 3)}",
            f"  server timing p50/p99 µs: {timing or '-'}",
        ]
        extra = {k: v for k, v in s["decisions"].items() if k not in ("reason", "model") and v}
        for k, v in extra.items():
            out.append(f"  {k}: {_shares(v)}")
        if s.get("client_lag_us"):
            lag = s["client_lag_us"]
            svc = s["service_us"]
            out.append(
                f"  open loop: send lag p50/p99 {_ms(lag['p50'])}/{_ms(lag['p99'])} ms; "
                f"service time (from send) p50/p99 {_ms(svc['p50'])}/{_ms(svc['p99'])} ms"
            )
        if rss:
            out.append(
                f"  server RSS MB: start {rss['start_mb']}, end {rss['end_mb']}, "
                f"max {rss['max_mb']} ({len(rss['samples'])} samples kept)"
            )
        out += [f"  note: {n}" for n in s.get("notes", [])]
    rat = report.get("ratios") or {}
    if len(rat) > 1:
        rows = [["vs " + report["baseline"], *(k for k in _RATIO_KEYS)]]
        for name, r in rat.items():
            rows.append([name, *(_num(v, "{:.2f}") for v in r.values())])
        out += ["", _table(rows)]
    return "\n".join(out)
