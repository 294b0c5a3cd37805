"""The leaderboard: quality, cost and latency per model (and quality per task) from a results file.

Tables are printed with rich; :func:`plot` draws quality against cost (USD per prompt, or
mean latency when no model costs money) with the Pareto front and the per-prompt oracle.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from polyroute.bench.questions import BenchError


@dataclass(slots=True)
class ModelStats:
    """One model's figures over the prompts it answered."""

    model: str
    answers: int = 0
    quality: float = 0.0
    #: Sum of the known USD costs, and how many answers had one.
    cost_usd: float = 0.0
    priced: int = 0
    latency_s: list[float] = field(default_factory=list)
    ttft_s: list[float] = field(default_factory=list)
    output_tokens: list[int] = field(default_factory=list)
    errors: int = 0

    @property
    def usd_per_prompt(self) -> float | None:
        return self.cost_usd / self.priced if self.priced else None

    @property
    def mean_latency_s(self) -> float | None:
        return statistics.fmean(self.latency_s) if self.latency_s else None

    @property
    def mean_ttft_s(self) -> float | None:
        return statistics.fmean(self.ttft_s) if self.ttft_s else None

    @property
    def mean_output_tokens(self) -> float | None:
        return statistics.fmean(self.output_tokens) if self.output_tokens else None


@dataclass(slots=True)
class Leaderboard:
    models: list[ModelStats]
    #: task → model → (mean quality, answers)
    tasks: dict[str, dict[str, tuple[float, int]]]
    prompts: int
    #: Mean over prompts of the best score any model got: what a perfect router reaches.
    oracle: float


def compute(rows: Sequence[dict[str, Any]]) -> Leaderboard:
    """Aggregate results rows into per-model and per-task figures."""
    by_model: dict[str, ModelStats] = {}
    sums: dict[str, float] = {}
    task_sums: dict[str, dict[str, list[float]]] = {}
    best: list[float] = []
    for row in rows:
        scores = row.get("scores") or {}
        details = row.get("details") or {}
        task = str(row.get("task") or "(no task)")
        if scores:
            best.append(max(float(v) for v in scores.values()))
        for model, score in scores.items():
            stats = by_model.setdefault(model, ModelStats(model))
            stats.answers += 1
            sums[model] = sums.get(model, 0.0) + float(score)
            task_sums.setdefault(task, {}).setdefault(model, []).append(float(score))
            d = details.get(model) or {}
            usd = d.get("cost_usd")
            if isinstance(usd, int | float):
                stats.cost_usd += usd
                stats.priced += 1
            if isinstance(d.get("latency_s"), int | float) and not d.get("error"):
                stats.latency_s.append(float(d["latency_s"]))
            if isinstance(d.get("ttft_s"), int | float):
                stats.ttft_s.append(float(d["ttft_s"]))
            if isinstance(d.get("output_tokens"), int):
                stats.output_tokens.append(d["output_tokens"])
            if d.get("error"):
                stats.errors += 1
    for model, stats in by_model.items():
        stats.quality = sums[model] / stats.answers
    tasks = {
        task: {m: (statistics.fmean(v), len(v)) for m, v in per_model.items()}
        for task, per_model in sorted(task_sums.items())
    }
    models = sorted(by_model.values(), key=lambda s: (-s.quality, s.model))
    return Leaderboard(models, tasks, len(rows), statistics.fmean(best) if best else 0.0)


