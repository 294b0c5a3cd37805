"""Feedback and online routers' state in the store.

Feedback rows attach to a trace id (``requests.id``) without a foreign key: feedback may
arrive before the recorder has written its trace. A router's state is its
``state_dict()`` as JSON, one row per router name, replaced on each save.
"""

from __future__ import annotations

from collections.abc import Mapping
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
