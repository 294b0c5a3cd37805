"""Prometheus metrics: what one observed request adds, and ``GET /metrics`` on a real gateway."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.conftest import remote_config, serving
from tests.support.echo_upstream import EchoUpstream

from polyroute.config import Config
from polyroute.gateway import create_app
from polyroute.store.recorder import RequestRecord
from polyroute.telemetry import GatewayMetrics
from polyroute.telemetry.metrics import REQUEST_BUCKETS, TTFT_BUCKETS

USER = [{"role": "user", "content": "the quick brown fox"}]
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def record(**fields: object) -> RequestRecord:
    base: dict[str, object] = {
        "id": "chatcmpl-" + "ab" * 16,
        "created_at": datetime.now(UTC),
        "requested_model": "echo",
        "stream": False,
    }
    return RequestRecord(**{**base, **fields})  # type: ignore[arg-type]


def value(m: GatewayMetrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels)


# --- the observer, on records ---------------------------------------------------------------


def test_a_successful_request_counts_tokens_cost_and_latency() -> None:
    m = GatewayMetrics(["echo"], [])
    m.observe(
        record(model="echo", input_tokens=5, output_tokens=4, latency_ms=250.0,
               cost_usd=1.3e-5, cost_status="known")
    )  # fmt: skip
    labels = {"model": "echo", "router": ""}
    assert value(m, "polyroute_requests_total", **labels, status_class="2xx") == 1
    assert value(m, "polyroute_tokens_total", **labels, type="input") == 5
    assert value(m, "polyroute_tokens_total", **labels, type="output") == 4
    assert value(m, "polyroute_cost_usd_total", **labels) == pytest.approx(1.3e-5)
    assert value(m, "polyroute_unpriced_requests_total", **labels) == 0
    assert value(m, "polyroute_request_duration_seconds_count", **labels) == 1
    assert value(m, "polyroute_request_duration_seconds_bucket", **labels, le="0.32") == 1
    assert value(m, "polyroute_request_duration_seconds_bucket", **labels, le="0.16") == 0
    # Not a stream: no time to first token.
    assert value(m, "polyroute_time_to_first_token_seconds_count", **labels) == 0
    assert value(m, "polyroute_errors_total", **labels, code="502") is None


def test_a_stream_records_its_time_to_first_token() -> None:
    m = GatewayMetrics(["echo"], [])
    m.observe(record(model="echo", stream=True, latency_ms=900.0, ttft_ms=30.0))
    labels = {"model": "echo", "router": ""}
    assert value(m, "polyroute_time_to_first_token_seconds_count", **labels) == 1
    assert value(m, "polyroute_time_to_first_token_seconds_bucket", **labels, le="0.04") == 1
    assert value(m, "polyroute_time_to_first_token_seconds_bucket", **labels, le="0.02") == 0


def test_errors_are_counted_by_code_and_kept_out_of_the_latency_histogram() -> None:
    m = GatewayMetrics(["echo"], [])
    m.observe(record(model="echo", status=502, latency_ms=3.0, error="upstream down"))
    m.observe(record(model="echo", status=429, latency_ms=3.0, error="rate limited"))
    labels = {"model": "echo", "router": ""}
    assert value(m, "polyroute_requests_total", **labels, status_class="5xx") == 1
    assert value(m, "polyroute_requests_total", **labels, status_class="4xx") == 1
    assert value(m, "polyroute_errors_total", **labels, code="502") == 1
    assert value(m, "polyroute_errors_total", **labels, code="429") == 1
    assert value(m, "polyroute_request_duration_seconds_count", **labels) == 0


def test_unknown_prices_are_counted_apart_and_never_as_zero_dollars() -> None:
    m = GatewayMetrics(["renamed", "local"], [])
    m.observe(record(model="renamed", input_tokens=5, output_tokens=4, cost_status="unknown"))
    m.observe(record(model="local", input_tokens=5, cost_usd=0.0, cost_status="free"))
    assert value(m, "polyroute_unpriced_requests_total", model="renamed", router="") == 1
    assert value(m, "polyroute_cost_usd_total", model="renamed", router="") == 0
    assert value(m, "polyroute_unpriced_requests_total", model="local", router="") == 0
    assert value(m, "polyroute_cost_usd_total", model="local", router="") == 0


def test_labels_come_from_the_config_never_from_the_client() -> None:
    m = GatewayMetrics(["echo"], ["smart"])
    m.observe(record(requested_model="nonsense", status=404, error="no such model"))
    m.observe(record(requested_model="x" * 500, model="made-up", router="made-up-router"))
    m.observe(record(requested_model="smart", model="echo", router="smart"))
    series = {
        (s.labels["model"], s.labels["router"])
        for family in m.registry.collect()
        for s in family.samples
        if "model" in s.labels
    }
    assert series == {("unknown", ""), ("unknown", "unknown"), ("echo", "smart")}
    assert value(m, "polyroute_errors_total", model="unknown", router="", code="404") == 1


# --- GET /metrics on a real gateway ---------------------------------------------------------


def parse(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def get(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def scrape_until(http: httpx.Client, url: str, done: Callable[[Samples], bool]) -> Samples:
    """Scrape until ``done``: a stream's record is made as its generator closes, which can
    be just after the client has read the last chunk."""
    for _ in range(200):  # at most ~2 s
        r = http.get(url)
        assert r.status_code == 200
        samples = parse(r.text)
        if done(samples):
            return samples
        time.sleep(0.01)
    return samples


@pytest.mark.e2e
def test_metrics_endpoint_counts_real_traffic(echo_upstream: EchoUpstream, db_url: str) -> None:
    app = create_app(remote_config(echo_upstream.base_url, db_url))
    echo = {"model": "echo", "router": ""}
    with serving(app) as base_url, httpx.Client() as http:
        metrics_url = base_url.removesuffix("/v1") + "/metrics"
        r = http.get(metrics_url)
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
        before = parse(r.text)
        assert get(before, "polyroute_requests_total", **echo, status_class="2xx") == 0

        client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0)
        client.chat.completions.create(model="echo", messages=USER)  # type: ignore[arg-type]
        list(client.chat.completions.create(model="echo", messages=USER, stream=True))  # type: ignore[arg-type]
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="broken", messages=USER)  # type: ignore[arg-type]
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="nonsense", messages=USER)  # type: ignore[arg-type]
        client.chat.completions.create(model="renamed", messages=USER)  # type: ignore[arg-type]

        after = scrape_until(
            http,
            metrics_url,
            lambda s: get(s, "polyroute_requests_total", **echo, status_class="2xx") == 2,
        )
        text = http.get(metrics_url).text

    assert get(after, "polyroute_requests_total", **echo, status_class="2xx") == 2
    # The echo upstream reports 5 input and 4 output tokens for this prompt.
    assert get(after, "polyroute_tokens_total", **echo, type="input") == 10
    assert get(after, "polyroute_tokens_total", **echo, type="output") == 8
    # echo costs $1 / $2 per million input / output tokens.
    assert get(after, "polyroute_cost_usd_total", **echo) == pytest.approx(2 * 13e-6)
    assert get(after, "polyroute_request_duration_seconds_count", **echo) == 2
    assert get(after, "polyroute_time_to_first_token_seconds_count", **echo) == 1

    broken = {"model": "broken", "router": ""}
    assert get(after, "polyroute_requests_total", **broken, status_class="5xx") == 1
    assert get(after, "polyroute_errors_total", **broken, code="502") == 1

    # "nonsense" made no label value of its own: it is counted as model="unknown".
    assert "nonsense" not in text
    unknown = {"model": "unknown", "router": ""}
    assert get(after, "polyroute_errors_total", **unknown, code="404") == 1

    renamed = {"model": "renamed", "router": ""}
    assert get(after, "polyroute_unpriced_requests_total", **renamed) == 1
    assert get(after, "polyroute_cost_usd_total", **renamed) == 0

    # Every bucket is exposed, up to +Inf.
    for name, buckets in (
        ("polyroute_request_duration_seconds", REQUEST_BUCKETS),
        ("polyroute_time_to_first_token_seconds", TTFT_BUCKETS),
    ):
        les = {
            dict(labels)["le"]
            for (n, labels) in after
            if n == f"{name}_bucket" and dict(labels)["model"] == "echo"
        }
        assert les == {str(float(b)) for b in buckets} | {"+Inf"}
        assert get(after, f"{name}_bucket", **echo, le="+Inf") == get(
            after, f"{name}_count", **echo
        )


@pytest.mark.e2e
def test_metrics_by_router(echo_upstream: EchoUpstream, db_url: str) -> None:
    raw = remote_config(echo_upstream.base_url, db_url).model_dump()
    raw["routers"] = {"pick": {"kind": "wrr", "weights": {"echo": 1}}}
    app = create_app(Config.model_validate(raw))
    with serving(app) as base_url, httpx.Client() as http:
        client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0)
        for model in ("auto", "pick"):
            client.chat.completions.create(model=model, messages=USER)  # type: ignore[arg-type]
        samples = parse(http.get(base_url.removesuffix("/v1") + "/metrics").text)
    routed = {"model": "echo", "router": "pick"}
    assert get(samples, "polyroute_requests_total", **routed, status_class="2xx") == 2
    assert get(samples, "polyroute_request_duration_seconds_count", **routed) == 2


async def test_metrics_can_be_switched_off(asgi_client: Callable[..., object], db_url: str) -> None:
    raw = remote_config("http://127.0.0.1:9/v1", db_url).model_dump()
    raw["telemetry"] = {"metrics": False}
    client = await asgi_client(Config.model_validate(raw))  # type: ignore[misc]
    r = await client.get("/metrics")  # type: ignore[attr-defined]
    assert r.status_code == 404
    assert "telemetry.metrics" in r.json()["error"]["message"]
    assert client.gateway.chat.observers == []  # type: ignore[attr-defined]


async def test_openmetrics_when_the_scraper_asks(
    asgi_client: Callable[..., object], db_url: str
) -> None:
    client = await asgi_client(remote_config("http://127.0.0.1:9/v1", db_url))  # type: ignore[misc]
    r = await client.get(  # type: ignore[attr-defined]
        "/metrics", headers={"accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/openmetrics-text")
    assert r.text.rstrip().endswith("# EOF")


def test_odd_usage_from_an_upstream_never_raises() -> None:
    m = GatewayMetrics(["echo"], [])
    m.observe(record(model="echo", input_tokens=-3, output_tokens=0, cost_usd=-1.0,
                     cost_status="known", latency_ms=1.0))  # fmt: skip
    labels = {"model": "echo", "router": ""}
    assert value(m, "polyroute_requests_total", **labels, status_class="2xx") == 1
    assert value(m, "polyroute_tokens_total", **labels, type="input") == 0
    assert value(m, "polyroute_cost_usd_total", **labels) == 0
