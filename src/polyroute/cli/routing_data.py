"""``polyroute import-data`` and ``polyroute eval``: routing datasets and offline evaluation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from polyroute.errors import PolyrouteError
from polyroute.routing.pricing import DEFAULT_OUTPUT_TOKENS, PriceTable
from polyroute.routing_eval.costs import (
    catalog_prices,
    fill_missing_costs,
    load_prices,
    models_lacking_costs,
)
from polyroute.routing_eval.dataset import RoutingDataError, RoutingDataset

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def _fail(message: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {escape(message)}")
    return typer.Exit(2)


def import_data(
    input_path: Path = typer.Argument(
        ..., metavar="INPUT", help="The file to import (JSON or CSV, per --format)."
    ),
    fmt: str = typer.Option(
        ..., "--format", "-f", help="Source format: llmrouter, routerbench or routellm."
    ),
    out_path: Path = typer.Option(..., "--out", "-o", help="Routing dataset to write (JSONL)."),
    prices: Path | None = typer.Option(
        None,
        "--prices",
        help="Prices (USD per 1M tokens) to estimate missing costs: LLMRouter's "
        "default_llm.json or {model: [input, output]}. llmrouter finds its own by default.",
    ),
    output_tokens: int = typer.Option(
        DEFAULT_OUTPUT_TOKENS, "--output-tokens", min=0, help="Assumed answer length for costs."
    ),
) -> None:
    """Convert LLMRouter, RouterBench or RouteLLM data into polyroute's routing JSONL."""
    from polyroute.routing_eval.importers import IMPORTERS, import_dataset

    if fmt not in IMPORTERS:
        raise typer.BadParameter(
            f"unknown format {fmt!r}; choose one of: {', '.join(IMPORTERS.names())}",
            param_hint="--format",
        )
    try:
        dataset, estimate = import_dataset(
            fmt, input_path, prices=prices, output_tokens=output_tokens
        )
        dataset.save(out_path)
    except PolyrouteError as e:
        raise _fail(e.message) from None
    except OSError as e:
        raise _fail(f"{out_path}: cannot write: {e.strerror or e}") from None
    labelled = sum(t is not None for t in dataset.tasks)
    out.print(
        f"wrote {len(dataset)} prompts × {len(dataset.models)} models to {escape(str(out_path))} "
        f"({labelled} with a task)"
    )
    if estimate is not None:
        out.print(escape(estimate.describe()))
    elif not dataset.has_all_costs:
        out.print(
            "[yellow]note:[/yellow] some costs are missing; pass --prices here or to "
            "`polyroute eval` to estimate them"
        )


def eval_router(
    router_dir: Path = typer.Option(..., "--router", help="Saved router directory."),
    data: Path = typer.Option(..., "--data", help="Test routing dataset (JSONL)."),
    report_path: Path = typer.Option(..., "--report", help="Report to write (JSON)."),
    predictions_path: Path = typer.Option(
        ..., "--predictions", help="Per-prompt predicted quality to write (JSONL)."
    ),
    plot_path: Path | None = typer.Option(None, "--plot", help="Cost–quality plot (PNG)."),
    log_cost: bool = typer.Option(False, "--log-cost", help="Log-scale cost axis in the plot."),
    exclude_from: list[Path] = typer.Option(
        [], "--exclude-from", help="Drop test prompts that also occur in this dataset (train)."
    ),
    prices: Path | None = typer.Option(
        None, "--prices", help="Prices (USD per 1M tokens) for costs missing in --data."
    ),
    output_tokens: int = typer.Option(DEFAULT_OUTPUT_TOKENS, "--output-tokens", min=0),
    strong: str | None = typer.Option(None, "--strong", help="Strong model of a two-model set."),
    cost_unit: str = typer.Option(
        "USD",
        "--cost-unit",
        help="What the data's costs measure, for labels (e.g. 's' for bench latency costs).",
    ),
) -> None:
    """Evaluate a saved router on a test set: report, predictions and optional plot."""
    from polyroute.routing_eval.evaluate import (
        align_predictions,
        evaluate,
        evaluate_quality,
        write_report,
    )

    try:
        dataset = RoutingDataset.load(data)
        read = len(dataset)
        dataset = dataset.dedupe()
        duplicates = read - len(dataset)
        overlap = 0
        for path in exclude_from:
            before = len(dataset)
            dataset = dataset.without_prompts_in(RoutingDataset.load(path))
            overlap += before - len(dataset)
        if not len(dataset):
            raise RoutingDataError(f"{data}: no prompt left after removing duplicates and overlap")
        router = _load_router(router_dir)
        dataset = dataset.subset_models(list(router.models))
        if not dataset.has_all_costs:
            table = _eval_prices(dataset, router, prices)
            if table is not None:
                dataset, estimate = fill_missing_costs(dataset, table, output_tokens=output_tokens)
                out.print(escape(estimate.describe()))
        if not dataset.has_all_costs and plot_path is not None:
            raise RoutingDataError(
                "--plot draws cost against quality and the data has no costs for some "
                "models: pass --prices FILE, or leave out --plot"
            )
        predicted = router.predict(dataset.prompts)
        dataset, predicted = align_predictions(dataset, router.models, predicted)
        if dataset.has_all_costs:
            report = evaluate(
                dataset,
                predicted,
                predictions_path=predictions_path,
                strong=strong,
                lam=router.lam,
            )
        else:
            report = evaluate_quality(
                dataset, predicted, predictions_path=predictions_path, strong=strong
            )
        report["cost_unit"] = cost_unit
        report["data"] = {
            "path": str(data),
            "rows_read": read,
            "duplicates_removed": duplicates,
            "overlap_removed": overlap,
            "rows_evaluated": len(dataset),
        }
        write_report(report_path, report)
        if plot_path is not None:
            from polyroute.routing_eval.plot import plot_report

            plot_report(report, plot_path, log_cost=log_cost)
    except ImportError as e:  # matplotlib, for --plot; the report is written already
        raise _fail(f"{e}; or leave out --plot") from None
    except PolyrouteError as e:
        raise _fail(e.message) from None
    except OSError as e:
        raise _fail(f"{e.filename or ''}: {e.strerror or e}") from None
    out.print(
        f"{read} prompts read, {duplicates} duplicates and {overlap} also in "
        f"--exclude-from removed: evaluated on {len(dataset)}"
    )
    _print_summary(report)


