"""``polyroute router anchors | add-model | onboard``: make a new model routable without retraining.

An ``mf`` router scores any model that has a vector. A new model gets one from its scores on
a few *anchor* prompts, the most informative of the router's training prompts
(:mod:`polyroute.routing_eval.anchors`): ``anchors`` writes them, ``polyroute bench`` asks
and grades them, ``add-model`` fits the vector; ``onboard`` does the three in one go through
the providers of the config.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from polyroute.cli.steps import steps
from polyroute.errors import PolyrouteError

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

app = typer.Typer(
    name="router",
    help="Grow a trained router: anchor prompts for a new model, add it, or onboard it in one go.",
    no_args_is_help=True,
)

ROUTER_HELP = "A trained router's directory (an mf router to add models to)."


def _fail(message: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {escape(message)}")
    return typer.Exit(2)


def _price(input_price: float | None, output_price: float | None) -> tuple[float, float] | None:
    if (input_price is None) != (output_price is None):
        raise _fail("give both --input-price and --output-price (USD per 1M tokens), or neither")
    if input_price is None or output_price is None:
        return None
    return (input_price, output_price)


@app.command("anchors")
def anchors(
    router_dir: Path = typer.Option(..., "--router", help=ROUTER_HELP),
    count: int = typer.Option(50, "--count", "-n", min=1, help="How many anchor prompts."),
    out_path: Path = typer.Option(..., "--out", "-o", help="Anchors file to write (JSONL)."),
    gradable: bool = typer.Option(
        False,
        "--gradable",
        help="Only prompts with reference answers: the file is then a suite `polyroute bench` "
        "can run and grade as it stands.",
    ),
) -> None:
    """Write N training prompts for a new model to answer: a representative sample."""
    from polyroute.routing.persist import read_anchor_pool
    from polyroute.routing_eval.anchors import choose_anchors, write_anchors

    try:
        rows = choose_anchors(read_anchor_pool(router_dir), count, gradable=gradable)
        write_anchors(out_path, rows)
    except PolyrouteError as e:
        raise _fail(e.message) from None
    except OSError as e:
        raise _fail(f"{out_path}: cannot write: {e.strerror or e}") from None
    graded = sum("answer" in r for r in rows)
    tasks = Counter(r.get("task") or "?" for r in rows)
    out.print(
        f"wrote {len(rows)} anchors from {len(tasks)} task(s) to {escape(str(out_path))} "
        f"({graded} with reference answers)"
    )
    if graded == len(rows):
        out.print(
            f"next: polyroute bench -s {escape(str(out_path))} -m MODEL -o results.jsonl, then "
            f"polyroute router add-model --router {escape(str(router_dir))} "
            "--data results.jsonl --model MODEL"
        )
    else:
        if graded:
            out.print("pass --gradable to keep only prompts that `polyroute bench` can grade")
        out.print(
            "next: score MODEL on these prompts (a routing dataset with its scores), then "
            f"polyroute router add-model --router {escape(str(router_dir))} "
            "--data FILE --model MODEL"
        )


@app.command("add-model")
def add_model(
    router_dir: Path = typer.Option(..., "--router", help=ROUTER_HELP),
    data: Path = typer.Option(
        ..., "--data", help="Routing rows with the model's scores (e.g. `polyroute bench` results)."
    ),
    model: str = typer.Option(..., "--model", help="The model to add, as named in the data."),
    input_price: float | None = typer.Option(
        None, "--input-price", min=0, help="USD per 1M input tokens."
    ),
    output_price: float | None = typer.Option(
        None, "--output-price", min=0, help="USD per 1M output tokens."
    ),
    out_dir: Path | None = typer.Option(
        None, "--out", help="Where to save the router [default: over --router]."
    ),
    replace: bool = typer.Option(
        False, "--replace", help="Refit a model the router already learned from training data."
    ),
) -> None:
    """Fit a new model's vector from its scores, the rest of the router frozen, and save it."""
    from polyroute.routing_eval.dataset import RoutingDataset

    price = _price(input_price, output_price)
    try:
        dataset = RoutingDataset.load(data)
        _add_and_save(router_dir, dataset, model, price, out_dir, replace)
    except PolyrouteError as e:
        raise _fail(e.message) from None


def _add_and_save(
    router_dir: Path,
    dataset: Any,
    model: str,
    price: tuple[float, float] | None,
    out_dir: Path | None,
    replace: bool,
) -> None:
    from polyroute.routing.persist import (
        BUILTIN_PREFIX,
        RouterFileError,
        load_router,
        read_anchor_pool,
        save_router,
    )
    from polyroute.routing_eval.onboard import add_model_from_data, require_mf

    if out_dir is None and str(router_dir).startswith(BUILTIN_PREFIX):
        raise _fail(f"{router_dir} ships with polyroute and is not changed: pass --out DIR")
    router = require_mf(load_router(router_dir), router_dir)
    try:
        pool: list[dict[str, Any]] | None = read_anchor_pool(router_dir)
    except RouterFileError:
        pool = None
    added = add_model_from_data(router, dataset, model, pool=pool, price=price, replace=replace)
    target = out_dir or router_dir
    try:
        save_router(router, target, training=router.manifest.get("training"), anchors=pool)
    except OSError as e:
        raise _fail(f"{target}: cannot write: {e.strerror or e}") from None
    was = " (it replaces a prior)" if added.replaced and model not in router.priors else ""
    out.print(
        f"added [bold]{escape(model)}[/bold] from {added.prompts} scored prompts "
        f"({added.anchors} of them anchors; mean score {added.mean_score:.2f}){was}: "
        f"the router now scores {len(router.models)} models → {escape(str(target))}"
    )
    if model not in router.prices:
        out.print(
            f"[yellow]note:[/yellow] {escape(model)} has no price in the router: when cost counts "
            "(λ > 0) it is routed only where the config gives it one (input_price/output_price "
            "or catalog_id); pass --input-price/--output-price to store one"
        )
    out.print(f'try it: polyroute route --router {escape(str(target))} "a question"')


