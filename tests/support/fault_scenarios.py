"""failoverbench's 16 scenarios as gateway models over the fault upstream, and what each
should give: shared by the fault suite (tests/faults) and benchmarks/fault_scenarios.py.

Model ``f-<scenario>`` injects the fault and falls back to ``ok``; ``alone-<scenario>`` has
no fallback, so its client sees the error (:data:`ALONE`).
"""

from __future__ import annotations

from typing import Any

from polyroute.config import Config

#: Scenario → the upstream model that injects it (each gets a model of its own in the gateway).
SCENARIOS = {
    "500": "status-500",
    "503-retry-after": "status-503-ra1",
    "429-retry-after": "status-429-ra1",
    "connection-refused": "ok",  # on a provider whose port is closed
    "reset-mid-body": "reset-body",
    "headers-late": "late-headers",
    "trickling-body": "trickle",
    "stream-cut-after-first": "cut-after-first",
    "stream-stall-after-first": "stall-after-first",
    "malformed-json": "bad-json",
    "malformed-sse": "bad-sse",
    "html-200": "html-200",
    "empty-choices": "empty-choices",
    "usage-wrong-types": "bad-usage",
    "oversized-body": "oversized",
    "slow-connect": "ok",  # on a provider whose port never accepts
}
PROVIDER = {"connection-refused": "down", "slow-connect": "hole"}
#: What a client gets when the scenario's model has no fallback: (status, code).
ALONE = {
    "500": (502, "upstream_error"),
    "503-retry-after": (503, "upstream_overloaded"),
    "429-retry-after": (429, "rate_limit_exceeded"),
    "connection-refused": (502, "upstream_unreachable"),
    "reset-mid-body": (502, "upstream_unreachable"),
    "headers-late": (504, "upstream_timeout"),
    "trickling-body": (504, "upstream_timeout"),
    "malformed-json": (502, "upstream_incomplete"),
    "html-200": (502, "upstream_incomplete"),
    "empty-choices": (502, "upstream_incomplete"),
    "usage-wrong-types": (502, "upstream_incomplete"),
    "oversized-body": (502, "upstream_incomplete"),
    "slow-connect": (502, "upstream_unreachable"),
}
#: Faults a stream shows only once it has started.
STREAM_ONLY = {"stream-cut-after-first", "stream-stall-after-first", "malformed-sse"}

DEADLINES = {"timeout_s": 1.0, "first_token_timeout_s": 1.0, "stall_timeout_s": 0.5}


def fault_config(base_url: str, db_url: str, down: int, hole: int) -> Config:
    def model(name: str, upstream: str, provider: str = "up", **extra: Any) -> dict[str, Any]:
        return {"name": name, "provider": provider, "upstream_model": upstream, **DEADLINES,
                "max_response_bytes": 1_000_000, **extra}  # fmt: skip

    models = [model("ok", "ok")]
    for scenario, upstream in SCENARIOS.items():
        provider = PROVIDER.get(scenario, "up")
        models.append(model(f"f-{scenario}", upstream, provider, fallbacks=["ok"]))
        models.append(model(f"alone-{scenario}", upstream, provider))
    models += [
        model("retry-503", "status-503-ra1-x1", retries=1),
        model("retry-429", "status-429-ra1-x1", retries=1),
        model("retry-500", "status-500-x2", retries=2),
        model("auth", "auth", fallbacks=["ok"]),
        model("auth-alone", "auth"),
        model("small", "context", context_window_fallbacks=["large"]),
        model("large", "ok"),
        model("tool-cut", "tool-cut", fallbacks=["ok"]),
        model("no-done", "no-done"),
        model("bad-request", "status-400", fallbacks=["ok"]),
        model("trips-at-once", "status-500", breaker={"failures": 1, "cooldown_s": 600}),
    ]
    return Config.model_validate(
        {
            "store": {"database_url": db_url, "flush_interval_s": 0.05},
            "providers": {
                "up": {"api": "openai", "base_url": base_url, "connect_timeout_s": 0.5},
                "down": {"api": "openai", "base_url": f"http://127.0.0.1:{down}/v1"},
                "hole": {
                    "api": "openai",
                    "base_url": f"http://127.0.0.1:{hole}/v1",
                    "connect_timeout_s": 0.5,
                },
            },
            "models": models,
        }
    )
