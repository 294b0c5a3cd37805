"""Importers: other projects' routing data → :class:`RoutingDataset`.

Built-ins are registered in :data:`IMPORTERS` like any third-party one (entry point group
``polyroute.importers``):

- ``llmrouter``: LLMRouter's ``dcrouter_preprocessed/{train,test}.json`` (a JSON list of
  ``{"question", "scores", "cluster_id"}``); ``task`` comes from joining ``question == query``
  with ``example_data/query_data/default_query_*.jsonl``; costs are estimated from
  ``example_data/llm_candidates/default_llm.json``.
- ``routerbench``: RouterBench's CSV: ``prompt``, one score column per model,
  ``<model>|total_cost`` → costs, ``sample_id`` → id and ``eval_name`` → task when present.
- ``routellm``: RouteLLM's eval CSVs: ``prompt`` plus one True/False column per model.

Every error names the file and line. Missing costs are filled by :func:`import_dataset`.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polyroute.registry import Registry
from polyroute.routing.pricing import DEFAULT_OUTPUT_TOKENS
from polyroute.routing_eval.costs import CostEstimate, TokenCounter, fill_missing_costs, load_prices
from polyroute.routing_eval.dataset import RoutingDataError, RoutingDataset, Row, from_rows


@dataclass(frozen=True, slots=True)
class Importer:
    """Reads one foreign format; ``default_prices`` finds a prices file shipped beside it."""

    name: str
    description: str
    load: Callable[[Path], RoutingDataset]
    default_prices: Callable[[Path], Path | None] = lambda _path: None


IMPORTERS: Registry[Importer] = Registry("importers")


def import_dataset(
    fmt: str,
    path: str | Path,
    *,
    prices: str | Path | None = None,
    output_tokens: int = DEFAULT_OUTPUT_TOKENS,
    counter: TokenCounter | None = None,
) -> tuple[RoutingDataset, CostEstimate | None]:
    """Import ``path`` with the importer ``fmt`` and estimate missing costs where prices exist.

    Without ``prices`` the importer's own default (if any) is used; with neither, missing
    costs stay missing (``CostEstimate`` is None) and the caller should say so.
    """
    if fmt not in IMPORTERS:
        raise RoutingDataError(
            f"unknown format {fmt!r}; choose one of: {', '.join(IMPORTERS.names())}"
        )
    importer = IMPORTERS.get(fmt)
    path = Path(path)
    if not path.is_file():
        raise RoutingDataError(f"{path}: no such file")
    dataset = importer.load(path)
    if dataset.has_all_costs:
        return dataset, None
    prices_path = Path(prices) if prices is not None else importer.default_prices(path)
    if prices_path is None:
        return dataset, None
    table = load_prices(prices_path)
    return fill_missing_costs(dataset, table, output_tokens=output_tokens, counter=counter)


# -- LLMRouter ---------------------------------------------------------------------------


def _llmrouter_data_root(path: Path) -> Path:
    # .../data/dcrouter_preprocessed/test.json → .../data
    return path.resolve().parent.parent


def _llmrouter_prices(path: Path) -> Path | None:
    candidate = _llmrouter_data_root(path) / "example_data" / "llm_candidates" / "default_llm.json"
    return candidate if candidate.is_file() else None


def load_llmrouter(path: Path, query_files: list[Path] | None = None) -> RoutingDataset:
    """Read LLMRouter's preprocessed JSON list; ``task`` from the query files' ``task_name``.

    By default the query files are ``example_data/query_data/default_query_*.jsonl`` beside
    the data, the one of the same split (``test`` for ``test.json``) first: when a question
    has several task names, the first seen wins.
    """
    if query_files is None:
        qdir = _llmrouter_data_root(path) / "example_data" / "query_data"
        found = sorted(qdir.glob("default_query_*.jsonl"))
        found.sort(key=lambda p: p.stem != f"default_query_{path.stem}")
        query_files = found
    tasks: dict[str, str] = {}
    for qf in query_files:
        for where, obj in _iter_jsonl(qf):
            query, task = obj.get("query"), obj.get("task_name")
            if not isinstance(query, str) or not isinstance(task, str):
                raise RoutingDataError(f"{where}: expected string 'query' and 'task_name'")
            tasks.setdefault(query, task)
    rows: list[tuple[str, Row]] = []
    for i, (where, item) in enumerate(_iter_json_array(path)):
        if not isinstance(item, dict):
            raise RoutingDataError(f"{where}: expected an object, got {type(item).__name__}")
        question = item.get("question")
        if not isinstance(question, str) or not question:
            raise RoutingDataError(f"{where}: 'question' must be a non-empty string")
        scores = item.get("scores")
        if not isinstance(scores, dict) or not scores:
            raise RoutingDataError(f"{where}: 'scores' must be a non-empty {{model: number}}")
        parsed = {m: _score(v, f"{where}: scores[{m!r}]") for m, v in scores.items()}
        rows.append(
            (
                where,
                Row(
                    id=f"{path.stem}-{i}",
                    prompt=question,
                    scores={m: v for m, v in parsed.items() if v is not None},
                    costs={},
                    task=tasks.get(question),
                ),
            )
        )
    return _assemble(rows, path)


def _iter_json_array(path: Path) -> Iterator[tuple[str, Any]]:
    """The items of a top-level JSON list, each with ``file:line`` of where it starts."""
    text = _read_text(path)
    decoder = json.JSONDecoder()
    line, last = 1, 0

    def at(pos: int) -> str:
        nonlocal line, last
        line += text.count("\n", last, pos)
        last = pos
        return f"{path}:{line}"

    def skip_ws(pos: int) -> int:
        while pos < len(text) and text[pos] in " \t\r\n":
            pos += 1
        return pos

    pos = skip_ws(0)
    if not text.startswith("[", pos):
        raise RoutingDataError(f"{at(pos)}: expected a JSON list of objects")
    pos = skip_ws(pos + 1)
    if text.startswith("]", pos):
        return
    while True:
        try:
            item, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            raise RoutingDataError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
        yield at(pos), item
        pos = skip_ws(end)
        if text.startswith(",", pos):
            pos = skip_ws(pos + 1)
        elif text.startswith("]", pos):
            return
        else:
            raise RoutingDataError(f"{at(pos)}: expected ',' or ']' after a list item")


def _iter_jsonl(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    for lineno, line in enumerate(_read_text(path).split("\n"), start=1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise RoutingDataError(f"{where}: not valid JSON ({e.msg})") from None
        if not isinstance(obj, dict):
            raise RoutingDataError(f"{where}: expected a JSON object")
        yield where, obj


# -- CSV formats ---------------------------------------------------------------------------

_INDEX_COLUMNS = {"", "Unnamed: 0", "index"}


def load_routerbench(path: Path) -> RoutingDataset:
    """RouterBench CSV: score columns per model, ``<model>|total_cost`` → costs.

    Other ``<model>|...`` columns (responses) and ``oracle_model_to_route_to`` are not data
    for routing and are skipped; any other column must be a model's scores.
    """
    header, records = _read_csv(path)
    skip = {"prompt", "sample_id", "eval_name", "oracle_model_to_route_to"} | _INDEX_COLUMNS
    models = [c for c in header if c not in skip and "|" not in c]
    cost_cols = {c.split("|", 1)[0]: c for c in header if c.endswith("|total_cost")}
    unscored = sorted(set(cost_cols) - set(models))
    if unscored:
        raise RoutingDataError(
            f"{path}:1: cost column(s) for {', '.join(map(repr, unscored))} with no score column"
        )
    rows: list[tuple[str, Row]] = []
    for i, (where, rec) in enumerate(records):
        parsed = {m: _score(rec[m], f"{where}: column {m!r}") for m in models}
        scores = {m: v for m, v in parsed.items() if v is not None}
        costs = {m: _cost(rec[c], f"{where}: column {c!r}") for m, c in cost_cols.items()}
        rows.append(
            (
                where,
                Row(
                    id=rec.get("sample_id") or f"{path.stem}-{i}",
                    prompt=rec["prompt"],
                    scores=scores,
                    # A cost with no score has nothing to route on; the format has no slot.
                    costs={m: v for m, v in costs.items() if v is not None and m in scores},
                    task=rec.get("eval_name") or None,
                ),
            )
        )
    return _assemble(rows, path)


def load_routellm(path: Path) -> RoutingDataset:
    """RouteLLM eval CSV: ``prompt`` and one True/False column per model.

    An index column (empty header or ``Unnamed: 0``) gives the id; ``<model>_response``
    columns (answers) are skipped.
    """
    header, records = _read_csv(path)
    index_col = next((c for c in header if c in _INDEX_COLUMNS), None)
    candidates = [c for c in header if c != "prompt" and c != index_col]
    models = [c for c in candidates if not (c.endswith("_response") and c[:-9] in candidates)]
    rows: list[tuple[str, Row]] = []
    for i, (where, rec) in enumerate(records):
        scores = {m: _bool_score(rec[m], f"{where}: column {m!r}") for m in models}
        rows.append(
            (
                where,
                Row(
                    id=f"{path.stem}-{rec[index_col] if index_col else i}",
                    prompt=rec["prompt"],
                    scores={m: v for m, v in scores.items() if v is not None},
                    costs={},
                ),
            )
        )
    return _assemble(rows, path)


def _read_csv(path: Path) -> tuple[list[str], list[tuple[str, dict[str, str]]]]:
    """Header and records, each with ``file:line`` of the line it starts on."""
    csv.field_size_limit(2**31 - 1)  # prompts and responses can be long
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        try:
            header = next(reader)
        except StopIteration:
            raise RoutingDataError(f"{path}: empty file (expected a CSV header)") from None
        except (csv.Error, UnicodeDecodeError) as e:
            raise RoutingDataError(f"{path}:1: cannot parse the CSV header ({e})") from None
        if "prompt" not in header:
            raise RoutingDataError(
                f"{path}:1: no 'prompt' column; the header has: {', '.join(header)}"
            )
        if len(set(header)) != len(header):
            raise RoutingDataError(f"{path}:1: duplicate column names in the header")
        records: list[tuple[str, dict[str, str]]] = []
        start = reader.line_num + 1
        while True:
            try:
                values = next(reader)
            except StopIteration:
                break
            except (csv.Error, UnicodeDecodeError) as e:
                raise RoutingDataError(f"{path}:{start}: cannot parse CSV ({e})") from None
            where = f"{path}:{start}"
            start = reader.line_num + 1
            if not values:
                continue
            if len(values) != len(header):
                raise RoutingDataError(
                    f"{where}: {len(values)} fields, the header has {len(header)}"
                )
            records.append((where, dict(zip(header, values, strict=True))))
    return header, records


def _score(value: Any, where: str) -> float | None:
    if value is None or value == "":
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise RoutingDataError(f"{where}: score {value!r} is not a number") from None
    if isinstance(value, bool) or not math.isfinite(v) or not 0.0 <= v <= 1.0:
        raise RoutingDataError(f"{where}: score {value!r} is not a number in [0, 1]")
    return v


def _bool_score(value: str, where: str) -> float | None:
    text = value.strip().lower()
    if text == "":
        return None
    if text in ("true", "1", "1.0"):
        return 1.0
    if text in ("false", "0", "0.0"):
        return 0.0
    raise RoutingDataError(f"{where}: expected True or False, got {value!r}")


def _cost(value: str, where: str) -> float | None:
    if value.strip() == "":
        return None
    try:
        v = float(value)
    except ValueError:
        raise RoutingDataError(f"{where}: cost {value!r} is not a number") from None
    if not math.isfinite(v) or v < 0:
        raise RoutingDataError(f"{where}: cost {value!r} is not a number >= 0")
    return v


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as e:
        raise RoutingDataError(f"{path}: cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise RoutingDataError(f"{path}: not UTF-8 text ({e.reason})") from None


def _assemble(rows: list[tuple[str, Row]], path: Path) -> RoutingDataset:
    if not rows:
        raise RoutingDataError(f"{path}: no rows")
    ids: dict[str, str] = {}
    for where, row in rows:
        if not row.scores:
            raise RoutingDataError(f"{where}: no score for any model")
        if row.id in ids:
            raise RoutingDataError(f"{where}: id {row.id!r} already used at {ids[row.id]}")
        ids[row.id] = where
    return from_rows([row for _, row in rows])


IMPORTERS.add(
    "llmrouter",
    Importer(
        "llmrouter",
        "LLMRouter dcrouter_preprocessed/{train,test}.json (tasks and prices from example_data/)",
        load_llmrouter,
        _llmrouter_prices,
    ),
)
IMPORTERS.add(
    "routerbench",
    Importer("routerbench", "RouterBench CSV (scores and <model>|total_cost)", load_routerbench),
)
IMPORTERS.add(
    "routellm", Importer("routellm", "RouteLLM eval CSV (True/False per model)", load_routellm)
)
