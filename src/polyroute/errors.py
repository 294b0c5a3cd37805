"""The errors polyroute raises, each mapped once to an OpenAI-style error response.

    PolyrouteError                       500 server_error
    ├── ConfigError                      (startup only: bad YAML, bad field, missing env var)
    ├── InvalidRequest                   400 invalid_request_error
    │   └── RequestTooLarge              413 invalid_request_error
    ├── ModelNotFound                    404 model_not_found
    ├── NoEligibleModel                  400 no_eligible_model (routing left no candidate)
    ├── ModelUnavailable                 503 model_unavailable (local model missing or corrupt)
    ├── UnknownPrice                     (catalog: a price that is not known; never $0)
    ├── AuthenticationFailed             401 invalid_api_key (no key, unknown, revoked, expired)
    ├── PermissionDenied                 403 permission_denied (model, route or trace not the key's)
    ├── HostNotAllowed                   421 host_not_allowed (Host header not on the allow-list)
    ├── BudgetExceeded                   429 budget_exceeded (with the remaining budget)
    ├── KeyRateLimited                   429 rate_limit_exceeded (a key's/team's RPM, TPM, parallel)
    └── UpstreamError                    502 upstream_error
        ├── UpstreamTimeout              504 upstream_timeout
        ├── UpstreamUnreachable          502 upstream_unreachable
        ├── RateLimited                  429 rate_limit_exceeded
        └── UpstreamRejected             upstream's own 4xx status, passed through

The gateway turns any of these into ``{"error": {"message", "type", "param", "code"}}``
(see ``polyroute.gateway.errors``); anything else is a bug and becomes a logged 500 with
no traceback in the body.
"""

from __future__ import annotations

import re


class PolyrouteError(Exception):
    """Base of every error polyroute raises on purpose."""

    status_code: int = 500
    error_type: str = "server_error"
    code: str | None = None
    #: Response headers the error carries (e.g. ``Retry-After``).
    headers: dict[str, str] | None = None

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


class UnknownPrice(PolyrouteError):
    """A cost was asked for a model whose price is not known."""

    code = "unknown_price"


class AuthenticationFailed(PolyrouteError):
    status_code = 401
    error_type = "invalid_request_error"
    code = "invalid_api_key"


class PermissionDenied(PolyrouteError):
    status_code = 403
    error_type = "invalid_request_error"
    code = "permission_denied"


class HostNotAllowed(PolyrouteError):
    status_code = 421
    error_type = "invalid_request_error"
    code = "host_not_allowed"


class BudgetExceeded(PolyrouteError):
    status_code = 429
    error_type = "insufficient_quota"
    code = "budget_exceeded"


class KeyRateLimited(PolyrouteError):
    status_code = 429
    error_type = "rate_limit_error"
    code = "rate_limit_exceeded"


# An upstream that echoes the key it was sent ("Incorrect API key provided: sk-...") must not
# pass it on to the client or the store.
_ECHOED_KEY = re.compile(r"(?:sk|pk|rk|pr|key)[-_][A-Za-z0-9_\-]{12,}|(?i:bearer)\s+[^\s\"']{8,}")


def redact_keys(text: str) -> str:
    """``text`` with anything shaped like an API key replaced by ``[redacted]``."""
    return _ECHOED_KEY.sub("[redacted]", text)


class UpstreamError(PolyrouteError):
    status_code = 502
    error_type = "upstream_error"
    code = "upstream_error"

    #: Whether trying again (or another model) may succeed.
    retryable: bool = True

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(redact_keys(message), param=param)


class UpstreamTimeout(UpstreamError):
    status_code = 504
    code = "upstream_timeout"


class UpstreamUnreachable(UpstreamError):
    code = "upstream_unreachable"


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