def _fmt(value: float | None, spec: str, unit: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{unit}"


def _usd(stats: ModelStats) -> str:
    """Total USD; "+N?" counts answers whose price is unknown (left out, never taken as $0)."""
    if not stats.priced:
        return "unknown"
    text = f"{stats.cost_usd:.4g}"
    return text if stats.priced == stats.answers else f"{text} +{stats.answers - stats.priced}?"


def render(board: Leaderboard, console: Console) -> None:
    """Print the model table, then the per-task table."""
    table = Table(title=f"Leaderboard: {board.prompts} prompts", title_justify="left")
    table.add_column("model", style="bold", no_wrap=True)
    for name in ("quality", "n", "USD", "latency", "TTFT", "tokens"):
        table.add_column(name, justify="right", no_wrap=True)
    for s in board.models:
        table.add_row(
            s.model,
            f"{s.quality:.1%}",
            str(s.answers) + (f" ({s.errors} refused)" if s.errors else ""),
            _usd(s),
            _fmt(s.mean_latency_s, ".2f", "s"),
            _fmt(s.mean_ttft_s, ".2f", "s"),
            _fmt(s.mean_output_tokens, ".0f"),
        )
    table.add_section()
    table.add_row("oracle router", f"{board.oracle:.1%}", style="italic")
    table.caption = (
        "USD: total; latency, TTFT and output tokens: means per answer. "
        "Oracle router: the best answer of any model, prompt by prompt."
    )
    console.print(table)
    if len(board.tasks) < 2 and len(board.models) < 2:
        return
    names = [s.model for s in board.models]
    per_task = Table(title="Quality per task", title_justify="left")
    per_task.add_column("task", style="bold", overflow="fold")
    per_task.add_column("n", justify="right")
    for name in names:
        per_task.add_column(name, justify="right")
    for task, per_model in board.tasks.items():
        n = max(count for _, count in per_model.values())
        top = max(q for q, _ in per_model.values())
        cells = []
        for name in names:
            if name not in per_model:
                cells.append("-")
                continue
            q = per_model[name][0]
            cells.append(f"[green]{q:.1%}[/]" if q == top and len(per_model) > 1 else f"{q:.1%}")
        per_task.add_row(task, str(n), *cells)
    console.print(per_task)


def plot(board: Leaderboard, path: Path) -> str:
    """Write the quality-vs-cost scatter plot to ``path``; returns what the x axis shows."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise BenchError(
            "the plot needs matplotlib: pip install 'polyroute[plot]' (or leave out --plot)"
        ) from None
    paid = [s for s in board.models if s.usd_per_prompt]
    if paid:
        label, xs = "cost per prompt (USD)", [s.usd_per_prompt for s in board.models]
    else:
        label, xs = (
            "mean latency per prompt (s) — no model costs money",
            [s.mean_latency_s for s in board.models],
        )
    points = [
        (x, s.quality, s.model) for x, s in zip(xs, board.models, strict=True) if x is not None
    ]
    if not points:
        raise BenchError("nothing to plot: no model has a known cost or a latency")
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=120)
    ax.scatter([p[0] for p in points], [p[1] for p in points], s=70, zorder=3, color="#3b6ea5")
    right = max(p[0] for p in points)
    for x, y, name in points:
        at_right = x == right and len(points) > 1  # keep the label inside the axes
        ax.annotate(
            f"{name}\n{y:.0%}",
            (x, y),
            textcoords="offset points",
            xytext=(-8 if at_right else 8, -8 if y > 0.9 else 6),
            ha="right" if at_right else "left",
            va="top" if y > 0.9 else "bottom",
            fontsize=9,
            bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.8},
            zorder=4,
        )
    ax.margins(x=0.12)
    front = _pareto(points)
    if len(front) > 1:
        ax.plot([p[0] for p in front], [p[1] for p in front], "--", color="#3b6ea5", alpha=0.5,
                label="Pareto front")  # fmt: skip
    ax.axhline(
        board.oracle, color="#c0504d", linestyle=":", label=f"oracle router {board.oracle:.0%}"
    )
    positive = [p[0] for p in points if p[0] > 0]
    if len(positive) == len(points) and max(positive) / min(positive) > 20:
        ax.set_xscale("log")
    ax.set_xlabel(label)
    ax.set_ylabel("quality (mean grade)")
    ax.set_ylim(0, 1.05)
    ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    ax.set_title(f"Quality vs cost over {board.prompts} prompts")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return label


def _pareto(points: list[tuple[float, float, str]]) -> list[tuple[float, float, str]]:
    """The models no other beats on both cost and quality, cheapest first."""
    front: list[tuple[float, float, str]] = []
    for p in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or p[1] > front[-1][1]:
            front.append(p)
    return front
