"""The errors polyroute raises, each mapped once to an OpenAI-style error response.

    PolyrouteError                       500 server_error
    ├── ConfigError                      (startup only: bad YAML, bad field, missing env var)
    │   ├── CatalogError                 (a catalog file that cannot be used)
    │   └── RouterFileError              (a trained router's directory that cannot be loaded)
    ├── InvalidRequest                   400 invalid_request
    │   ├── RequestTooLarge              413 request_too_large
    │   ├── RequestTimeout               408 request_timeout (the body did not arrive in time)
    │   └── UnsupportedMediaType         415 unsupported_media_type (POST without JSON)
    ├── NotFound                         404 not_found (an unknown route, file or id)
    │   ├── ModelNotFound                404 model_not_found
    │   ├── TraceNotFound                404 trace_not_found (feedback for an unknown trace)
    │   └── KeyNotFound                  404 key_not_found (admin: no such virtual key)
    ├── AmbiguousModel                   400 ambiguous_model (a name two catalog models answer to)
    ├── NoEligibleModel                  400 no_eligible_model (routing left no candidate)
    ├── ModelUnavailable                 503 model_unavailable (local model missing or corrupt)
    │   ├── WeightsError                 503 weights_unavailable (store: fetch failed, wrong hash)
    │   ├── ModelBusy                    503 model_busy (local queue full; Retry-After)
    │   └── CircuitOpen                  503 circuit_open (every candidate failing; Retry-After)
    ├── ClientDisconnected               499 (the client left; only ever recorded)
    ├── UnknownPrice                     (catalog: a price that is not known; never $0)
    ├── RoutingDataError                 (offline: a routing dataset that cannot be used)
    ├── BenchError                       (offline: a suite, grader or results file)
    ├── AuthenticationFailed             401 invalid_api_key (no key, unknown, revoked, expired)
    ├── PermissionDenied                 403 permission_denied (model, route or trace not the key's)
    ├── HostNotAllowed                   421 host_not_allowed (Host header not on the allow-list)
    ├── BudgetExceeded                   429 budget_exceeded (with the remaining budget)
    ├── KeyRateLimited                   429 rate_limit_exceeded (a key's/team's RPM, TPM, parallel)
    ├── ReplicaLost                      502 replica_lost (Ray Serve: the replica died mid-request)
    ├── ShuttingDown                     503 shutting_down (new request while closing; Retry-After)
    └── UpstreamError                    502 upstream_error
        ├── UpstreamTimeout              504 upstream_timeout
        ├── UpstreamUnreachable          502 upstream_unreachable
        ├── EngineUnavailable            503 engine_unavailable (an engine starting or down)
        ├── UpstreamIncomplete           502 upstream_incomplete (truncated, empty, malformed)
        ├── UpstreamAuthFailed           502 upstream_auth_failed (that provider's key; redacted)
        ├── UpstreamOverloaded           503 upstream_overloaded (upstream 503; Retry-After)
        ├── RateLimited                  429 rate_limit_exceeded (Retry-After passed on)
        └── UpstreamRejected             upstream's own 4xx status, passed through
            └── ContextWindowExceeded    400 context_length_exceeded

Which failures are tried again: ``retryable`` (the same model may answer on a second try:
5xx, 429, 408, 409, connect errors, timeouts, truncated answers) and ``falls_back`` (another
model may answer: all of those, and a provider's refused key). A request the upstream
rejects as invalid (other 4xx) is neither: the client gets it as it is.

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

    #: Seconds the client should wait before trying again (sent as ``Retry-After``).
    retry_after_s: float | None = None

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


class RequestTimeout(InvalidRequest):
    status_code = 408
    code = "request_timeout"


class UnsupportedMediaType(InvalidRequest):
    status_code = 415
    code = "unsupported_media_type"


class NotFound(PolyrouteError):
    """Whatever was asked for does not exist: a route, a file, a model, a trace, a key.

    The one way to answer 404; what is missing is said by the subclass's ``code``."""

    status_code = 404
    error_type = "invalid_request_error"
    code = "not_found"


class ModelNotFound(NotFound):
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


class ModelBusy(ModelUnavailable):
    """A local model's queue is full: come back later rather than wait without bound."""

    code = "model_busy"

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class CircuitOpen(ModelUnavailable):
    """Every model that could answer failed repeatedly just now; their breakers are open."""

    code = "circuit_open"

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ClientDisconnected(PolyrouteError):
    """The client went away before its answer was complete (nginx's 499)."""

    status_code = 499
    code = "client_disconnected"


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


class ReplicaLost(PolyrouteError):
    """The gateway replica that had the request stopped before it answered (Ray Serve's
    proxy got no response: the replica was killed, ran out of memory or lost its node).

    Sent by the proxy, not by a gateway (:mod:`polyroute.deploy.ray_proxy`). The request may
    have reached the upstream; a retry reaches a live replica.
    """

    status_code = 502
    error_type = "server_error"
    code = "replica_lost"


class ShuttingDown(PolyrouteError):
    """The gateway has begun to close: requests in flight finish, new ones are refused.

    A request that arrives after closing began would reserve budget that no one is left to
    settle; refused with 503 and Retry-After, the SDKs send it again (to another replica
    behind a load balancer, or to this one once restarted).
    """

    status_code = 503
    error_type = "server_error"
    code = "shutting_down"

    def __init__(self, message: str, *, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


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

    #: Whether trying the same model again may succeed.
    retryable: bool = True
    #: Whether another model (a fallback) may succeed.
    falls_back: bool = True

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(redact_keys(message), param=param)


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


class UpstreamIncomplete(UpstreamError):
    """A 200 whose answer is truncated, empty or unreadable: never passed on as a success."""

    code = "upstream_incomplete"


class UpstreamAuthFailed(UpstreamError):
    """The upstream refused polyroute's key for it (401/403): that provider is at fault,
    not the client, so another model may answer; the same one will not."""

    code = "upstream_auth_failed"
    retryable = False


class UpstreamOverloaded(UpstreamError):
    """The upstream answered 503: its status (and Retry-After) reach the client."""

    status_code = 503
    code = "upstream_overloaded"


class RateLimited(UpstreamError):
    status_code = 429
    error_type = "rate_limit_error"
    code = "rate_limit_exceeded"


class UpstreamRejected(UpstreamError):
    """The upstream answered with its own client error (4xx): the request is at fault."""

    retryable = False
    falls_back = False

    def __init__(self, message: str, *, status_code: int, param: str | None = None) -> None:
        super().__init__(message, param=param)
        self.status_code = status_code
        self.error_type = "invalid_request_error"
        if status_code == 409:  # a conflict (e.g. a busy resource) may clear on a retry
            self.retryable = self.falls_back = True


class ContextWindowExceeded(UpstreamRejected):
    """The prompt is too long for the model: a model with a larger window may take it."""

    code = "context_length_exceeded"

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message, status_code=400, param=param)
