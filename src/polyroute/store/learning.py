"""Feedback and online routers' state in the store.

Feedback rows attach to a trace id (``requests.id``) without a foreign key: feedback may
arrive before the recorder has written its trace. A router's state is its
``state_dict()`` as JSON, one row per router name. Several gateway processes share a row:
:meth:`LearningStore.update_router_states` reads and rewrites it in one transaction that
keeps the others out (``BEGIN IMMEDIATE`` on SQLite, ``SELECT ... FOR UPDATE`` on
PostgreSQL), so that each adds what it learned and none overwrites another's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa

from polyroute.store import schema
from polyroute.store.traces import utc

_F, _S = schema.feedback, schema.router_state


class LearningStore:
    """The feedback and router-state queries of :class:`~polyroute.store.db.Store`."""

    engine: sa.Engine

    def insert_feedback(
        self,
        *,
        request_id: str,
        score: float,
        kind: str,
        label: str | None = None,
        source: str | None = None,
        comment: str | None = None,
        created_at: datetime | None = None,
    ) -> dict[str, Any]:
        """Store one feedback row and return it, with its id."""
        row = {
            "request_id": request_id,
            "created_at": utc(created_at or datetime.now(UTC)),
            "score": score,
            "kind": kind,
            "label": label,
            "source": source,
            "comment": comment,
        }
        with self.engine.begin() as conn:
            result = conn.execute(_F.insert().values(**row))
            key = result.inserted_primary_key
        assert key is not None
        return {"id": int(key[0]), **row}

    def feedback_count(self, request_id: str) -> int:
        """How much feedback a trace has had."""
        query = sa.select(sa.func.count()).select_from(_F).where(_F.c.request_id == request_id)
        with self.engine.connect() as conn:
            return int(conn.scalar(query) or 0)

    def load_router_states(self) -> dict[str, tuple[str, dict[str, Any]]]:
        """Router name → (kind, state) for every saved router."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(_S.c.router, _S.c.kind, _S.c.state)).all()
        return {r.router: (r.kind, orjson.loads(r.state)) for r in rows}

    def save_router_states(self, states: Mapping[str, tuple[str, Mapping[str, Any]]]) -> None:
        """Replace the saved state of each router in ``states`` (name → (kind, state))."""
        if not states:
            return
        now = datetime.now(UTC)
        rows = [
            {
                "router": name,
                "kind": kind,
                "state": orjson.dumps(state, option=orjson.OPT_SERIALIZE_NUMPY).decode(),
                "updated_at": now,
            }
            for name, (kind, state) in states.items()
        ]
        # Delete then insert in one transaction: the same on SQLite and PostgreSQL.
        with self.engine.begin() as conn:
            conn.execute(_S.delete().where(_S.c.router.in_(list(states))))
            conn.execute(_S.insert(), rows)

    def update_router_states(
        self,
        names: list[str],
        change: Callable[
            [str, tuple[str, dict[str, Any]] | None], tuple[str, dict[str, Any]] | None
        ],
    ) -> dict[str, tuple[str, dict[str, Any]]]:
        """Read, change and write the states of ``names`` in one transaction; the states after.

        ``change(name, saved)`` is given the saved (kind, state), None when there is none,
        and returns the (kind, state) to store, or None to leave the row as it is. No other
        process changes these rows between the read and the write. A row another process
        inserted meanwhile (PostgreSQL) makes the whole transaction run again.
        """
        for attempt in range(5):
            try:
                return self._update_router_states(names, change)
            except sa.exc.IntegrityError:
                if attempt == 4:
                    raise
        raise AssertionError("unreachable")

    def _update_router_states(
        self,
        names: list[str],
        change: Callable[
            [str, tuple[str, dict[str, Any]] | None], tuple[str, dict[str, Any]] | None
        ],
    ) -> dict[str, tuple[str, dict[str, Any]]]:
        after: dict[str, tuple[str, dict[str, Any]]] = {}
        with self.engine.begin() as conn:
            if conn.dialect.name == "sqlite":
                conn.exec_driver_sql("BEGIN IMMEDIATE")  # the write lock before the read
            query = sa.select(_S.c.router, _S.c.kind, _S.c.state).where(_S.c.router.in_(names))
            rows = conn.execute(query.with_for_update()).all()
            saved = {r.router: (r.kind, orjson.loads(r.state)) for r in rows}
            now = datetime.now(UTC)
            for name in names:
                new = change(name, saved.get(name))
                if new is None:
                    if name in saved:
                        after[name] = saved[name]
                    continue
                kind, state = new
                text = orjson.dumps(state, option=orjson.OPT_SERIALIZE_NUMPY).decode()
                values = {"kind": kind, "state": text, "updated_at": now}
                if name in saved:
                    conn.execute(_S.update().where(_S.c.router == name).values(**values))
                else:
                    conn.execute(_S.insert().values(router=name, **values))
                after[name] = (kind, dict(state))
        return after
