"""Every error becomes one OpenAI-style JSON body, mapped in exactly one place."""

from __future__ import annotations

import logging
import math

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from polyroute.errors import PolyrouteError

log = logging.getLogger(__name__)


def error_body(
    message: str, error_type: str, code: str | None = None, param: str | None = None
) -> bytes:
    return orjson.dumps(
        {"error": {"message": message, "type": error_type, "param": param, "code": code}}
    )


def error_response(exc: PolyrouteError) -> Response:
    headers = dict(exc.headers) if exc.headers else None
    if exc.retry_after_s is not None:
        # Whole seconds, rounded up: RFC 9110's delay-seconds is an integer.
        headers = {**(headers or {}), "retry-after": str(max(1, math.ceil(exc.retry_after_s)))}
    return Response(
        error_body(exc.message, exc.error_type, exc.code, exc.param),
        status_code=exc.status_code,
        media_type="application/json",
        headers=headers,
    )


async def handle_polyroute_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PolyrouteError)
    return error_response(exc)


async def handle_http_error(_request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (405 for a method no route takes, ...) in OpenAI's shape."""
    assert isinstance(exc, HTTPException)
    return Response(
        error_body(str(exc.detail), "invalid_request_error", code=None),
        status_code=exc.status_code,
        media_type="application/json",
        headers=exc.headers,
    )


async def handle_unexpected(_request: Request, exc: Exception) -> Response:
    # A bug: log it with its traceback, but never send the traceback to the client.
    log.exception("unhandled error", exc_info=exc)
    return Response(
        error_body("The server had an error while processing your request", "server_error"),
        status_code=500,
        media_type="application/json",
    )
