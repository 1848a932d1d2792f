"""The eval gate: fail (non-zero exit) when a routing change is worse than a recorded baseline.

A gate file (YAML)::

    # absolute floors and ceilings
    require:
      router.apgr: {min: 0.60}
      router.cpt50: {max: 0.35}
      router.pgr80.cost_saved: {min: 0.40}
      router.apgr_minus_random: {min: 0.05}
    # figures of the currently promoted policy, and how much worse a change may be
    baseline:
      router.apgr: 0.68
    max_regression: 0.02       # or a mapping metric -> allowed regression

Metric names are flattened from ``semroute eval``'s JSON: ``<router>.<figure>`` with router in
router / knn / random / oracle and figure in apgr, cpt50, cpt80, area, ``pgr80.cost_saved``,
``pgr80.strong_share``, ``quality_share@0.5`` (share of the best model's quality within half
its cost); plus ``router.apgr_minus_random`` and ``router.apgr_minus_knn``. Lower is better for
cpt* and strong_share; higher for everything else.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

LOWER_IS_BETTER = ("cpt50", "cpt80", "strong_share")


def flatten(summary: dict[str, Any]) -> dict[str, float]:
    """The gate's metric names -> values, from an evaluation summary."""
    out: dict[str, float] = {}
    tm = summary.get("two_model")
    if tm:
        for name, r in tm["routers"].items():
            for key in ("apgr", "cpt50", "cpt80"):
                out[f"{name}.{key}"] = float(r[key])
            for op in r.get("operating_points", []):
                tag = f"{name}.pgr{round(100 * op['pgr_target'])}"
                out[f"{tag}.strong_share"] = float(op["strong_share"])
                if "cost_saved_vs_strong" in op:
                    out[f"{tag}.cost_saved"] = float(op["cost_saved_vs_strong"])
        out["router.apgr_minus_random"] = out["router.apgr"] - out["random.apgr"]
        out["router.apgr_minus_knn"] = out["router.apgr"] - out["knn.apgr"]
    for name, r in summary["n_model"]["routers"].items():
        out[f"{name}.area"] = float(r["area"])
        for b, v in r["quality_share_at_cost"].items():
            out[f"{name}.quality_share@{b}"] = float(v)
    return out


@dataclass
class Check:
    metric: str
    value: float
    bound: float
    kind: str  # "min", "max", "baseline"
    ok: bool

    def line(self) -> str:
        op = (
            ">="
            if self.kind == "min" or (self.kind == "baseline" and self.bound_is_floor)
            else "<="
        )
        mark = "ok  " if self.ok else "FAIL"
        return f"[{mark}] {self.metric} = {self.value:.4f} ({self.kind}: {op} {self.bound:.4f})"

    @property
    def bound_is_floor(self) -> bool:
        return not any(self.metric.endswith(s) for s in LOWER_IS_BETTER)


def check(summary: dict[str, Any], gate: dict[str, Any]) -> list[Check]:
    metrics = flatten(summary)
    checks: list[Check] = []

    def get(name: str) -> float:
        if name not in metrics:
            raise KeyError(
                f"gate names unknown metric {name!r}; known: {', '.join(sorted(metrics))}"
            )
        return metrics[name]

    for name, rule in (gate.get("require") or {}).items():
        v = get(name)
        if "min" in rule:
            checks.append(Check(name, v, float(rule["min"]), "min", v >= float(rule["min"])))
        if "max" in rule:
            checks.append(Check(name, v, float(rule["max"]), "max", v <= float(rule["max"])))
    reg = gate.get("max_regression", 0.0)
    for name, base in (gate.get("baseline") or {}).items():
        v = get(name)
        allowed = float(reg.get(name, 0.0) if isinstance(reg, dict) else reg)
        c = Check(name, v, 0.0, "baseline", True)
        if c.bound_is_floor:
            c.bound = float(base) - allowed
            c.ok = v >= c.bound
        else:
            c.bound = float(base) + allowed
            c.ok = v <= c.bound
        checks.append(c)
    return checks


def load_gate(path: str | Path) -> dict[str, Any]:
    doc = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(doc, dict) or not (doc.get("require") or doc.get("baseline")):
        raise ValueError(f"{path}: a gate needs a 'require' and/or a 'baseline' section")
    return doc


def run_gate(summary: dict[str, Any], path: str | Path) -> tuple[bool, str]:
    """(passed, report text)."""
    checks = check(summary, load_gate(path))
    ok = all(c.ok for c in checks)
    text = "\n".join(c.line() for c in checks)
    verdict = "gate passed" if ok else f"gate FAILED ({sum(not c.ok for c in checks)} checks)"
    return ok, f"{text}\n{verdict}: {path}"
