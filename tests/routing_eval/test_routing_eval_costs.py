"""Cost estimation: tokens × price, only where the data has no cost, never a guessed price."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from polyroute.errors import UnknownPrice
from polyroute.routing.pricing import prompt_cost
from polyroute.routing_eval.costs import (
    CharCounter,
    catalog_prices,
    default_token_counter,
    fill_missing_costs,
    infer_prices,
    load_prices,
)
from polyroute.routing_eval.dataset import RoutingDataError, RoutingDataset, Row, from_rows


class FixedCounter:
    """Every prompt is as many tokens as it has words: easy to check by hand."""

    name = "words"

    def count(self, texts: Sequence[str]) -> list[int]:
        return [len(t.split()) for t in texts]


def dataset(costs: list[dict[str, float]]) -> RoutingDataset:
    prompts = ["one two three", "a b c d e f g h i j"]
    return from_rows(
        [
            Row(id=str(i), prompt=p, scores={"cheap": 0.0, "dear": 1.0}, costs=c)
            for i, (p, c) in enumerate(zip(prompts, costs, strict=True))
        ]
    )


def test_prompt_cost_is_tokens_times_price_per_million() -> None:
    assert prompt_cost(1000, (2.0, 10.0), 500) == pytest.approx(0.002 + 0.005)


def test_fills_only_the_missing_costs() -> None:
    ds = dataset([{"dear": 0.5}, {}])
    prices = {"cheap": (1.0, 2.0), "dear": (10.0, 20.0)}
    filled, est = fill_missing_costs(ds, prices, output_tokens=100, counter=FixedCounter())
    assert filled.costs is not None
    # row 0: 3 tokens in; row 1: 10 tokens in; 100 out. USD = (in·p_in + out·p_out) / 1e6
    np.testing.assert_allclose(
        filled.costs,
        [[(3 * 1 + 100 * 2) / 1e6, 0.5], [(10 * 1 + 100 * 2) / 1e6, (10 * 10 + 100 * 20) / 1e6]],
    )
    assert est.estimated == 3 and est.token_counter == "words" and est.output_tokens == 100
    assert "3 costs estimated" in est.describe() and "100 output tokens" in est.describe()


def test_nothing_missing_means_nothing_estimated() -> None:
    ds = dataset([{"cheap": 1.0, "dear": 2.0}, {"cheap": 1.0, "dear": 2.0}])
    filled, est = fill_missing_costs(ds, {}, counter=FixedCounter())
    assert filled is ds and est.estimated == 0


def test_a_missing_price_is_unknown_never_zero() -> None:
    ds = dataset([{"dear": 0.5}, {"dear": 0.7}])  # only "cheap" needs a price
    with pytest.raises(UnknownPrice, match="no price for 'cheap'"):
        fill_missing_costs(ds, {"dear": (1.0, 1.0)}, counter=FixedCounter())
    filled, _ = fill_missing_costs(ds, {"cheap": (1.0, 1.0)}, counter=FixedCounter())
    assert filled.has_all_costs


def test_char_counter_is_a_quarter_of_the_characters_rounded_up() -> None:
    assert CharCounter().count(["", "abcd", "abcde"]) == [0, 1, 2]


def test_default_counter_says_which_it_is() -> None:
    counter = default_token_counter()
    assert counter.name in ("all-MiniLM-L6-v2 WordPiece", "chars/4")
    counts = counter.count(["Hello world, this is a prompt.", "x " * 1000])
    assert 4 <= counts[0] <= 12
    assert counts[1] >= 500  # long prompts are not truncated


def test_load_prices_reads_both_shapes(tmp_path: Path) -> None:
    llmrouter = {"m": {"size": "7B", "input_price": 0.2, "output_price": 0.3, "model": "x/m"}}
    (tmp_path / "a.json").write_text(json.dumps(llmrouter))
    (tmp_path / "b.json").write_text(json.dumps({"m": [1, 2.5]}))
    assert load_prices(tmp_path / "a.json") == {"m": (0.2, 0.3)}
    assert load_prices(tmp_path / "b.json") == {"m": (1.0, 2.5)}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{", "not valid JSON"),
        ("[]", "expected a JSON object"),
        ('{"m": {"input_price": 1}}', "'m': needs 'input_price' and 'output_price'"),
        ('{"m": [1, -2]}', "'m': prices must be numbers >= 0"),
        ('{"m": "cheap"}', "'m': expected"),
    ],
)
def test_bad_prices_file_names_the_model(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "p.json").write_text(content)
    with pytest.raises(RoutingDataError, match=r"p\.json") as e:
        load_prices(tmp_path / "p.json")
    assert message in e.value.message


def test_without_the_tokenizer_package_the_fallback_is_chars(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import polyroute.routing_eval.costs as costs

    monkeypatch.setattr(costs, "_minilm_tokenizer_json", lambda: None)
    assert isinstance(costs.default_token_counter.__wrapped__(), CharCounter)


def test_prices_come_back_from_costs_made_with_them() -> None:
    ds = dataset([{}, {}])
    prices = {"cheap": (1.0, 2.0), "dear": (10.0, 20.0)}
    filled, _ = fill_missing_costs(ds, prices, output_tokens=100, counter=FixedCounter())
    inferred = infer_prices(filled, output_tokens=100, counter=FixedCounter())
    assert inferred.keys() == prices.keys()
    for model, (p_in, p_out) in prices.items():
        assert inferred[model] == pytest.approx((p_in, p_out))
    assert infer_prices(ds.with_costs(None)) == {}  # type: ignore[arg-type]


def test_catalog_prices_price_provider_names_and_leave_unknown_ones_missing() -> None:
    found = catalog_prices(
        ["gpt-4-1106-preview", "mistralai/Mixtral-8x7B-Instruct-v0.1", "my-own-finetune"]
    )
    assert found.missing == ["my-own-finetune"]  # unknown: missing, never $0
    assert set(found.prices) == {"gpt-4-1106-preview", "mistralai/Mixtral-8x7B-Instruct-v0.1"}
    assert all(p_in > 0 and p_out > 0 for p_in, p_out in found.prices.values())
    gpt4_in, gpt4_out = found.prices["gpt-4-1106-preview"]
    mixtral_in, mixtral_out = found.prices["mistralai/Mixtral-8x7B-Instruct-v0.1"]
    assert gpt4_in > 5 * mixtral_in and gpt4_out > 5 * mixtral_out
    assert "mistralai/Mixtral-8x7B-Instruct-v0.1 = mixtral-8x7b-instruct" in found.describe()
