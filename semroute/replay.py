"""`semroute replay`: re-decide logged traffic against a candidate bundle (offline shadow).

Reads decision-log lines (`semroute/decision_log.py`), decides each one that
carries its prompt again, in-process, with a routing state loaded from the
candidate bundle exactly as the admin side loads one
(`semroute.admin.bundles.load_path`), and reports what would change: the
share of decisions whose model or route differs, the route→route and
model→model changes, and the mean estimated cost before and after (each from
its decision's candidates). Lines without a prompt (`include_prompt` off)
cannot be re-decided; they are counted and reported as skipped.
"""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from semroute.decision_log import query_from_record
from semroute.router import Router
from semroute.types import Decision, RoutingError


@dataclass
class ReplayReport:
    lines: int = 0
    unreadable: int = 0
    skipped_no_prompt: int = 0
    replayed: int = 0
    # The candidate refused the request (e.g. a model it no longer has was required).
    refused: int = 0
    model_changed: int = 0
    route_changed: int = 0
    route_changes: Counter[tuple[str, str]] = field(default_factory=Counter)
    model_changes: Counter[tuple[str, str]] = field(default_factory=Counter)
    refusals: Counter[str] = field(default_factory=Counter)
    cost_before: float = 0.0
    cost_after: float = 0.0
    costed: int = 0  # decisions with a cost on both sides
    logged_versions: Counter[str] = field(default_factory=Counter)
    candidate_version: str = ""
    candidate_config: str = ""

    def share(self, n: int) -> float:
        return n / self.replayed if self.replayed else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "lines": self.lines,
            "unreadable": self.unreadable,
            "skipped_no_prompt": self.skipped_no_prompt,
            "replayed": self.replayed,
            "refused": self.refused,
            "refusals": dict(self.refusals),
            "model_changed": self.model_changed,
            "route_changed": self.route_changed,
            "model_changed_share": round(self.share(self.model_changed), 6),
            "route_changed_share": round(self.share(self.route_changed), 6),
            "route_changes": _pairs(self.route_changes),
            "model_changes": _pairs(self.model_changes),
            "mean_cost_before_usd": self.cost_before / self.costed if self.costed else None,
            "mean_cost_after_usd": self.cost_after / self.costed if self.costed else None,
            "costed": self.costed,
            "logged_versions": dict(self.logged_versions),
            "candidate": {"index": self.candidate_version, "config": self.candidate_config},
        }


def _pairs(c: Counter[tuple[str, str]]) -> list[dict[str, Any]]:
    return [{"from": a, "to": b, "count": n} for (a, b), n in c.most_common()]


def read_records(paths: Iterable[Path], report: ReplayReport) -> Iterator[dict[str, Any]]:
    """The log's records in order; a line that does not parse (a live file's unfinished
    last line, say) is counted as unreadable and skipped."""
    for path in paths:
        with open(path, "rb") as f:
            for raw in f:
                report.lines += 1
                try:
                    record = json.loads(raw) if raw.endswith(b"\n") else None
                except ValueError:
                    record = None
                if not isinstance(record, dict) or "model" not in record:
                    report.unreadable += 1
                    continue
                yield record


def chosen_cost(candidates: Iterable[Any], model: str) -> float | None:
    """The estimated cost of `model` among a decision's candidates (dicts or CandidateScore)."""
    for c in candidates:
        name = c["model"] if isinstance(c, dict) else c.model
        if name == model:
            return float(c["estimated_cost_usd"] if isinstance(c, dict) else c.estimated_cost_usd)
    return None


def replay(records: Iterable[dict[str, Any]], router: Router, report: ReplayReport) -> None:
    """Decide every record with a prompt on `router` and tally the differences."""
    state = router.state
    report.candidate_version = state.index.version
    report.candidate_config = state.config.version
    for record in records:
        versions = record.get("versions") or {}
        report.logged_versions[f"{versions.get('index', '?')}/{versions.get('config', '?')}"] += 1
        if not isinstance(record.get("prompt"), str) or not record["prompt"]:
            report.skipped_no_prompt += 1
            continue
        report.replayed += 1
        try:
            after: Decision = router.route(query_from_record(record))
        except RoutingError as e:
            report.refused += 1
            report.refusals[e.code] += 1
            continue
        before_route, before_model = record.get("route", ""), record.get("model", "")
        if after.model != before_model:
            report.model_changed += 1
            report.model_changes[(before_model, after.model)] += 1
        if after.route != before_route:
            report.route_changed += 1
            report.route_changes[(before_route, after.route)] += 1
        cost_before = chosen_cost(record.get("candidates") or (), before_model)
        cost_after = chosen_cost(after.candidates, after.model)
        if cost_before is not None and cost_after is not None:
            report.costed += 1
            report.cost_before += cost_before
            report.cost_after += cost_after


def format_report(report: ReplayReport) -> str:
    r = report.to_dict()
    out = [
        f"log:        {r['lines']} lines, {r['replayed']} replayed, "
        f"{r['skipped_no_prompt']} skipped (no prompt), {r['unreadable']} unreadable",
    ]
    if report.skipped_no_prompt:
        out.append(
            f"            {report.skipped_no_prompt} lines carry no prompt: the log was written "
            "with decision_log.include_prompt false; those decisions cannot be replayed"
        )
    out.append(f"candidate:  index {report.candidate_version}  config {report.candidate_config}")
    out.append(
        "logged by:  " + ", ".join(f"{v} ({n})" for v, n in report.logged_versions.most_common(3))
    )
    if not report.replayed:
        out.append("nothing to replay")
        return "\n".join(out)
    why = ", ".join(f"{k} {n}" for k, n in report.refusals.items())
    out.append(
        f"changed:    model {report.model_changed}/{report.replayed} "
        f"({r['model_changed_share']:.1%}), route {report.route_changed}/{report.replayed} "
        f"({r['route_changed_share']:.1%}), refused {report.refused}" + (f" ({why})" if why else "")
    )
    if report.costed:
        before, after = r["mean_cost_before_usd"], r["mean_cost_after_usd"]
        delta = f" ({after / before - 1:+.1%})" if before else ""
        out.append(f"mean cost:  ${before:.6f} before, ${after:.6f} after{delta}")
    for title, pairs in (("route", report.route_changes), ("model", report.model_changes)):
        if pairs:
            out.append(f"{title} changes:")
            width = max(len(a) for a, _ in pairs)
            for (a, b), n in pairs.most_common():
                out.append(f"  {a:<{width}} -> {b}  {n}")
    return "\n".join(out)


def candidate_router(bundle: Path, config_path: str | None) -> Router:
    """A router over the encoder(s) the config names and the state loaded from `bundle`
    (its own config's routing sections, or the config's when it carries none)."""
    from semroute.admin.bundles import LoadContext, load_path
    from semroute.config import load_config
    from semroute.server.app import make_encoder, make_static_encoder

    config = load_config(config_path)
    encoder = make_encoder(config)
    static = make_static_encoder(config)
    ctx = LoadContext(
        encoder=encoder, static_encoder=static, base_config=config, routing_config=config
    )
    with tempfile.TemporaryDirectory(prefix="semroute-replay-") as staging:
        loaded, _ = load_path(Path(bundle), ctx, Path(staging), config.admin.max_archive_bytes)
    return Router(encoder, loaded.state, static)
