"""Route accuracy on labelled prompts: the number a user measures the router by on their traffic.

`semroute eval-routes --data FILE.jsonl` (lines ``{"prompt", "label"}``, optionally ``"also"``:
other acceptable routes) feeds every prompt through the same `Router.route` as serving and
reports accuracy, per-route precision/recall, the confusion matrix and the **price-weighted
error**: misroutes are not equal. Sending a hard prompt to a cheaper model (an *under-route*)
risks a bad answer and counts double; sending an easy one to a dearer model (*over-route*) only
wastes money and counts once; a wrong label that lands on the same model costs nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

UNDER_ROUTE_WEIGHT = 2.0
OVER_ROUTE_WEIGHT = 1.0


@dataclass(frozen=True, slots=True)
class LabelledPrompt:
    prompt: str
    label: str
    also: tuple[str, ...] = ()

    def accepts(self, route: str) -> bool:
        return route == self.label or route in self.also


def read_labelled(path: str | Path) -> list[LabelledPrompt]:
    """Lines of ``{"prompt": str, "label": str[, "also": [str, ...]]}``; errors name the line."""
    out: list[LabelledPrompt] = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                prompt, label = row["prompt"], row["label"]
                also = tuple(row.get("also") or ())
            except (ValueError, KeyError, TypeError) as e:
                raise ValueError(f"{path}:{n}: expected {{'prompt', 'label'}} JSON ({e})") from None
            if not isinstance(prompt, str) or not isinstance(label, str) or not prompt.strip():
                raise ValueError(f"{path}:{n}: 'prompt' and 'label' must be non-empty strings")
            out.append(LabelledPrompt(prompt, label, also))
    if not out:
        raise ValueError(f"{path}: no labelled prompts")
    return out


def route_metrics(
    items: Sequence[LabelledPrompt],
    predicted: Sequence[str],
    route_price: Callable[[str], float] | None = None,
) -> dict[str, Any]:
    """Accuracy (strict and accepting ``also``), per-route precision/recall/F1, the confusion
    matrix (rows: label, columns: prediction) and, given each route's model price, the
    price-weighted error."""
    if len(items) != len(predicted):
        raise ValueError("one prediction per item")
    labels = sorted({i.label for i in items} | set(predicted))
    pos = {r: k for k, r in enumerate(labels)}
    confusion = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for item, pred in zip(items, predicted, strict=True):
        confusion[pos[item.label], pos[pred]] += 1
    n = len(items)
    strict = float(np.trace(confusion)) / n if n else 0.0
    accepted = sum(i.accepts(p) for i, p in zip(items, predicted, strict=True)) / n if n else 0.0
    per_route = {}
    for r, k in pos.items():
        tp = int(confusion[k, k])
        predicted_r, actual_r = int(confusion[:, k].sum()), int(confusion[k, :].sum())
        precision = tp / predicted_r if predicted_r else 0.0
        recall = tp / actual_r if actual_r else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_route[r] = {
            "support": actual_r,
            "predicted": predicted_r,
            "precision": round(precision, 4),
            "recall": round(recall, 4),
            "f1": round(f1, 4),
        }
    out: dict[str, Any] = {
        "n": n,
        "accuracy": round(strict, 4),
        "accuracy_accepting_also": round(accepted, 4),
        "per_route": per_route,
        "labels": labels,
        "confusion": confusion.tolist(),
    }
    if route_price is not None:
        out["price_weighted"] = price_weighted_error(items, predicted, route_price)
    return out


def price_weighted_error(
    items: Sequence[LabelledPrompt], predicted: Sequence[str], route_price: Callable[[str], float]
) -> dict[str, float]:
    """Share of under-routes (to a cheaper model), over-routes (dearer) and their weighted sum.

    A prediction accepted by the item (label or ``also``) is never an error.
    """
    under = over = 0
    for item, pred in zip(items, predicted, strict=True):
        if item.accepts(pred):
            continue
        got, want = route_price(pred), route_price(item.label)
        if got < want:
            under += 1
        elif got > want:
            over += 1
    n = max(1, len(items))
    return {
        "under_routed": round(under / n, 4),
        "over_routed": round(over / n, 4),
        "weighted_error": round((UNDER_ROUTE_WEIGHT * under + OVER_ROUTE_WEIGHT * over) / n, 4),
    }


def format_report(metrics: dict[str, Any]) -> str:
    """The text `semroute eval-routes` prints."""
    lines = [
        f"prompts: {metrics['n']}",
        f"accuracy: {metrics['accuracy']:.4f} (accepting alternatives: "
        f"{metrics['accuracy_accepting_also']:.4f})",
    ]
    if "price_weighted" in metrics:
        pw = metrics["price_weighted"]
        lines.append(
            f"price-weighted error: {pw['weighted_error']:.4f} (under-routed "
            f"{pw['under_routed']:.4f} x{UNDER_ROUTE_WEIGHT:g}, over-routed "
            f"{pw['over_routed']:.4f} x{OVER_ROUTE_WEIGHT:g})"
        )
    lines.append(f"{'route':<18} {'support':>7} {'precision':>9} {'recall':>7} {'f1':>6}")
    for r, m in metrics["per_route"].items():
        lines.append(
            f"{r:<18} {m['support']:>7} {m['precision']:>9.3f} {m['recall']:>7.3f} {m['f1']:>6.3f}"
        )
    labels = metrics["labels"]
    short = [r[:6] for r in labels]
    lines.append("confusion (rows: label, columns: predicted)")
    lines.append(" " * 18 + " ".join(f"{s:>6}" for s in short))
    for r, row in zip(labels, metrics["confusion"], strict=True):
        lines.append(f"{r:<18}" + " ".join(f"{v:>6}" for v in row))
    return "\n".join(lines)


def plot_confusion(metrics: dict[str, Any], path: str | Path, title: str = "") -> None:
    """A row-normalised confusion matrix as PNG (counts written in the cells)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = metrics["labels"]
    counts = np.asarray(metrics["confusion"], dtype=np.float64)
    share = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    size = max(5.0, 0.5 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size * 0.9))
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_xlabel("predicted route")
    ax.set_ylabel("labelled route")
    for i in range(len(labels)):
        for j in range(len(labels)):
            if counts[i, j]:
                color = "white" if share[i, j] > 0.5 else "black"
                ax.text(j, i, int(counts[i, j]), ha="center", va="center", fontsize=7, color=color)
    ax.set_title(title or f"accuracy {metrics['accuracy']:.3f} on {metrics['n']} prompts")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def route_prices(policy: Any, config: Any) -> Callable[[str], float]:
    """Each route's price: input + output list price per Mtok of the model the policy picks for
    it at the balanced knob with no constraints (what a misroute changes)."""
    from semroute.types import RouteQuery

    price = {m.name: m.input_price_per_mtok + m.output_price_per_mtok for m in config.models}
    cache: dict[str, float] = {}

    def of(route: str) -> float:
        if route not in cache:
            if route not in policy.route_pos:
                route_for_policy = config.policy.default_route
            else:
                route_for_policy = route
            choice = policy.choose(RouteQuery(text="x"), route_for_policy, 1)
            cache[route] = price[choice.model]
        return cache[route]

    return of