@app.command("onboard")
def onboard(
    router_dir: Path = typer.Option(..., "--router", help=ROUTER_HELP),
    model: str = typer.Option(..., "--model", help="A model of the config to add to the router."),
    count: int = typer.Option(50, "--count", "-n", min=1, help="How many anchors to ask."),
    config: Path | None = typer.Option(
        None, "--config", "-c", envvar="POLYROUTE_CONFIG", help="YAML config with the model."
    ),
    work: Path | None = typer.Option(
        None,
        "--work",
        help="Folder for the anchors, answers and results [default: ./onboard-MODEL]; "
        "run again to go on after an interruption.",
    ),
    out_dir: Path | None = typer.Option(
        None, "--out", help="Where to save the router [default: over --router]."
    ),
    input_price: float | None = typer.Option(
        None, "--input-price", min=0, help="USD per 1M input tokens [default: the config's]."
    ),
    output_price: float | None = typer.Option(
        None, "--output-price", min=0, help="USD per 1M output tokens [default: the config's]."
    ),
    concurrency: int = typer.Option(4, min=1, help="Requests in flight at once."),
    max_tokens: int = typer.Option(256, min=1, help="max_tokens for every answer."),
    retries: int = typer.Option(3, min=0, help="Tries after the first for transient errors."),
    replace: bool = typer.Option(
        False, "--replace", help="Refit a model the router already learned from training data."
    ),
) -> None:
    """Ask a configured model the router's anchors, grade its answers, and add it."""
    from polyroute.bench.results import AnswerLog, build_rows, log_path_for, write_results
    from polyroute.bench.runner import RunSettings
    from polyroute.bench.suites import load_user_jsonl
    from polyroute.catalog import apply_catalog, load_catalog
    from polyroute.config import load_config
    from polyroute.routing.persist import load_router, read_anchor_pool
    from polyroute.routing_eval.anchors import choose_anchors, write_anchors
    from polyroute.routing_eval.dataset import RoutingDataError, RoutingDataset
    from polyroute.routing_eval.onboard import require_mf

    price = _price(input_price, output_price)
    folder = work or Path(f"onboard-{model.replace('/', '_')}")
    try:
        require_mf(load_router(router_dir), router_dir)
        plain = load_config(config)
        cfg = apply_catalog(plain, load_catalog(plain.catalog_file))
        served = cfg.model(model)
        if served is None:
            known = ", ".join(m.name for m in cfg.models) or "none"
            raise RoutingDataError(
                f"{model!r} is not a model of the config (it has: {known}); add it under "
                "'models' or pass --config FILE"
            )
        rows = choose_anchors(read_anchor_pool(router_dir), count, gradable=True)
        if price is None and served.input_price is not None and served.output_price is not None:
            price = (served.input_price, served.output_price)
        anchors_path = folder / "anchors.jsonl"
        results_path = folder / "results.jsonl"
        write_anchors(anchors_path, rows)
        suite = load_user_jsonl(anchors_path)
        settings = RunSettings(
            models=(model,), max_tokens=max_tokens, concurrency=concurrency, retries=retries
        )
        log = AnswerLog(log_path_for(results_path))
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
        with steps(err, f"asking {model} {len(suite.questions)} anchors"):
            summary = asyncio.run(_ask(cfg, suite.questions, settings, log))
        answered = build_rows(suite.questions, log.load(), [model])
        write_results(results_path, answered)
        for f in summary.failures[:3]:
            err.print(f"[yellow]failed:[/yellow] {escape(f.qid)}: {escape(f.error)}")
        if not answered:
            why = summary.abandoned.get(model) or (
                summary.failures[0].error if summary.failures else "no answer came back"
            )
            raise RoutingDataError(
                f"{model} answered none of the {len(rows)} anchors ({why}); check its provider "
                f"in the config, then run the same command again (answers are kept in {folder})"
            )
        if len(answered) < len(rows):
            err.print(
                f"[yellow]note:[/yellow] {len(answered)} of {len(rows)} anchors answered; "
                "adding the model from those (run again to ask the rest)"
            )
        out.print(
            f"{model} answered {len(answered)} anchors; "
            f"graded answers → {escape(str(results_path))}"
        )
        dataset = RoutingDataset.load(results_path)
        _add_and_save(router_dir, dataset, model, price, out_dir, replace)
    except PolyrouteError as e:
        raise _fail(e.message) from None
    except OSError as e:
        raise _fail(f"{e.filename or folder}: {e.strerror or e}") from None


async def _ask(cfg: Any, questions: Any, settings: Any, log: Any) -> Any:
    from polyroute.bench.runner import BenchRunner
    from polyroute.providers.pool import ProviderPool

    pool = ProviderPool(cfg)
    await pool.start()
    try:
        return await BenchRunner(pool, settings, log, model_config=cfg.model).run(questions)
    finally:
        await pool.aclose()


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="router")
