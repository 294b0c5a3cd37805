"""Every error becomes one OpenAI-style JSON body, mapped in exactly one place."""

from __future__ import annotations

import logging

import orjson
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
    return Response(
        error_body(exc.message, exc.error_type, exc.code, exc.param),
        status_code=exc.status_code,
        media_type="application/json",
        headers=exc.headers,
    )


async def handle_polyroute_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PolyrouteError)
    return error_response(exc)


async def handle_unexpected(_request: Request, exc: Exception) -> Response:
    # A bug: log it with its traceback, but never send the traceback to the client.
    log.exception("unhandled error", exc_info=exc)
    return Response(
        error_body("The server had an error while processing your request", "server_error"),
        status_code=500,
        media_type="application/json",
    )
