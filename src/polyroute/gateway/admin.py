"""The admin API: keys and teams over HTTP, for the admin key only (the gate checks).

POST   /admin/keys              create (KeySpec body) → the key and its secret, once
GET    /admin/keys              every active key, with its spend
GET    /admin/keys/{id}         one key (id or alias), with spend by model and router
PATCH  /admin/keys/{id}         change (KeyUpdate body); {"rotate": true} gives a new secret
DELETE /admin/keys/{id}         revoke
PUT    /admin/teams/{id}        a team's shared budget and limits (TeamSpec body)
"""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

import orjson
from fastapi import APIRouter
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from polyroute.auth.keys import KeyInfo
from polyroute.auth.spec import KeySpec, KeyUpdate, TeamSpec
from polyroute.errors import InvalidRequest
from polyroute.gateway.protocol import read_json_body
from polyroute.store.keys import KeyStore

_MAX_BYTES = 64 * 1024
M = TypeVar("M", bound=BaseModel)


def _json(data: Any, status: int = 200) -> Response:
    return Response(
        orjson.dumps(data),
        status_code=status,
        media_type="application/json",
        headers={"cache-control": "no-store"},
    )


def parse_options(model: type[M], body: dict[str, Any]) -> M:
    """Validate an options body; the error names the field."""
    try:
        return model.model_validate(body)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(body)"
        msg = "unknown field" if first["type"] == "extra_forbidden" else first["msg"]
        raise InvalidRequest(f"Invalid value for {where!r}: {msg}", param=where) from None


def key_view(keys: KeyStore, key: KeyInfo) -> dict[str, Any]:
    """A key with its spend (blocking: reads the store)."""
    out = key.public()
    spend = keys.spend(key.id)
    if key.team_id is not None:
        spend["team_usd"] = keys.spend_by_team().get(key.team_id, 0.0)
    out["spend"] = spend
    lim = key.limits
    if lim.budget_nusd is not None:
        spent = spend.get("spent_usd", 0.0)
        budget = lim.budget_nusd / 1e9
        out["remaining_usd"] = max(0.0, budget - spent - spend.get("reserved_usd", 0.0))
        out["alert"] = lim.soft_alert is not None and spent >= lim.soft_alert * budget
    return out


def admin_router(keys: KeyStore) -> APIRouter:
    api = APIRouter(prefix="/admin", include_in_schema=False)

    @api.post("/keys")
    async def create(request: Request) -> Response:
        spec = parse_options(KeySpec, await read_json_body(request, _MAX_BYTES))
        key, secret = await asyncio.to_thread(keys.create_key, spec)
        return _json({**key.public(), "secret": secret}, status=201)

    @api.get("/keys")
    async def list_keys() -> Response:
        def read() -> list[dict[str, Any]]:
            return [key_view(keys, k) for k in keys.all()]

        return _json({"object": "list", "data": await asyncio.to_thread(read)})

    @api.get("/keys/{key_id}")
    async def show(key_id: str) -> Response:
        def read() -> dict[str, Any]:
            return key_view(keys, keys.require(key_id))

        return _json(await asyncio.to_thread(read))

    @api.patch("/keys/{key_id}")
    async def update(key_id: str, request: Request) -> Response:
        body = await read_json_body(request, _MAX_BYTES)
        rotate = body.pop("rotate", False)
        changes = parse_options(KeyUpdate, body)

        def write() -> dict[str, Any]:
            key = keys.update(key_id, changes)
            out = key.public()
            if rotate is True:
                _, out["secret"] = keys.rotate(key.id)
            return out

        return _json(await asyncio.to_thread(write))

    @api.delete("/keys/{key_id}")
    async def revoke(key_id: str) -> Response:
        key = await asyncio.to_thread(keys.revoke, key_id)
        return _json(key.public())

    @api.put("/teams/{team_id}")
    async def team(team_id: str, request: Request) -> Response:
        spec = parse_options(TeamSpec, await read_json_body(request, _MAX_BYTES))
        await asyncio.to_thread(keys.set_team, team_id, spec)
        return _json({"id": team_id, **spec.model_dump(exclude_unset=True)})

    return api


def spend_router(keys: KeyStore) -> APIRouter:
    """``GET /ui/api/keys``: what the dashboard shows of keys and teams."""
    api = APIRouter(include_in_schema=False)

    @api.get("/ui/api/keys")
    async def spend() -> Response:
        def read() -> dict[str, Any]:
            return {
                "keys": [key_view(keys, k) for k in keys.all()],
                "teams": keys.spend_by_team(),
            }

        return _json(await asyncio.to_thread(read))

    return api
