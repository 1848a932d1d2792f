"""PNG plots of an evaluation: PGR vs strong share (two models) and quality vs cost."""

from __future__ import annotations

from pathlib import Path
from typing import Any

STYLE = {
    "router": ("tab:blue", "-"),
    "knn": ("tab:orange", "--"),
    "random": ("tab:gray", ":"),
    "oracle": ("tab:green", "-."),
}


def plot_summary(summary: dict[str, Any], path: str | Path, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tm = summary.get("two_model")
    ncols = 2 if tm else 1
    fig, axes = plt.subplots(1, ncols, figsize=(6 * ncols, 4.6), squeeze=False)
    label = {"router": summary.get("router", "router")}
    if tm:
        ax = axes[0][0]
        for name, curve in tm["pgr_curves"].items():
            color, ls = STYLE.get(name, ("black", "-"))
            r = tm["routers"][name]
            ax.plot(
                [100 * v for v in curve["x"]],
                curve["y"],
                ls,
                color=color,
                label=f"{label.get(name, name)} (APGR {r['apgr']:.3f})",
            )
        ax.axhline(0.5, color="k", lw=0.5, alpha=0.4)
        ax.axhline(0.8, color="k", lw=0.5, alpha=0.4)
        ax.set_xlabel(f"calls to {tm['strong']} (%)")
        ax.set_ylabel("PGR")
        ax.set_xlim(0, 100)
        ax.set_ylim(-0.05, max(1.1, max(tm["pgr_curves"]["oracle"]["y"]) + 0.05))
        ax.legend(loc="lower right", fontsize=8)
        ax.set_title("performance gap recovered")
    nm = summary["n_model"]
    ax = axes[0][-1]
    c_best = nm["cost_of_best_model"] or 1.0
    for name, curve in nm["curves"].items():
        color, ls = STYLE.get(name, ("black", "-"))
        area = nm["routers"][name]["area"]
        ax.plot(
            [c / c_best for c in curve["cost"]],
            [q / nm["best_quality"] for q in curve["quality"]],
            ls,
            color=color,
            label=f"{label.get(name, name)} (area {area:.3f})",
        )
    for j, sm in enumerate(nm["single_models"]):
        ax.plot(sm["cost"] / c_best, sm["quality"] / nm["best_quality"], "ko", ms=4)
        ax.annotate(
            summary["models"][j].split("/")[-1],
            (sm["cost"] / c_best, sm["quality"] / nm["best_quality"]),
            fontsize=7,
        )
    ax.set_xlabel("cost (x always the best model)")
    ax.set_ylabel("quality (x the best model)")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("cost-quality")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
