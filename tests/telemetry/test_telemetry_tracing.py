"""OpenTelemetry spans: GenAI attributes on each request, exported over real OTLP/HTTP."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import openai
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from tests.conftest import REPO, remote_config, serving
from tests.support.echo_upstream import EchoUpstream
from tests.support.otlp_receiver import running_otlp_receiver

from polyroute.config import Config, load_config
from polyroute.errors import ConfigError
from polyroute.gateway import create_app
from polyroute.store.recorder import AttemptRecord, RequestRecord
from polyroute.telemetry.tracing import SpanObserver, traces_url

USER = [{"role": "user", "content": "the quick brown fox"}]
HEX = "0123456789abcdef" * 2
T0 = datetime(2026, 1, 2, 3, 4, 5, 600_000, tzinfo=UTC)


def config(**telemetry: object) -> Config:
    raw = remote_config("http://up.example:8080/v1", "sqlite://").model_dump()
    raw["providers"]["local"] = {"api": "llama_cpp"}
    raw["models"].append({"name": "tiny", "provider": "local", "source": "smollm2-135m"})
    raw["routers"] = {"smart": {"kind": "random"}}
    raw["telemetry"] = telemetry
    return Config.model_validate(raw)


def observe(*records: RequestRecord) -> list[ReadableSpan]:
    exporter = InMemorySpanExporter()
    observer = SpanObserver.from_config(
        config(service_name="gw-test"), SimpleSpanProcessor(exporter)
    )
    for r in records:
        observer(r)
    observer.shutdown()
    return list(exporter.get_finished_spans())


def test_a_streamed_request_becomes_one_genai_span() -> None:
    (span,) = observe(
        RequestRecord(
            id=f"chatcmpl-{HEX}", created_at=T0, requested_model="smart", stream=True,
            model="echo", provider="up", upstream_model="echo", router="smart",
            input_tokens=5, output_tokens=4, cached_tokens=2, latency_ms=1500.0, ttft_ms=120.0,
            cost_usd=1.3e-5, cost_status="known",
        )
    )  # fmt: skip
    assert span.name == "chat smart"
    assert span.kind is SpanKind.CLIENT
    assert span.attributes is not None
    assert dict(span.attributes) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "smart",
        "gen_ai.request.stream": True,
        "gen_ai.response.model": "echo",
        "gen_ai.response.id": f"chatcmpl-{HEX}",
        "gen_ai.usage.input_tokens": 5,
        "gen_ai.usage.output_tokens": 4,
        "gen_ai.usage.cache_read.input_tokens": 2,
        "gen_ai.response.time_to_first_chunk": pytest.approx(0.12),
        "server.address": "up.example",
        "server.port": 8080,
        "polyroute.trace_id": f"chatcmpl-{HEX}",
        "polyroute.provider": "up",
        "polyroute.upstream_model": "echo",
        "polyroute.router": "smart",
        "polyroute.cost_usd": pytest.approx(1.3e-5),
        "polyroute.cost_status": "known",
    }
    # Timed from the record, not from when the observer ran.
    start = int(T0.timestamp() * 1e9)
    assert (span.start_time, span.end_time) == (start, start + 1_500_000_000)
    # The polyroute trace id is the OpenTelemetry trace id.
    assert format(span.context.trace_id, "032x") == HEX
    assert span.parent is None
    assert span.status.status_code is StatusCode.UNSET
    assert span.resource.attributes["service.name"] == "gw-test"


def test_a_failed_request_has_error_type_and_error_status() -> None:
    (span,) = observe(
        RequestRecord(
            id=f"chatcmpl-{HEX}", created_at=T0, requested_model="echo", stream=False,
            model="echo", provider="up", status=502, latency_ms=3.0, error="upstream down",
        )
    )  # fmt: skip
    assert span.attributes is not None
    assert span.attributes["error.type"] == "502"
    assert "gen_ai.usage.input_tokens" not in span.attributes
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "upstream down"


def test_fallbacks_become_one_event_per_attempt() -> None:
    first = AttemptRecord(n=0, started_at=T0, model="broken", provider="up", status=502,
                          latency_ms=4.0, error="upstream down")  # fmt: skip
    second = AttemptRecord(n=1, started_at=T0 + timedelta(milliseconds=5), model="echo",
                           provider="up", latency_ms=20.0)  # fmt: skip
    (span,) = observe(
        RequestRecord(id=f"chatcmpl-{HEX}", created_at=T0, requested_model="smart", stream=False,
                      model="echo", provider="up", router="smart", latency_ms=30.0,
                      attempts=[first, second])
    )  # fmt: skip
    assert span.attributes is not None
    assert span.attributes["polyroute.attempts"] == 2
    failed, answered = span.events
    assert failed.name == answered.name == "polyroute.attempt"
    assert failed.attributes is not None and answered.attributes is not None
    assert dict(failed.attributes) == {
        "polyroute.attempt": 0,
        "gen_ai.response.model": "broken",
        "polyroute.provider": "up",
        "polyroute.status": 502,
        "polyroute.latency_ms": 4.0,
        "error.type": "502",
        "polyroute.error": "upstream down",
    }
    assert answered.attributes["gen_ai.response.model"] == "echo"
    assert "error.type" not in answered.attributes
    assert answered.timestamp - failed.timestamp == 5_000_000


def test_span_names_stay_bounded_and_local_models_are_internal() -> None:
    local, nonsense, odd_id = observe(
        RequestRecord(id="chatcmpl-" + "1" * 32, created_at=T0, requested_model="tiny",
                      stream=False, model="tiny", provider="local", latency_ms=10.0),
        RequestRecord(id="chatcmpl-" + "2" * 32, created_at=T0, requested_model="nonsense",
                      stream=False, status=404, latency_ms=1.0, error="no such model"),
        RequestRecord(id="not-hex", created_at=T0, requested_model="echo", stream=False),
    )  # fmt: skip
    assert (local.name, local.kind) == ("chat tiny", SpanKind.INTERNAL)
    assert local.attributes is not None
    assert local.attributes["gen_ai.provider.name"] == "llama_cpp"
    assert "server.address" not in local.attributes
    # A model name the config does not know is an attribute, never part of the span name.
    assert nonsense.name == "chat"
    assert nonsense.attributes is not None
    assert nonsense.attributes["gen_ai.request.model"] == "nonsense"
    assert "gen_ai.provider.name" not in nonsense.attributes
    # Ids that are not ours get a random trace id, and do not leak into the next span.
    assert odd_id.context.trace_id not in (0, int("2" * 32, 16))


class _Broken(SimpleSpanProcessor):
    def on_end(self, span: ReadableSpan) -> None:
        raise RuntimeError("exporter bug")


def test_a_failing_span_pipeline_never_reaches_the_request() -> None:
    observer = SpanObserver.from_config(config(), _Broken(InMemorySpanExporter()))
    r = RequestRecord(id=f"chatcmpl-{HEX}", created_at=T0, requested_model="echo", stream=False)
    observer(r)  # must not raise
    observer(r)
    assert observer.failures == 2


def test_telemetry_config_is_validated() -> None:
    assert traces_url("http://127.0.0.1:4318") == "http://127.0.0.1:4318/v1/traces"
    assert traces_url("http://c:4318/v1/traces/") == "http://c:4318/v1/traces"
    with pytest.raises(ValueError, match="otlp_endpoint"):
        config(otlp_endpoint="127.0.0.1:4318")
    with pytest.raises(ValueError, match="sample_ratio"):
        config(sample_ratio=2)


@pytest.mark.parametrize(
    ("yaml", "expected"),
    [
        (
            "telemetry: {otlp_endpoint: 'localhost:4318'}",
            "telemetry.otlp_endpoint: Value error, 'localhost:4318' is not an http",
        ),
        ("telemetry: {sevice_name: x}", "telemetry.sevice_name: unknown field"),
    ],
)
def test_a_bad_telemetry_section_in_yaml_names_the_field(
    tmp_path: Path, yaml: str, expected: str
) -> None:
    p = tmp_path / "c.yaml"
    p.write_text(yaml + "\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert expected in e.value.message


def test_tracing_off_loads_no_sdk_and_installs_no_span_observer() -> None:
    code = (
        "import sys\n"
        "from tests.conftest import remote_config\n"
        "from polyroute.gateway import create_app\n"
        "app = create_app(remote_config('http://127.0.0.1:9/v1', 'sqlite://'))\n"
        "chat = app.state.gateway.chat\n"
        "print(len(chat.observers), app.state.gateway.telemetry.spans,\n"
        "      any(m.startswith('opentelemetry.sdk') for m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    # One observer (metrics), no span observer, and the SDK never imported.
    assert out.stdout.split() == ["1", "None", "False"]


@pytest.mark.e2e
def test_the_gateway_exports_spans_to_an_otlp_collector(
    echo_upstream: EchoUpstream, db_url: str
) -> None:
    with running_otlp_receiver() as collector:
        raw = remote_config(echo_upstream.base_url, db_url).model_dump()
        raw["telemetry"] = {
            "otlp_endpoint": collector.url,
            "service_name": "polyroute-e2e",
            "otlp_headers": {"x-team": "routing"},
        }
        app = create_app(Config.model_validate(raw))
        with serving(app) as base_url:
            client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0)
            answer = client.chat.completions.create(model="echo", messages=USER)  # type: ignore[arg-type]
            chunks = list(
                client.chat.completions.create(model="echo", messages=USER, stream=True)  # type: ignore[arg-type]
            )
            with pytest.raises(openai.InternalServerError):
                client.chat.completions.create(model="broken", messages=USER)  # type: ignore[arg-type]
        # Shutting the gateway down flushed the exporter's queue; allow the last POST to land.
        for _ in range(100):
            if len(collector.spans) >= 3:
                break
            time.sleep(0.05)

    spans = {s.attributes["gen_ai.response.id"]: s for s in collector.spans}
    assert len(collector.spans) == 3
    assert all(r.get("x-team") == "routing" for r in collector.requests)
    assert collector.requests[0]["content-type"] == "application/x-protobuf"

    plain = spans[answer.id]
    assert plain.name == "chat echo"
    assert plain.kind == 3  # SPAN_KIND_CLIENT
    assert plain.scope == "polyroute.gateway"
    assert plain.resource["service.name"] == "polyroute-e2e"
    assert plain.trace_id == answer.id.removeprefix("chatcmpl-")
    assert plain.attributes["gen_ai.operation.name"] == "chat"
    assert plain.attributes["gen_ai.provider.name"] == "openai"
    assert plain.attributes["gen_ai.request.model"] == "echo"
    assert plain.attributes["gen_ai.response.model"] == "echo"
    assert plain.attributes["gen_ai.usage.input_tokens"] == 5
    assert plain.attributes["gen_ai.usage.output_tokens"] == 4
    assert plain.attributes["polyroute.cost_usd"] == pytest.approx(13e-6)
    assert plain.attributes["server.address"] == "127.0.0.1"
    assert plain.attributes["polyroute.attempts"] == 1
    assert "gen_ai.response.time_to_first_chunk" not in plain.attributes
    assert plain.end_ns > plain.start_ns

    streamed = spans[chunks[0].id]
    assert streamed.attributes["gen_ai.request.stream"] is True
    ttft = streamed.attributes["gen_ai.response.time_to_first_chunk"]
    assert 0 < ttft <= (streamed.end_ns - streamed.start_ns) / 1e9 + 1e-3

    (failed,) = [s for s in collector.spans if s.attributes.get("error.type")]
    assert failed.attributes["error.type"] == "502"
    assert failed.attributes["gen_ai.request.model"] == "broken"
    assert failed.status_code == 2  # STATUS_CODE_ERROR
