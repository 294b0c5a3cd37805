"""Keys and teams in the store: created, read, changed, rotated, revoked; and their spend.

Money and counters are :class:`~polyroute.store.ledger.Ledger`'s. Calls are blocking: run
them off the event loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa

from polyroute.auth import secrets
from polyroute.auth.budget import period_start, to_nano
from polyroute.auth.keys import KeyInfo, Limits, json_list, utc
from polyroute.auth.spec import KeySpec, KeyUpdate, TeamSpec
from polyroute.errors import InvalidRequest, NotFound
from polyroute.store import schema
from polyroute.store.ledger import Ledger

K = schema.api_keys
T = schema.teams
U = schema.key_usage


class KeyNotFound(NotFound):
    code = "key_not_found"


@dataclass(frozen=True, slots=True)
class StoredKey:
    """A key with what proves its secret."""

    info: KeyInfo
    salt: str
    secret_hash: str


def _limits(row: Any) -> Limits:
    return Limits(
        budget_nusd=row.budget_nusd,
        period=row.period,
        soft_alert=row.soft_alert,
        rpm=row.rpm,
        tpm=row.tpm,
        parallel=row.parallel,
    )


def _limit_values(spec: KeySpec | KeyUpdate | TeamSpec, fields: set[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "budget_usd" in fields:
        out["budget_nusd"] = to_nano(spec.budget_usd) if spec.budget_usd is not None else None
    for name in ("soft_alert", "rpm", "tpm", "parallel"):
        if name in fields:
            out[name] = getattr(spec, name)
    if "period" in fields and spec.period is not None:
        out["period"] = spec.period
        out["period_start"] = period_start(spec.period)
        out["spent_nusd"] = 0  # a new period begins now
    return out


class KeyStore(Ledger):
    """The key tables over one engine (the gateway's store, or the CLI's)."""

    def __init__(self, engine: sa.Engine) -> None:
        super().__init__(engine)

    # -- keys ---------------------------------------------------------------------------

    def create_key(self, spec: KeySpec) -> tuple[KeyInfo, str]:
        """Create a key; return it and its secret (shown once, never stored)."""
        key_id = secrets.new_key_id()
        secret = secrets.new_secret(key_id)
        salt = secrets.new_salt()
        now = datetime.now(UTC)
        period = spec.period or "total"
        values = {
            "id": key_id,
            "alias": spec.alias,
            "salt": salt,
            "secret_hash": secrets.hash_secret(salt, secret),
            "team_id": spec.team,
            "user": spec.user,
            "metadata": orjson.dumps(spec.metadata).decode(),
            "models": orjson.dumps(spec.models).decode() if spec.models is not None else None,
            "routers": orjson.dumps(spec.routers).decode() if spec.routers is not None else None,
            "permissions": orjson.dumps(spec.permissions).decode(),
            "store_text": spec.store_text,
            "expires_at": spec.expires,
            "created_at": now,
            "updated_at": now,
            "period": period,
            "period_start": period_start(period),
            "spent_nusd": 0,
            "reserved_nusd": 0,
            **_limit_values(spec, spec.model_fields_set | {"budget_usd"}),
        }
        values["period"], values["period_start"], values["spent_nusd"] = (
            period,
            period_start(period),
            0,
        )
        with self.engine.begin() as conn:
            if spec.alias is not None and conn.scalar(
                sa.select(K.c.id).where(K.c.alias == spec.alias)
            ):
                raise InvalidRequest(
                    f"a key with alias {spec.alias!r} exists already", param="alias"
                )
            if spec.team is not None:
                self._ensure_team(conn, spec.team)
            conn.execute(K.insert().values(**values))
        found = self.get(key_id)
        assert found is not None
        return found, secret

    def _ensure_team(self, conn: sa.Connection, team_id: str) -> None:
        if conn.scalar(sa.select(T.c.id).where(T.c.id == team_id)) is None:
            conn.execute(
                T.insert().values(
                    id=team_id,
                    created_at=datetime.now(UTC),
                    period="total",
                    period_start=0,
                    spent_nusd=0,
                    reserved_nusd=0,
                )
            )

    def _select(self) -> sa.Select[Any]:
        team = T.alias("team")
        return sa.select(
            K,
            team.c.budget_nusd.label("t_budget_nusd"),
            team.c.period.label("t_period"),
            team.c.soft_alert.label("t_soft_alert"),
            team.c.rpm.label("t_rpm"),
            team.c.tpm.label("t_tpm"),
            team.c.parallel.label("t_parallel"),
        ).select_from(K.outerjoin(team, team.c.id == K.c.team_id))

    @staticmethod
    def _info(row: Any) -> KeyInfo:
        team_limits = None
        if row.team_id is not None and row.t_period is not None:
            team_limits = Limits(
                budget_nusd=row.t_budget_nusd,
                period=row.t_period,
                soft_alert=row.t_soft_alert,
                rpm=row.t_rpm,
                tpm=row.t_tpm,
                parallel=row.t_parallel,
            )
        return KeyInfo(
            id=row.id,
            alias=row.alias,
            team_id=row.team_id,
            user=row.user,
            metadata=orjson.loads(row.metadata) if row.metadata else {},
            models=json_list(row.models),
            routers=json_list(row.routers),
            permissions=json_list(row.permissions) or (),
            store_text=bool(row.store_text),
            expires_at=utc(row.expires_at),
            revoked_at=utc(row.revoked_at),
            limits=_limits(row),
            team_limits=team_limits,
        )

    def lookup(self, key_id: str) -> StoredKey | None:
        """The key with this id and what proves its secret (the gateway's read)."""
        with self.engine.connect() as conn:
            row = conn.execute(self._select().where(K.c.id == key_id)).first()
        if row is None:
            return None
        return StoredKey(self._info(row), row.salt, row.secret_hash)

    def get(self, id_or_alias: str) -> KeyInfo | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                self._select().where(sa.or_(K.c.id == id_or_alias, K.c.alias == id_or_alias))
            ).first()
        return self._info(row) if row is not None else None

    def require(self, id_or_alias: str) -> KeyInfo:
        found = self.get(id_or_alias)
        if found is None:
            raise KeyNotFound(f"no key with id or alias {id_or_alias!r}", param="id")
        return found

    def all(self, include_revoked: bool = False) -> list[KeyInfo]:
        query = self._select().order_by(K.c.created_at)
        if not include_revoked:
            query = query.where(K.c.revoked_at.is_(None))
        with self.engine.connect() as conn:
            return [self._info(r) for r in conn.execute(query)]

    def update(self, id_or_alias: str, changes: KeyUpdate) -> KeyInfo:
        key = self.require(id_or_alias)
        fields = changes.model_fields_set
        values: dict[str, Any] = _limit_values(changes, fields)
        simple = {"alias": "alias", "team": "team_id", "user": "user", "expires": "expires_at"}
        for name, column in simple.items():
            if name in fields:
                values[column] = getattr(changes, name)
        for name in ("models", "routers", "permissions", "metadata"):
            if name in fields:
                value = getattr(changes, name)
                values[name] = orjson.dumps(value).decode() if value is not None else None
        if "store_text" in fields and changes.store_text is not None:
            values["store_text"] = changes.store_text
        values["updated_at"] = datetime.now(UTC)
        with self.engine.begin() as conn:
            if values.get("team_id") is not None:
                self._ensure_team(conn, values["team_id"])
            conn.execute(K.update().where(K.c.id == key.id).values(**values))
        return self.require(key.id)

    def rotate(self, id_or_alias: str) -> tuple[KeyInfo, str]:
        """A new secret for a key (the old one stops working); the key keeps its id."""
        key = self.require(id_or_alias)
        secret = secrets.new_secret(key.id)
        salt = secrets.new_salt()
        with self.engine.begin() as conn:
            conn.execute(
                K.update()
                .where(K.c.id == key.id)
                .values(
                    salt=salt,
                    secret_hash=secrets.hash_secret(salt, secret),
                    updated_at=datetime.now(UTC),
                )
            )
        return key, secret

    def revoke(self, id_or_alias: str) -> KeyInfo:
        key = self.require(id_or_alias)
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            conn.execute(
                K.update()
                .where(K.c.id == key.id, K.c.revoked_at.is_(None))
                .values(revoked_at=now, updated_at=now)
            )
        return self.require(key.id)

    def set_team(self, team_id: str, spec: TeamSpec) -> None:
        """Create or change a team's shared budget and limits."""
        with self.engine.begin() as conn:
            self._ensure_team(conn, team_id)
            values = _limit_values(spec, spec.model_fields_set)
            if values:
                conn.execute(T.update().where(T.c.id == team_id).values(**values))

    # -- money --------------------------------------------------------------------------
    def over_soft_alert(self, key_ids: Sequence[str]) -> list[KeyInfo]:
        """The keys among these whose spend in the period reached their soft alert."""
        out = []
        for key_id in key_ids:
            key = self.get(key_id)
            lim = key.limits if key is not None else None
            if key is None or lim is None or lim.soft_alert is None or lim.budget_nusd is None:
                continue
            spent = self.spend(key_id).get("spent_usd", 0.0)
            if spent >= lim.soft_alert * lim.budget_nusd / 1e9:
                out.append(key)
        return out

    def record_usage(self, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            with self.engine.begin() as conn:
                conn.execute(U.insert(), list(rows))

    def spend(self, key_id: str) -> dict[str, Any]:
        """A key's spend: its counters, and usage by model and by router."""
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(K.c.spent_nusd, K.c.reserved_nusd, K.c.period, K.c.period_start).where(
                    K.c.id == key_id
                )
            ).first()
            out: dict[str, Any] = {}
            if row is not None:
                fresh = row.spent_nusd if row.period_start >= period_start(row.period) else 0
                out = {"spent_usd": fresh / 1e9, "reserved_usd": row.reserved_nusd / 1e9}
            for column in ("model", "router"):
                col = U.c[column]
                rows = conn.execute(
                    sa.select(
                        col,
                        sa.func.count(),
                        sa.func.sum(U.c.cost_nusd),
                        sa.func.sum(U.c.input_tokens),
                        sa.func.sum(U.c.output_tokens),
                    )
                    .where(U.c.key_id == key_id)
                    .group_by(col)
                ).all()
                out[f"by_{column}"] = {
                    str(r[0]): {
                        "requests": int(r[1]),
                        "cost_usd": int(r[2] or 0) / 1e9,
                        "input_tokens": int(r[3] or 0),
                        "output_tokens": int(r[4] or 0),
                    }
                    for r in rows
                    if r[0] is not None
                }
        return out

    def spend_by_team(self) -> dict[str, float]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(U.c.team_id, sa.func.sum(U.c.cost_nusd))
                .where(U.c.team_id.is_not(None))
                .group_by(U.c.team_id)
            ).all()
        return {str(r[0]): int(r[1] or 0) / 1e9 for r in rows}

    def owner(self, request_id: str) -> str | None:
        """The key that made a trace (None when unknown: made with auth off)."""
        with self.engine.connect() as conn:
            found = conn.scalar(sa.select(U.c.key_id).where(U.c.request_id == request_id))
        return str(found) if found is not None else None

    def own_traces(self, key_id: str, limit: int, offset: int) -> list[str]:
        with self.engine.connect() as conn:
            return [
                str(r)
                for r in conn.scalars(
                    sa.select(U.c.request_id)
                    .where(U.c.key_id == key_id)
                    .order_by(U.c.created_at.desc())
                    .limit(limit)
                    .offset(offset)
                )
            ]

    # -- shared rate counters -----------------------------------------------------------