def _eval_prices(dataset: RoutingDataset, router: Any, prices: Path | None) -> PriceTable | None:
    """Prices for the costs the test data lacks, or None where some model has none.

    In order: ``--prices``; else the router's own prices (given or inferred at training);
    else the model catalog. Where they leave a model unpriced, the evaluation measures
    what needs no cost (the CLI says so); with ``--prices`` an unpriced model is an error.
    """
    if prices is not None:
        return load_prices(prices)
    lacking = models_lacking_costs(dataset)
    saved = {m: router.prices[m] for m in lacking if m in router.prices}
    if len(saved) == len(lacking):
        out.print("costs the data lacks are estimated from the router's own prices")
        return saved
    found = catalog_prices([m for m in lacking if m not in saved])
    if not found.missing:
        out.print(escape(found.describe()))
        return {**saved, **found.prices}
    out.print(
        "[yellow]note:[/yellow] no cost for "
        f"{escape(', '.join(found.missing))} (not in the data, the router's prices or the "
        "model catalog): the report measures quality only (APGR needs no cost); pass "
        "--prices FILE for the cost figures"
    )
    return None


def _load_router(path: Path) -> Any:
    if not path.exists():
        raise RoutingDataError(f"{path}: no such router directory (train one first)")
    try:
        from polyroute.routing.persist import load_router
    except ImportError as e:
        raise RoutingDataError(f"router loading is not available in this install ({e})") from None
    try:
        return load_router(path)
    except (ValueError, KeyError) as e:
        raise RoutingDataError(f"{path}: cannot load the router: {e}") from None


def _print_summary(report: dict[str, Any]) -> None:
    table = Table(title=f"{report['prompts']} prompts, {len(report['models'])} models")
    table.add_column("")
    table.add_column("quality", justify="right")
    unit = report.get("cost_unit", "USD")
    table.add_column(f"avg cost ({unit})", justify="right")
    best = report["best_model"]
    rows = [("router, quality first (λ = 0)", report["router"])]
    served = report["router"].get("at_lambda")
    if served is not None and served["lambda"] != 0:
        rows.append((f"router as saved (λ = {served['lambda']:.4g})", served))
    rows += [
        (f"best model: {best['name']}", best),
        ("random model", report["random"]),
        ("oracle", report["oracle"]),
    ]
    for name, r in rows:
        cost = "?" if r["cost"] is None else f"{r['cost']:.3g}"
        table.add_row(escape(name), f"{r['quality']:.4f}", cost)
    out.print(table)
    if report.get("costs_known", True):
        _print_cost_figures(report, unit)
    two = report["two_model"]
    if two is not None and two["apgr"] is not None:
        out.print(
            f"strong {escape(two['strong'])} / weak {escape(two['weak'])}: APGR "
            f"{two['apgr']:.4f}, CPT(50%) {two['cpt_50_pct']:.1f}%, "
            f"CPT(80%) {two['cpt_80_pct']:.1f}%"
        )


def _print_cost_figures(report: dict[str, Any], unit: str) -> None:
    router = report["router"]
    out.print(f"AIQ: router {router['aiq']:.4f}, random mix {report['random']['aiq']:.4f}")
    q_at = router["quality_at_best_model_cost"]
    out.print(f"quality at the best model's cost: {'—' if q_at is None else f'{q_at:.4f}'}")
    match = router["cost_to_match_best_model"]
    if match is None:
        out.print("the router never matches the best model's quality")
    else:
        saving = router["cost_saving_vs_best_model"]
        out.print(f"matches the best model's quality at {match:.3g} {unit} ({saving:.0%} cheaper)")


def split_data(
    data: Path = typer.Option(..., "--data", help="Routing dataset to split (JSONL)."),
    train_path: Path = typer.Option(..., "--train", help="Training part to write (JSONL)."),
    test_path: Path = typer.Option(..., "--test", help="Test part to write (JSONL)."),
    test_fraction: float = typer.Option(
        0.3, "--test-fraction", min=0.0, max=1.0, help="Share of each task's prompts for test."
    ),
    seed: int = typer.Option(0, "--seed", help="Random seed of the split."),
) -> None:
    """Split a routing dataset (or bench results) into train and test, task by task."""
    try:
        train, test = RoutingDataset.load(data).split(test_fraction, seed)
        train.save(train_path)
        test.save(test_path)
    except PolyrouteError as e:
        raise _fail(e.message) from None
    except OSError as e:
        raise _fail(f"cannot write: {e.strerror or e} ({e.filename})") from None
    out.print(f"wrote {len(train)} prompts to {train_path} and {len(test)} to {test_path}")


def register(app: typer.Typer) -> None:
    app.command("import-data")(import_data)
    app.command("split-data")(split_data)
    app.command("eval")(eval_router)
