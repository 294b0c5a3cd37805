"""Plot an evaluation report: the router's cost–quality curve against the baselines.

Drawn from the report dict alone (so a saved ``REPORT.json`` can be re-plotted): the
router's curve and its non-decreasing hull, each single model as a labelled point, the
random mix (the hull of the single models: choosing between two of them at random per
prompt lands on the segment between them) with uniform random choice as a point, and the
oracle. matplotlib is imported lazily with the non-interactive Agg backend.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any


def plot_report(
    report: Mapping[str, Any],
    path: str | Path,
    *,
    log_cost: bool = False,
    title: str | None = None,
) -> Path:
    """Write the cost–quality plot of ``report`` (from :func:`evaluate`) to ``path`` (PNG/SVG)."""
    try:
        import matplotlib
    except ImportError:
        raise ImportError("plotting needs matplotlib: pip install matplotlib") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=120)
    try:
        router = report["router"]
        curve = sorted(router["curve"], key=lambda pt: pt["cost"])
        ax.plot(
            [pt["cost"] for pt in curve],
            [pt["quality"] for pt in curve],
            marker=".",
            markersize=4,
            color="tab:blue",
            label=f"router (λ sweep), AIQ {router['aiq']:.3f}",
        )
        # The hull as AIQ integrates it: flat from its best point to the dearest cost.
        hull = [*router["hull"], [report["cost_range"][1], router["hull"][-1][1]]]
        ax.plot(*zip(*hull, strict=True), ls=":", color="tab:blue", alpha=0.6, label="router hull")

        rand = report["random"]
        mix = rand["curve"]
        ax.plot(
            *zip(*mix, strict=True),
            ls="--",
            color="grey",
            label=f"random mix of models, AIQ {rand['aiq']:.3f}",
        )
        ax.scatter(
            [rand["cost"]],
            [rand["quality"]],
            marker="s",
            color="grey",
            zorder=3,
            label="uniform random model",
        )

        models = report["single_models"]
        best = report["best_model"]["name"]
        for name, pt in models.items():
            color = "tab:red" if name == best else "black"
            ax.scatter([pt["cost"]], [pt["quality"]], color=color, s=22, zorder=3)
            ax.annotate(
                name,
                (pt["cost"], pt["quality"]),
                fontsize=7,
                xytext=(4, 3),
                textcoords="offset points",
                color=color,
            )
        ax.scatter([], [], color="black", s=22, label="single model (best in red)")

        oracle = report["oracle"]
        ax.scatter(
            [oracle["cost"]],
            [oracle["quality"]],
            marker="*",
            s=140,
            color="tab:green",
            zorder=4,
            label=f"oracle ({oracle['quality']:.3f})",
        )

        if log_cost:
            ax.set_xscale("log")
        ax.set_xlabel(
            f"average cost per prompt ({report.get('cost_unit', 'USD')})"
            + (", log scale" if log_cost else "")
        )
        ax.set_ylabel("average true quality")
        ax.set_title(title or f"Cost–quality on {report['prompts']} prompts")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
        fig.tight_layout()
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out)
    finally:
        plt.close(fig)
    return out
