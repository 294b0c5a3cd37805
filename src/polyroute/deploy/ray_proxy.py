"""What Ray Serve's HTTP proxy answers when a replica gives no answer: an OpenAI error.

A request whose replica dies while it holds it (``kill -9``, out of memory, a lost node)
fails in the proxy with Ray's ``ActorDiedError``. Ray's proxy sends a body of its own only
for 408, 429 and 503; for this 500 its ASGI app returns without a response and uvicorn
sends ``Internal Server Error`` as ``text/plain``, which is not what an OpenAI client
expects from polyroute. Serve's one hook into its proxy is the environment variable
``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH``: a function, imported in the proxy process,
that returns Starlette middlewares to wrap the proxy's app in. :func:`middlewares` is that
function (``polyroute ray serve`` sets the variable for the Serve it starts), and
:class:`NoAnswerIsAnError` answers such a request with :class:`~polyroute.errors.ReplicaLost`
(502, ``replica_lost``), which the openai SDK retries like any 5xx.

It runs in the proxy, not in a gateway, so it imports neither Ray nor the gateway (only
the error tree): the proxy stays as light as Serve made it. A response that had started
(a stream cut off mid-way) cannot be changed any more: the client sees the connection
close, as it would with any server.
"""

from __future__ import annotations

import logging

import orjson
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from polyroute.errors import ReplicaLost

log = logging.getLogger(__name__)

#: The variable Serve's proxy reads at its start, and what polyroute sets it to.
CALLBACK_ENV = "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"
CALLBACK = "polyroute.deploy.ray_proxy.middlewares"

_LOST = ReplicaLost(
    "The gateway replica handling this request stopped before it answered (it was killed "
    "or lost its node); the request may have reached the model. Retry it: a live replica "
    "will answer"
)


def _body(e: ReplicaLost) -> bytes:
    error = {"message": e.message, "type": e.error_type, "param": e.param, "code": e.code}
    return orjson.dumps({"error": error})


class NoAnswerIsAnError:
    """Pure ASGI middleware: an HTTP request the app returns from (or fails) without having
    started a response is answered with :data:`_LOST` instead of uvicorn's plain 500."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except Exception:
            if started:
                raise
            log.exception("Ray Serve's proxy failed before answering %s", scope.get("path"))
        if not started:
            await send_lost(send)


async def send_lost(send: Send) -> None:
    """Send :data:`_LOST` as the whole response."""
    body = _body(_LOST)
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": _LOST.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def middlewares() -> list[Middleware]:
    """The proxy callback: what Serve's HTTP proxy wraps its app in."""
    return [Middleware(NoAnswerIsAnError)]
