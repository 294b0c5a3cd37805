"""``polyroute train`` and ``polyroute route``: build a learned router, and ask it."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from polyroute.cli.steps import steps
from polyroute.errors import PolyrouteError
from polyroute.routing.pricing import DEFAULT_OUTPUT_TOKENS

if TYPE_CHECKING:
    from polyroute.routing_eval.dataset import RoutingDataset

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def _fail(message: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {escape(message)}")
    return typer.Exit(2)


def _knob(lam: float | None, max_cost: float | None, min_quality: float | None) -> object:
    from polyroute.routing.knob import Knob

    try:
        return Knob(lam=lam, max_cost_fraction=max_cost, min_quality_fraction=min_quality)
    except ValueError as e:
        raise _fail(
            str(e).replace(
                "lambda, max_cost_fraction or min_quality_fraction",
                "--lambda, --max-cost-fraction or --min-quality-fraction",
            )
        ) from None


def default_cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "polyroute" / "embeddings"


LAMBDA_HELP = "λ: quality points traded for 1 USD of one request (0: quality only)."
MAX_COST_HELP = "Spend at most this fraction of the strongest model's average cost (e.g. 0.3)."
MIN_QUALITY_HELP = "Keep at least this fraction of the strongest model's quality (e.g. 0.95)."


def train(
    data: Path = typer.Option(
        ..., "--data", help="Routing dataset (JSONL; `polyroute import-data` converts others)."
    ),
    out_dir: Path = typer.Option(..., "--out", help="Directory to write the router to."),
    router: str | None = typer.Option(
        None, "--router", help="Learned router kind (mf, mlp, knn) [default: the best measured]."
    ),
    prices: Path | None = typer.Option(
        None, "--prices", help="Prices (USD per 1M tokens), for costs the data does not hold."
    ),
    lam: float | None = typer.Option(None, "--lambda", help=LAMBDA_HELP),
    max_cost_fraction: float | None = typer.Option(None, "--max-cost-fraction", help=MAX_COST_HELP),
    min_quality_fraction: float | None = typer.Option(
        None, "--min-quality-fraction", help=MIN_QUALITY_HELP + " [default: 1.0 without a knob]"
    ),
    output_tokens: int = typer.Option(
        DEFAULT_OUTPUT_TOKENS, "--output-tokens", min=0, help="Assumed answer length, for costs."
    ),
    cache_dir: Path | None = typer.Option(
        None, "--cache-dir", help="Embedding cache [default: ~/.cache/polyroute/embeddings]."
    ),
    no_cache: bool = typer.Option(False, "--no-cache", help="Embed every prompt afresh."),
    embedding: str | None = typer.Option(
        None,
        "--embedding",
        help="Prompt embedding: minilm-lexical (the default), minilm-static or minilm (encoder).",
    ),
    wide_bits: int | None = typer.Option(
        None,
        "--wide-bits",
        help="mf only: its tower's wide term reads the prompt's word and character n-grams "
        "hashed into 2^N buckets each (default 16); 0 turns it off, which keeps more of a "
        "later-added model's gain (docs/routers.md).",
    ),
    task_heads: bool | None = typer.Option(
        None,
        "--task-heads/--no-task-heads",
        help="mf only: also train its tower to tell the data's tasks apart (the `task` field; "
        "on by default), which keeps more of a later-added model's gain "
        '(docs/routers.md, "With task heads").',
    ),
    prior_strength: float | None = typer.Option(
        None,
        "--prior-strength",
        help="mf only: how firmly a model added later (`polyroute router add-model` / "
        "`onboard`) is held to the known models' vectors [default: chosen by simulating "
        "that on each training model, most of train's time; giving it skips the simulation: "
        "3 is the usual choice].",
    ),
    questions: list[str] = typer.Option(
        [],
        "--questions",
        help="Bench suite(s) the prompts came from (e.g. llmrouter:train): the router's anchor "
        "pool keeps their reference answers, so `polyroute router onboard` can grade a new model.",
    ),
) -> None:
    """Train a learned router on a routing dataset and save it to a directory."""
    from polyroute.embeddings.base import CachedEmbedder, Embedder
    from polyroute.embeddings.registry import DEFAULT_EMBEDDING, embedding_choice, get_embedder
    from polyroute.routing.knob import Knob
    from polyroute.routing.persist import save_router
    from polyroute.routing_eval.costs import load_prices
    from polyroute.routing_eval.dataset import RoutingDataset
    from polyroute.routing_eval.train import BEST_KIND, DEFAULT_KNOB, train_router

    knob = _knob(lam, max_cost_fraction, min_quality_fraction)
    assert isinstance(knob, Knob)
    params: dict[str, int | bool | float] = {}
    given = {
        "--task-heads" if task_heads else "--no-task-heads": task_heads,
        "--wide-bits": wide_bits,
        "--prior-strength": prior_strength,
    }
    for flag, value in given.items():
        if value is not None and (router or BEST_KIND) != "mf":
            raise _fail(f"{flag} is an option of the mf router, not of {router}")
    if task_heads is not None:
        params["task_heads"] = task_heads
    if wide_bits is not None:
        if not 0 <= wide_bits <= 20:
            raise _fail(f"--wide-bits must be in 0..20 (0: no wide term), got {wide_bits}")
        params["wide_bits"] = wide_bits
    if prior_strength is not None:
        if not (math.isfinite(prior_strength) and prior_strength > 0):
            raise _fail(f"--prior-strength must be > 0 (e.g. 3), got {prior_strength}")
        params["prior_strength"] = prior_strength
    try:
        choice = embedding_choice(embedding or DEFAULT_EMBEDDING)
    except ValueError as e:
        raise _fail(str(e)) from None
    try:
        dataset = RoutingDataset.load(data)
        table = load_prices(prices) if prices is not None else None
        table = _with_catalog_prices(dataset, table)
        suite = None
        if questions:
            from polyroute.bench.suites import default_data_dir, load_suites

            specs = [s for spec in questions for s in spec.split(",") if s.strip()]
            suite = load_suites(specs, default_data_dir()).questions
        embedder: Embedder = get_embedder(choice.name)
        if choice.cache and not no_cache:
            embedder = CachedEmbedder(embedder, cache_dir or default_cache_dir())
        size = f"{len(dataset)} prompts × {len(dataset.models)} models"
        with steps(err, f"training on {size}") as step:
            result = train_router(
                dataset,
                kind=router or BEST_KIND,
                knob=knob if knob.to_dict() else DEFAULT_KNOB,
                prices=table,
                output_tokens=output_tokens,
                embedder=embedder,
                questions=suite,
                params=params,
                progress=step,
            )
        result.summary["source"] = str(data)
        save_router(result.router, out_dir, training=result.summary, anchors=result.anchors)
    except PolyrouteError as e:
        raise _fail(e.message) from None
    except OSError as e:
        raise _fail(f"{e.filename or out_dir}: {e.strerror or e}") from None
    r = result.router
    seconds = result.summary["seconds"]
    out.print(
        f"trained a [bold]{r.kind}[/bold] router on {len(dataset)} prompts × "
        f"{len(r.models)} models in {seconds['total']:.0f} s "
        f"(embedding {seconds['embedding']:.0f} s) → {escape(str(out_dir))}"
    )
    if r.calibration is not None and r.calibration.n_prompts > 1:
        out.print(escape(r.calibration.describe()))
    elif r.calibration is not None:
        out.print(f"λ = {r.lam:.4g} as given (the data has no costs to calibrate it on)")
    out.print(f'try it: polyroute route --router {escape(str(out_dir))} "a question"')


def _with_catalog_prices(
    dataset: RoutingDataset, table: dict[str, tuple[float, float]] | None
) -> dict[str, tuple[float, float]] | None:
    """``table`` plus the catalog's prices of the models whose costs the data lacks and
    ``table`` does not price (printed, so the user sees where each price came from)."""
    from polyroute.routing_eval.costs import catalog_prices, models_lacking_costs

    if dataset.has_all_costs:
        return table
    given = dict(table or {})
    lacking = [m for m in models_lacking_costs(dataset) if m not in given]
    found = catalog_prices(lacking) if lacking else None
    if found is None or not found.prices:
        return table
    out.print(escape(found.describe()))
    return {**found.prices, **given}


def route(
    prompt: str = typer.Argument(..., help="The prompt to route."),
    router_dir: Path = typer.Option(..., "--router", help="A trained router's directory."),
    lam: float | None = typer.Option(None, "--lambda", help=LAMBDA_HELP),
    max_cost_fraction: float | None = typer.Option(None, "--max-cost-fraction", help=MAX_COST_HELP),
    min_quality_fraction: float | None = typer.Option(
        None, "--min-quality-fraction", help=MIN_QUALITY_HELP
    ),
    output_tokens: int = typer.Option(
        DEFAULT_OUTPUT_TOKENS, "--output-tokens", min=0, help="Expected answer length, for costs."
    ),
) -> None:
    """Show which model a trained router picks for a prompt, and why."""
    from polyroute.routing.base import Candidate, RouteRequest
    from polyroute.routing.knob import Knob
    from polyroute.routing.persist import load_router

    knob = _knob(lam, max_cost_fraction, min_quality_fraction)
    assert isinstance(knob, Knob)
    try:
        router = load_router(router_dir)
        if knob.to_dict():
            try:
                router.set_knob(knob)
            except ValueError as e:
                raise _fail(str(e)) from None
        candidates = [Candidate(name=m) for m in router.models]
        request = RouteRequest(prompt=prompt, output_tokens=output_tokens)
        decision = router.route(request, candidates)
    except PolyrouteError as e:
        raise _fail(e.message) from None
    table = Table(title=f"{router.kind} router, λ = {router.lam:.4g}")
    table.add_column("model")
    table.add_column("predicted quality", justify="right")
    table.add_column("est. cost (USD)", justify="right")
    table.add_column("quality − λ·cost", justify="right")
    rows = sorted(router.models, key=lambda m: -decision.scores.get(m, 0.0))
    for m in rows:
        q = decision.scores.get(m)
        c = decision.costs.get(m)
        chosen = m == decision.model
        table.add_row(
            f"[bold green]{escape(m)} ←[/bold green]" if chosen else escape(m),
            "?" if q is None else f"{q:.3f}",
            "unknown" if c is None else f"{c:.3g}",
            _utility(q, c, router.lam),
        )
    out.print(table)
    out.print(f"[bold]chosen[/bold]: {escape(decision.reason)}")


def _utility(quality: float | None, cost: float | None, lam: float) -> str:
    if quality is None:
        return ""
    if lam == 0.0:  # cost does not count, known or not
        return f"{quality:.3f}"
    return "" if cost is None else f"{quality - lam * cost:.3f}"


def register(app: typer.Typer) -> None:
    app.command()(train)
    app.command()(route)
