"""Opening the database and bringing its schema up to date."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic.migration import MigrationContext
from alembic.operations import Operations

from polyroute.errors import ConfigError
from polyroute.store import schema
from polyroute.store.learning import LearningStore
from polyroute.store.migrations import MIGRATIONS
from polyroute.store.traces import TraceStore

#: The PostgreSQL advisory lock that serialises migrations ("poly" in ASCII).
_MIGRATE_LOCK = 0x706F6C79


class Store(TraceStore, LearningStore):
    """A SQLAlchemy engine with polyroute's schema. Calls are blocking: run them off the loop.

    Traces (:class:`~polyroute.store.traces.TraceStore`), feedback and router state
    (:class:`~polyroute.store.learning.LearningStore`) are read and written through it.
    """

    def __init__(self, url: str) -> None:
        try:
            parsed = sa.make_url(url)
        except sa.exc.ArgumentError:
            raise ConfigError(
                f"store.database_url {url!r} is not a database URL; "
                f"use e.g. sqlite:///path/to/polyroute.db or postgresql+psycopg://user@host/db"
            ) from None
        if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        self.url = url
        try:
            # pre-ping: a PostgreSQL server that restarted costs one retry, not an error.
            if parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:"):
                # One in-memory database for every thread (migrations, recorder, dashboard),
                # not one per thread.
                self.engine = sa.create_engine(
                    parsed, poolclass=sa.StaticPool, connect_args={"check_same_thread": False}
                )
            else:
                self.engine = sa.create_engine(
                    parsed, pool_pre_ping=parsed.get_backend_name() != "sqlite"
                )
        except (ModuleNotFoundError, sa.exc.NoSuchModuleError) as e:
            driver = getattr(e, "name", None) or parsed.drivername
            raise ConfigError(
                f"store.database_url needs the {driver!r} driver, which is not installed; "
                f"use sqlite:///PATH, or install polyroute[postgres] and use a "
                f"postgresql+psycopg:// URL"
            ) from None
        if parsed.get_backend_name() == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)

    def migrate(self) -> list[str]:
        """Apply the migrations not yet applied, in order; return their names."""
        applied_now: list[str] = []
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # Replicas (Ray Serve, a Deployment) start together on one database: one
                # migrates, the others wait here and then find it done. Released at commit.
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATE_LOCK})
            schema.schema_migrations.create(conn, checkfirst=True)
            done = set(conn.scalars(sa.select(schema.schema_migrations.c.name)))
            ops = Operations(MigrationContext.configure(conn))
            for name, migrate in MIGRATIONS:
                if name in done:
                    continue
                migrate(ops)
                conn.execute(
                    schema.schema_migrations.insert().values(
                        name=name, applied_at=datetime.now(UTC)
                    )
                )
                applied_now.append(name)
        return applied_now

    def applied_migrations(self) -> list[str]:
        with self.engine.connect() as conn:
            return list(
                conn.scalars(
                    sa.select(schema.schema_migrations.c.name).order_by(
                        schema.schema_migrations.c.name
                    )
                )
            )

    def insert_requests(self, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            with self.engine.begin() as conn:
                conn.execute(schema.requests.insert(), list(rows))

    def recent_requests(self, limit: int = 100) -> list[dict[str, Any]]:
        query = (
            sa.select(schema.requests).order_by(schema.requests.c.created_at.desc()).limit(limit)
        )
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def dispose(self) -> None:
        self.engine.dispose()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL lets the dashboard read while the recorder writes.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()
