"""Fuzzing the gateway's OpenAPI schema with schemathesis: no input gets a 5xx.

Every operation of ``/openapi.json`` gets generated requests, valid and invalid (wrong
types, missing fields, odd strings), against a real server whose upstream is the echo one.
The generated example count is bounded so that the run fits in CI
(``POLYROUTE_FUZZ_EXAMPLES`` raises it for a longer run by hand); schemathesis's coverage
phase adds its own deterministic cases on top (boundary values, each field's wrong types,
other methods): about 400 requests in all, ~40 s on a busy 2-core machine.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from tests.conftest import remote_config, serving
from tests.support.echo_upstream import EchoUpstream

from polyroute.gateway import create_app

pytestmark = pytest.mark.e2e
EXAMPLES = int(os.environ.get("POLYROUTE_FUZZ_EXAMPLES", "15"))

# The schema comes from the app itself (the same one /openapi.json serves).
schema = schemathesis.openapi.from_dict(
    create_app(remote_config("http://127.0.0.1:9/v1", "sqlite://")).openapi()
)


@pytest.fixture(scope="module")
def fuzz_server(
    echo_upstream: EchoUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    db_url = f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'polyroute.db'}"
    with serving(create_app(remote_config(echo_upstream.base_url, db_url))) as base_url:
        yield base_url.removesuffix("/v1")


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    # One client for every case: a top-level httpx call builds a TLS context each time, which
    # was most of this test's time (~0.2 s of CPU a case on a busy machine).
    with httpx.Client(timeout=5) as client:
        yield client


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,  # the same examples on every run: a failure here is reproducible
)
def test_no_generated_request_gets_a_server_error(
    case: Any, fuzz_server: str, http: httpx.Client
) -> None:
    response = case.call(base_url=fuzz_server, timeout=30)
    assert response.status_code < 500, (case.as_curl_command(), response.text[:500])
    if response.status_code >= 400:
        body = response.json()
        assert "error" in body, (case.as_curl_command(), response.status_code, body)
        error = body["error"]  # an OpenAI-style body, never a traceback
        assert isinstance(error["message"], str) and "Traceback" not in error["message"]
    # The server keeps serving after each.
    assert http.get(f"{fuzz_server}/health/live").status_code == 200
