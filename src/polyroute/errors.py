"""The errors polyroute raises, each mapped once to an OpenAI-style error response.

    PolyrouteError                       500 server_error
    ├── ConfigError                      (startup only: bad YAML, bad field, missing env var)
    ├── InvalidRequest                   400 invalid_request_error
    │   └── RequestTooLarge              413 invalid_request_error
    ├── ModelNotFound                    404 model_not_found
    ├── NoEligibleModel                  400 no_eligible_model (routing left no candidate)
    ├── ModelUnavailable                 503 model_unavailable (local model missing or corrupt)
    │   └── WeightsError                 503 weights_unavailable (store: fetch failed, wrong hash)
    ├── UnknownPrice                     (catalog: a price that is not known; never $0)
    └── UpstreamError                    502 upstream_error
        ├── UpstreamTimeout              504 upstream_timeout
        ├── UpstreamUnreachable          502 upstream_unreachable
        ├── EngineUnavailable            503 engine_unavailable (an engine starting or down)
        ├── RateLimited                  429 rate_limit_exceeded
        └── UpstreamRejected             upstream's own 4xx status, passed through

The gateway turns any of these into ``{"error": {"message", "type", "param", "code"}}``
(see ``polyroute.gateway.errors``); anything else is a bug and becomes a logged 500 with
no traceback in the body.
"""

from __future__ import annotations


class PolyrouteError(Exception):
    """Base of every error polyroute raises on purpose."""

    status_code: int = 500
    error_type: str = "server_error"
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class ConfigError(PolyrouteError):
    """The configuration cannot be used; the message names the field and the fix."""


class InvalidRequest(PolyrouteError):
    status_code = 400
    error_type = "invalid_request_error"
    code = "invalid_request"


class RequestTooLarge(InvalidRequest):
    status_code = 413
    code = "request_too_large"


class ModelNotFound(PolyrouteError):
    status_code = 404
    error_type = "invalid_request_error"
    code = "model_not_found"


class NoEligibleModel(PolyrouteError):
    status_code = 400
    error_type = "invalid_request_error"
    code = "no_eligible_model"


class ModelUnavailable(PolyrouteError):
    status_code = 503
    error_type = "server_error"
    code = "model_unavailable"


class WeightsError(ModelUnavailable):
    """The model store cannot provide a file: a bad reference, a failed fetch, a wrong hash."""

    code = "weights_unavailable"


class UnknownPrice(PolyrouteError):
    """A cost was asked for a model whose price is not known."""

    code = "unknown_price"


class UpstreamError(PolyrouteError):
    status_code = 502
    error_type = "upstream_error"
    code = "upstream_error"

    #: Whether trying again (or another model) may succeed.
    retryable: bool = True


class UpstreamTimeout(UpstreamError):
    status_code = 504
    code = "upstream_timeout"


class UpstreamUnreachable(UpstreamError):
    code = "upstream_unreachable"


class EngineUnavailable(UpstreamError):
    """The inference server polyroute runs for a model is starting, restarting or down;
    retryable, so a routed request falls over to the next model."""

    status_code = 503
    code = "engine_unavailable"


class RateLimited(UpstreamError):
    status_code = 429
    error_type = "rate_limit_error"
    code = "rate_limit_exceeded"


class UpstreamRejected(UpstreamError):
    """The upstream answered with its own client error (4xx): the request is at fault."""

    retryable = False

    def __init__(self, message: str, *, status_code: int, param: str | None = None) -> None:
        super().__init__(message, param=param)
        self.status_code = status_code
        self.error_type = "invalid_request_error"
