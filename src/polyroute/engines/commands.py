"""The command line that starts each kind of engine, bound to 127.0.0.1 on a given port.

Each kind is a program prefix (replaceable with ``engine.command``), the options polyroute
owns (host, port, the weights, the name clients use), and the user's ``engine.args``
rendered in the program's own flag style. polyroute's options cannot be overridden through
``args``: an engine bound to another interface would be reachable around the gateway.

    llama_cpp_server  python -m llama_cpp.server --model W --host 127.0.0.1 --port P
                      --model_alias NAME --n_ctx N [--n_threads T]   (flags: --snake_case V)
    vllm              vllm serve W --host 127.0.0.1 --port P --served-model-name NAME
    sglang            python -m sglang.launch_server --model-path W --host 127.0.0.1 --port P
                      --served-model-name NAME                     (flags: --kebab-case [V])
    ollama            ollama serve   with OLLAMA_HOST=127.0.0.1:P; it serves the tags pulled
                      into Ollama's own store (upstream_model names one), so no weights here
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import Any

from polyroute.config import EngineConfig, ModelConfig
from polyroute.errors import ConfigError
from polyroute.providers.llama_local import LlamaCppLoadOptions

HOST = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class EngineCommand:
    """How to start one engine and how to tell it is ready."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    #: A GET path that answers 200 once the engine can serve.
    health_path: str = "/v1/models"
    port: int = 0

    @property
    def base_url(self) -> str:
        """The engine's OpenAI-compatible API (what the provider talks to)."""
        return f"http://{HOST}:{self.port}/v1"

    @property
    def health_url(self) -> str:
        return f"http://{HOST}:{self.port}{self.health_path}"


@dataclass(frozen=True, slots=True)
class _Kind:
    prefix: tuple[str, ...]
    style: str  # "snake": --name value (bools as true/false); "kebab": --name-x, bools as flags
    health_path: str
    owned: frozenset[str]


_KINDS: dict[str, _Kind] = {
    "llama_cpp_server": _Kind(
        (sys.executable, "-m", "llama_cpp.server"), "snake", "/v1/models",
        frozenset({"host", "port", "model_alias"}),
    ),
    "vllm": _Kind(
        ("vllm", "serve"), "kebab", "/health",
        frozenset({"host", "port", "served-model-name"}),
    ),
    "sglang": _Kind(
        (sys.executable, "-m", "sglang.launch_server"), "kebab", "/health",
        frozenset({"model-path", "host", "port", "served-model-name"}),
    ),
    "ollama": _Kind(("ollama", "serve"), "kebab", "/api/version", frozenset()),
}  # fmt: skip


def _value(value: Any) -> str:
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def render_args(args: dict[str, Any], style: str) -> list[str]:
    """``{name: value}`` as flags: ``None`` or ``False`` (kebab) leaves a flag out, ``True``
    (kebab) is a bare flag, a list repeats values after one flag, a dict is JSON."""
    out: list[str] = []
    for raw, value in args.items():
        name = raw.replace("-", "_") if style == "snake" else raw.replace("_", "-")
        flag = f"--{name}"
        if value is None:
            continue
        if isinstance(value, bool):
            if style == "snake":
                out += [flag, "true" if value else "false"]
            elif value:
                out.append(flag)
            continue
        if isinstance(value, list):
            out += [flag, *(_value(v) for v in value)]
            continue
        out += [flag, _value(value)]
    return out


def build_command(model: ModelConfig, weights: str | None, port: int) -> EngineCommand:
    """The command that serves ``model`` from ``weights`` (a file or directory) on ``port``."""
    engine = model.engine
    if engine is None:
        raise ValueError(f"model {model.name!r} has no engine")
    kind = _KINDS[engine.kind]
    where = f"models.{model.name}.engine.args"
    for raw in engine.args:
        key = raw.replace("_", "-") if kind.style == "kebab" else raw.replace("-", "_")
        if key in kind.owned or raw in kind.owned:
            raise ConfigError(
                f"{where}.{raw}: polyroute sets this itself (the engine listens on {HOST} "
                "on engine.port and is given the model's weights and name); remove it"
            )
    prefix = list(engine.command or kind.prefix)
    own: list[str]
    env = dict(engine.env)
    weights = weights or _arg_model(engine)
    if engine.kind == "llama_cpp_server":
        load = model.options_as(LlamaCppLoadOptions, f"models.{model.name}")
        own = ["--model", _need(weights, model), "--host", HOST, "--port", str(port),
               "--model_alias", model.target, "--n_ctx", str(load.n_ctx)]  # fmt: skip
        if load.n_threads is not None:
            own += ["--n_threads", str(load.n_threads)]
    elif engine.kind == "vllm":
        own = [_need(weights, model), "--host", HOST, "--port", str(port),
               "--served-model-name", model.target]  # fmt: skip
    elif engine.kind == "sglang":
        own = ["--model-path", _need(weights, model), "--host", HOST, "--port", str(port),
               "--served-model-name", model.target]  # fmt: skip
    else:
        own = []
        env["OLLAMA_HOST"] = f"{HOST}:{port}"
    args = {k: v for k, v in engine.args.items() if k != "model"}
    return EngineCommand(
        [*prefix, *own, *render_args(args, kind.style)], env, kind.health_path, port
    )


def _arg_model(engine: EngineConfig) -> str | None:
    value = engine.args.get("model")
    return str(value) if value is not None else None


def _need(weights: str | None, model: ModelConfig) -> str:
    if not weights:
        raise ConfigError(f"model {model.name!r}: its engine needs 'path', 'weights' or 'source'")
    return weights
