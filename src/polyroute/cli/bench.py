"""``polyroute bench`` (ask, grade, store) and ``polyroute leaderboard`` (read the results)."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from polyroute.bench import leaderboard as lb
from polyroute.bench.judge import LLMJudge
from polyroute.bench.questions import Grader, Suite
from polyroute.bench.registry import GRADERS
from polyroute.bench.results import (
    Answer,
    AnswerLog,
    CostMeasure,
    build_rows,
    log_path_for,
    read_results,
    write_results,
)
from polyroute.bench.runner import BenchRunner, RunSettings, RunSummary
from polyroute.bench.suites import default_data_dir, list_suites, load_suites
from polyroute.catalog import apply_catalog, load_catalog
from polyroute.config import Config, load_config
from polyroute.errors import PolyrouteError

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[red]error:[/red] {escape(message)}", highlight=False)
    return typer.Exit(code)


BENCH_HELP = (
    "Ask every question of a suite to every model, grade the answers, and store them.\n\n"
    "Each answer is logged the moment it arrives: run the same command again to go on after "
    "an interruption; nothing answered is asked twice.\n\n"
    "Example: polyroute bench -s bigbench:object_counting "
    "-m smollm2-135m,qwen2.5-coder-0.5b --limit 200 -o results.jsonl"
)


def bench(
    suite: list[str] = typer.Option(
        [],
        "--suite",
        "-s",
        help="Suite(s): bigbench:TASK, llmrouter:test[/TASK+TASK], or a task.json / .jsonl path. "
        "Repeat it or separate with commas.",
    ),
    models: str | None = typer.Option(
        None, "--models", "-m", help="Comma-separated model names from the config \\[default: all]."
    ),
    out_path: Path | None = typer.Option(
        None, "--out", "-o", help="Results file (a routing dataset, one line per prompt)."
    ),
    limit: int | None = typer.Option(None, min=1, help="At most this many questions per suite."),
    seed: int | None = typer.Option(
        None, help="Sample --limit questions at random with this seed."
    ),
    concurrency: int = typer.Option(4, min=1, help="Requests in flight at once."),
    config: Path | None = typer.Option(
        None,
        "--config",
        "-c",
        envvar="POLYROUTE_CONFIG",
        help="YAML config. Without it: the embedded local models.",
    ),
    max_tokens: int = typer.Option(256, min=1, help="max_tokens for every answer."),
    temperature: float = typer.Option(0.0, min=0.0, help="Sampling temperature."),
    cost_measure: CostMeasure = typer.Option(
        CostMeasure.USD, help="What the results' `costs` hold: usd, latency (s) or tokens (out)."
    ),
    retries: int = typer.Option(3, min=0, help="Tries after the first for transient errors."),
    stream: bool = typer.Option(True, help="Stream answers (measures time to first token)."),
    grader: str | None = typer.Option(None, help="Grade every question with this grader."),
    judge: str | None = typer.Option(
        None, help="Model that grades questions whose grader is 'judge'."
    ),
    data_dir: Path | None = typer.Option(
        None, envvar="POLYROUTE_DATA_DIR", help="Folder holding bigbench/ and llmrouter/."
    ),
    log_file: Path | None = typer.Option(
        None, "--log", help="Answer log \\[default: RESULTS.answers.jsonl beside --out]."
    ),
    regrade: bool = typer.Option(
        False, help="First grade the logged answers again with today's graders."
    ),
    show_suites: bool = typer.Option(
        False, "--list-suites", help="List the named suites and exit."
    ),
) -> None:
    """Ask every question of a suite to every model, grade the answers, and store them."""
    data = data_dir or default_data_dir()
    if show_suites:
        for name in list_suites(data):
            out.print(name, highlight=False)
        return
    if not suite:
        raise _fail("name a suite with --suite (see --list-suites)")
    if out_path is None:
        raise _fail("name the results file with --out RESULTS.jsonl")
    try:
        # Prices the config leaves out come from the model hub, as in the gateway.
        cfg = load_config(config)
        cfg = apply_catalog(cfg, load_catalog(cfg.catalog_file))
        names = _models(cfg, models)
        questions = load_suites(
            [s for spec in suite for s in spec.split(",") if s.strip()],
            data,
            limit=limit,
            seed=seed,
        )
    except PolyrouteError as e:
        raise _fail(e.message) from None
    for note in questions.notes:
        err.print(f"[yellow]note:[/yellow] {escape(note)}", highlight=False)
    if not questions.questions:
        raise _fail(f"suite {questions.name} has no questions")
    if grader is not None and grader not in GRADERS:
        raise _fail(f"unknown grader {grader!r}; known: {', '.join(GRADERS.names())}")
    uses_judge = grader == "judge" or any(q.grader == "judge" for q in questions.questions)
    if uses_judge and judge is None:
        raise _fail("some questions are graded by an LLM judge: pass --judge MODEL")
    if judge is not None and cfg.model(judge) is None:
        raise _fail(
            f"--judge {judge!r} is not a model in the config; "
            f"models: {', '.join(m.name for m in cfg.models)}"
        )
    settings = RunSettings(
        models=tuple(names),
        max_tokens=max_tokens,
        temperature=temperature,
        concurrency=concurrency,
        retries=retries,
        stream=stream,
        grader=grader,
    )
    log = AnswerLog(log_file or log_path_for(out_path))
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    interrupted = False
    summary = RunSummary()
    try:
        summary = asyncio.run(_run(cfg, questions, settings, log, judge, regrade))
    except KeyboardInterrupt:
        interrupted = True
    except PolyrouteError as e:
        raise _fail(e.message) from None
    finally:
        rows = build_rows(questions.questions, log.load(), names, cost_measure=cost_measure)
        written = write_results(out_path, rows)
    _report(summary, questions, names, written, out_path, log, rows, cost_measure, interrupted)
    if interrupted:
        raise typer.Exit(130)
    if written < len(questions.questions):
        raise typer.Exit(1)


def _models(cfg: Config, models: str | None) -> list[str]:
    known = [m.name for m in cfg.models]
    if not models:
        if not known:
            raise PolyrouteError("the config has no models: add some under 'models'")
        return known
    names = [m.strip() for m in models.split(",") if m.strip()]
    unknown = [n for n in names if cfg.model(n) is None]
    if unknown:
        raise PolyrouteError(
            f"unknown model(s) {', '.join(unknown)}; the config has: {', '.join(known) or 'none'}"
        )
    if len(set(names)) != len(names):
        raise PolyrouteError("a model is named twice in --models")
    return names


async def _run(
    cfg: Config,
    suite: Suite,
    settings: RunSettings,
    log: AnswerLog,
    judge: str | None,
    regrade: bool,
) -> RunSummary:
    from polyroute.providers.pool import ProviderPool

    pool = ProviderPool(cfg)
    await pool.start()
    try:
        graders: dict[str, Grader] = {"judge": LLMJudge(pool, judge)} if judge else {}
        progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[quality]}"),
            console=err,
        )
        grades: dict[str, list[float]] = defaultdict(list)
        task = progress.add_task(suite.name[:40], total=None, quality="")

        def on_progress(answer: Answer | None, model: str) -> None:
            if answer is not None:
                grades[model].append(answer.grade)
            quality = "  ".join(
                f"{m} {sum(g) / len(g):.0%}" for m in settings.models if (g := grades[m])
            )
            progress.update(task, advance=1, quality=quality)

        runner = BenchRunner(
            pool,
            settings,
            log,
            model_config=cfg.model,
            graders=graders,
            on_progress=on_progress,
            on_start=lambda n: progress.update(task, total=n),
        )
        if regrade:
            changed = await runner.regrade(suite.questions)
            err.print(f"re-graded the logged answers: {changed} grade(s) changed")
        with progress:
            return await runner.run(suite.questions)
    finally:
        await pool.aclose()


def _report(
    summary: RunSummary,
    suite: Suite,
    models: list[str],
    written: int,
    out_path: Path,
    log: AnswerLog,
    rows: list[dict[str, Any]],
    cost_measure: CostMeasure,
    interrupted: bool,
) -> None:
    total = len(suite.questions)
    err.print(
        f"{summary.answered} new answers, {summary.already_done} already in {log.path}; "
        f"{written} of {total} prompts answered by all {len(models)} models → {out_path}",
        highlight=False,
    )
    if log.torn_lines:
        where = escape(str(log.path))
        err.print(f"[yellow]note:[/yellow] skipped {log.torn_lines} torn line(s) in {where}")
    for model, why in summary.abandoned.items():
        err.print(
            f"[red]gave up on {model}[/red] after repeated failures: {escape(why)}", highlight=False
        )
    for f in summary.failures[:5]:
        err.print(
            f"[yellow]failed:[/yellow] {escape(f.model)} on {escape(f.qid)}: {escape(f.error)}",
            highlight=False,
        )
    if len(summary.failures) > 5:
        err.print(f"... and {len(summary.failures) - 5} more failures")
    if interrupted or written < total:
        err.print("Run the same command again to ask what is missing; answers so far are kept.")
    if (
        cost_measure is CostMeasure.USD
        and rows
        and all(not any(row["costs"].values()) for row in rows)
    ):
        err.print(
            "[yellow]note:[/yellow] every answer cost $0 or an unknown price: pass "
            "--cost-measure latency (or tokens) to give a router a cost to trade against"
        )
    if written:
        shown = escape(str(out_path))
        err.print(f"Next: polyroute leaderboard {shown}   |   polyroute train --data {shown}")


def leaderboard(
    results: Path = typer.Argument(..., help="Results file written by `polyroute bench --out`."),
    plot: Path | None = typer.Option(None, help="Also write a quality-vs-cost plot (PNG) here."),
) -> None:
    """Quality, cost and latency per model (and quality per task) from a results file."""
    try:
        board = lb.compute(read_results(results))
        lb.render(board, out)
        if plot is not None:
            axis = lb.plot(board, plot)
            err.print(f"plot ({axis} on x) → {escape(str(plot))}", highlight=False)
    except PolyrouteError as e:
        raise _fail(e.message) from None


def register(app: typer.Typer) -> None:
    app.command(help=BENCH_HELP)(bench)
    app.command()(leaderboard)
