"""The ``/ui`` page, its static files, and the JSON API under ``/ui/api/`` it reads.

API (all ``GET``; times are ISO 8601 or Unix seconds, windows default to the last 24 h):

    /ui/api/summary        since, until               totals, feedback, models and routers seen
    /ui/api/timeseries     since, until, bucket       requests, errors, cost, latency per bucket
    /ui/api/model-mix      since, until, bucket       per router: the models it chose
    /ui/api/feedback       since, until               mean feedback score per model (and router)
    /ui/api/routers                                   what the learning routers have saved
    /ui/api/leaderboard                               the configured benchmark leaderboards
    /ui/api/traces         since, until, model, router, status, limit, offset
    /ui/api/traces/{id}                               one trace: decision, attempts, feedback

Reads run one at a time on a thread of the dashboard's own, so however many pages poll, they
never block the event loop, never take the threads the recorder and the local models use,
and never keep more than one core busy.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from typing import Any, TypeVar

import orjson
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from polyroute.auth.keys import scope_key
from polyroute.config import DashboardConfig
from polyroute.dashboard import queries
from polyroute.dashboard.boards import BenchBoards
from polyroute.dashboard.params import check_known, parse_trace_filter, parse_window
from polyroute.errors import NotFound
from polyroute.store.db import Store
from polyroute.store.keys import KeyStore

T = TypeVar("T")

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
}
_WINDOW = {"since", "until"}
_BUCKETED = {"since", "until", "bucket"}


def _static_files() -> dict[str, tuple[bytes, str, str]]:
    """name → (content, content type, ETag) for every file shipped in ``static/``."""
    files: dict[str, tuple[bytes, str, str]] = {}
    for entry in resources.files("polyroute.dashboard").joinpath("static").iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1]
        if entry.is_file() and suffix in _TYPES:
            body = entry.read_bytes()
            etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
            files[entry.name] = (body, _TYPES[suffix], etag)
    return files


def _json(data: Any) -> Response:
    return Response(
        orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS),
        media_type="application/json",
        headers={"cache-control": "no-store"},
    )


class Dashboard:
    """The dashboard over one store; :meth:`router` gives its routes."""

    def __init__(self, store: Store, config: DashboardConfig) -> None:
        self.store = store
        self.config = config
        self.boards = BenchBoards(config.bench_results)
        self._executor: ThreadPoolExecutor | None = None
        self._files = _static_files()

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        if self._executor is None:  # no threads until someone opens the page
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="polyroute-dashboard")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args))

    def close(self) -> None:
        """Stop the reader thread (queued reads are dropped)."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    def _file(self, name: str, request: Request) -> Response:
        body, media_type, etag = self._files[name]
        headers = {"etag": etag, "cache-control": "no-cache"}
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        return Response(body, media_type=media_type, headers=headers)

    def router(self) -> APIRouter:
        """The routes: the page, its files and the API."""
        api = APIRouter(tags=["dashboard"])
        store = self.store

        @api.get("/ui")
        @api.get("/ui/")
        async def page(request: Request) -> Response:
            return self._file("index.html", request)

        @api.get("/ui/static/{name}")
        async def static(name: str, request: Request) -> Response:
            if name not in self._files:
                raise NotFound(f"no dashboard file {name!r}", param="name")
            return self._file(name, request)

        @api.get("/ui/api/summary")
        async def summary(request: Request) -> Response:
            q = request.query_params
            check_known(q, _WINDOW)
            return _json(await self._read(queries.summary, store, parse_window(q)))

        @api.get("/ui/api/timeseries")
        async def timeseries(request: Request) -> Response:
            q = request.query_params
            check_known(q, _BUCKETED)
            return _json(await self._read(queries.timeseries, store, parse_window(q)))

        @api.get("/ui/api/model-mix")
        async def model_mix(request: Request) -> Response:
            q = request.query_params
            check_known(q, _BUCKETED)
            return _json(await self._read(queries.model_mix, store, parse_window(q)))

        @api.get("/ui/api/feedback")
        async def feedback(request: Request) -> Response:
            q = request.query_params
            check_known(q, _WINDOW)
            return _json(await self._read(queries.feedback_quality, store, parse_window(q)))

        @api.get("/ui/api/routers")
        async def routers(request: Request) -> Response:
            check_known(request.query_params, set())
            return _json({"routers": await self._read(queries.router_states, store)})

        @api.get("/ui/api/leaderboard")
        async def leaderboard(request: Request) -> Response:
            check_known(request.query_params, set())
            return _json({"boards": await self._read(self.boards.load)})

        @api.get("/ui/api/traces")
        async def traces(request: Request) -> Response:
            filters = parse_trace_filter(request.query_params)
            key = scope_key(request.scope)
            if key is not None and not key.is_admin:
                filters = dataclasses.replace(filters, key_id=key.id)
            return _json(await self._read(queries.traces, store, filters))

        @api.get("/ui/api/traces/{trace_id}")
        async def trace(trace_id: str, request: Request) -> Response:
            check_known(request.query_params, set())
            found = await self._read(queries.trace, store, trace_id)
            key = scope_key(request.scope)
            if (
                found is not None
                and key is not None
                and not key.is_admin
                and await self._read(KeyStore(store.engine).owner, trace_id) != key.id
            ):
                found = None  # another key's trace: as if it did not exist
            if found is None:
                raise NotFound(f"no trace with id {trace_id!r}", param="trace_id")
            return _json(found)

        return api
