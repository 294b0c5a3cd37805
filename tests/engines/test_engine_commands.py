"""Engine command lines (vLLM, SGLang and Ollama are checked here, not run) and engine config."""

from __future__ import annotations

import sys

import pytest
from pydantic import ValidationError

from polyroute.config import Config, ModelConfig
from polyroute.engines import attach_engines, build_command
from polyroute.engines.commands import render_args
from polyroute.errors import ConfigError


def _model(**fields: object) -> ModelConfig:
    return ModelConfig.model_validate({"name": "m", **fields})


def test_llama_cpp_server_command_binds_loopback_and_names_the_model() -> None:
    m = _model(engine={"kind": "llama_cpp_server", "args": {"n_gpu_layers": -1, "flash_attn": True}},
               path="/models/smol.gguf", n_ctx=2048, n_threads=4, upstream_model="smol-up")  # fmt: skip
    c = build_command(m, "/models/smol.gguf", 8123)
    assert c.argv == [
        sys.executable, "-m", "llama_cpp.server", "--model", "/models/smol.gguf",
        "--host", "127.0.0.1", "--port", "8123", "--model_alias", "smol-up", "--n_ctx", "2048",
        "--n_threads", "4", "--n_gpu_layers", "-1", "--flash_attn", "true",
    ]  # fmt: skip
    assert (c.base_url, c.health_url) == (
        "http://127.0.0.1:8123/v1",
        "http://127.0.0.1:8123/v1/models",
    )


def test_vllm_command() -> None:
    m = _model(
        engine={"kind": "vllm", "args": {"tensor_parallel_size": 2, "enforce_eager": True,
                                         "trust-remote-code": False, "max_model_len": 8192,
                                         "override_generation_config": {"temperature": 0.5}}},
        path="/models/qwen",
    )  # fmt: skip
    c = build_command(m, "/models/qwen", 9000)
    assert c.argv == [
        "vllm", "serve", "/models/qwen", "--host", "127.0.0.1", "--port", "9000",
        "--served-model-name", "m", "--tensor-parallel-size", "2", "--enforce-eager",
        "--max-model-len", "8192", "--override-generation-config", '{"temperature":0.5}',
    ]  # fmt: skip
    assert c.health_path == "/health"


def test_vllm_can_take_a_hub_repo_id_as_its_model_argument() -> None:
    m = _model(engine={"kind": "vllm", "args": {"model": "Qwen/Qwen2.5-0.5B-Instruct"}})
    assert build_command(m, None, 9000).argv[:3] == ["vllm", "serve", "Qwen/Qwen2.5-0.5B-Instruct"]


def test_sglang_command_with_its_own_interpreter() -> None:
    m = _model(engine={"kind": "sglang", "command": ["/opt/sglang/bin/python", "-m", "sglang.launch_server"],
                       "args": {"mem_fraction_static": 0.8, "tp": 1}}, path="/models/llama")  # fmt: skip
    assert build_command(m, "/models/llama", 30000).argv == [
        "/opt/sglang/bin/python", "-m", "sglang.launch_server", "--model-path", "/models/llama",
        "--host", "127.0.0.1", "--port", "30000", "--served-model-name", "m",
        "--mem-fraction-static", "0.8", "--tp", "1",
    ]  # fmt: skip


def test_ollama_listens_where_polyroute_says_through_its_environment() -> None:
    m = _model(engine={"kind": "ollama"}, upstream_model="llama3.2:1b")
    c = build_command(m, None, 11500)
    assert c.argv == ["ollama", "serve"]
    assert c.env == {"OLLAMA_HOST": "127.0.0.1:11500"}
    assert c.health_path == "/api/version"


@pytest.mark.parametrize(("kind", "arg"), [("llama_cpp_server", "host"), ("vllm", "port"),
                                           ("vllm", "served_model_name"), ("sglang", "model_path")])  # fmt: skip
def test_args_cannot_override_what_polyroute_sets(kind: str, arg: str) -> None:
    m = _model(engine={"kind": kind, "args": {arg: "x"}}, path="/m")
    with pytest.raises(ConfigError, match=f"engine.args.{arg}: polyroute sets this itself"):
        build_command(m, "/m", 1)


def test_render_args_leaves_out_none_and_repeats_lists() -> None:
    assert render_args({"a_b": None, "lora": ["x", "y"]}, "kebab") == ["--lora", "x", "y"]
    assert render_args({"use-mmap": False}, "snake") == ["--use_mmap", "false"]


def test_an_engine_entry_needs_no_provider_but_needs_weights() -> None:
    cfg = Config.model_validate({"models": [{"name": "smol", "engine": {"kind": "llama_cpp_server"},
                                             "path": "/models/smol.gguf"}]})  # fmt: skip
    attached = attach_engines(cfg)
    [m] = attached.models
    assert m.provider == "engine:smol"
    provider = attached.providers["engine:smol"]
    assert provider.kind == "engine" and str(provider.base_url).startswith("http://127.0.0.1:")
    assert attach_engines(attached) == attached  # attaching twice changes nothing
    fixed = Config.model_validate({"models": [{"name": "s", "engine": {"kind": "vllm", "port": 8111},
                                               "weights": "hf://o/r/f@main"}]})  # fmt: skip
    assert attach_engines(fixed).providers["engine:s"].base_url == "http://127.0.0.1:8111/v1"


@pytest.mark.parametrize(
    ("model", "says"),
    [
        ({"name": "a", "engine": {"kind": "vllm"}}, "an engine needs its weights"),
        ({"name": "a", "engine": {"kind": "vllm"}, "path": "/m", "provider": "p"}, "not both"),
        ({"name": "a", "engine": {"kind": "llamacpp"}, "path": "/m"}, "llama_cpp_server"),
        ({"name": "a", "path": "/m"}, "'provider' is required"),
        (
            {"name": "a", "engine": {"kind": "vllm"}, "path": "/m", "weights": "pypi:x"},
            "one of 'path'",
        ),
        ({"name": "a", "engine": {"kind": "vllm", "port": 0}, "path": "/m"}, "port"),
    ],
)
def test_engine_config_errors_name_the_fix(model: dict[str, object], says: str) -> None:
    with pytest.raises(ValidationError, match=says):
        Config.model_validate({"providers": {"p": {"api": "openai", "base_url": "http://x/v1"}},
                               "models": [model]})  # fmt: skip


def test_weights_on_a_remote_model_are_refused() -> None:
    cfg = Config.model_validate({"providers": {"p": {"api": "openai", "base_url": "http://x/v1"}},
                                 "models": [{"name": "a", "provider": "p", "weights": "pypi:smollm2-135m"}]})  # fmt: skip
    with pytest.raises(ConfigError, match="a remote provider serves its own"):
        attach_engines(cfg)
