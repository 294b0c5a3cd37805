"""Traces in the store: writing requests with their attempts, reading them back, purging.

A trace is one ``requests`` row (with its decision and, optionally, its text), the
``attempts`` rows of its upstream tries and the ``feedback`` rows given for it. Times come
back timezone-aware in UTC from SQLite and PostgreSQL alike; JSON columns come back decoded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from polyroute.store import schema

_R, _A, _F = schema.requests, schema.attempts, schema.feedback
#: Columns a listing leaves out: the text can be large; :meth:`TraceStore.get_trace` has it.
_TEXT_COLUMNS = ("request_body", "response_text")
_MAX_LIMIT = 1000
#: Rows deleted per transaction when purging, so that a purge never holds a long lock.
_PURGE_CHUNK = 5000


def utc(value: datetime) -> datetime:
    """``value`` as an aware UTC datetime (SQLite hands naive ones back)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _row(mapping: Any) -> dict[str, Any]:
    out = dict(mapping)
    for key, value in out.items():
        if isinstance(value, datetime):
            out[key] = utc(value)
    for key in ("decision", "request_body"):
        if isinstance(out.get(key), str):
            out[key] = orjson.loads(out[key])
    return out


def _sqlite_datetime(value: datetime) -> str:
    return value.isoformat(sep=" ", timespec="microseconds")[:26]


class _PreparedInsert:
    """One table's INSERT that skips rows already stored, compiled once, run as one executemany.

    The writer stores a batch per transaction many times a second: compiling the statement
    and building SQLAlchemy's parameters row by row cost more than SQLite's own work. The
    column types still convert the values (e.g. times to SQLite's text form), so rows are
    stored exactly as ``conn.execute(table.insert(), rows)`` would store them. A row whose
    key is stored already is skipped (``ON CONFLICT DO NOTHING``): replaying the journal
    after a crash must not duplicate, nor fail on, what was written before the crash.
    """

    def __init__(self, table: sa.Table, dialect: sa.Dialect) -> None:
        self.columns = tuple(c.name for c in table.c)
        statement: Any = table.insert()
        if dialect.name == "sqlite":
            statement = sqlite_insert(table).on_conflict_do_nothing()
        elif dialect.name == "postgresql":
            statement = postgresql_insert(table).on_conflict_do_nothing()
        compiled = statement.compile(dialect=dialect, column_keys=list(self.columns))
        self.sql = compiled.string
        # The parameter names in the order the statement wants them (positional styles), or
        # all of them (named styles, where the driver takes a mapping).
        self.positional = compiled.positiontup is not None
        names = list(compiled.positiontup) if compiled.positiontup else list(compiled.binds)
        self.names = tuple(names)
        where = {c: i for i, c in enumerate(self.columns)}
        self.order = tuple(where[n] for n in names)
        self.identity = self.order == tuple(range(len(self.columns)))
        binds = compiled.binds
        converters = []
        for i, name in enumerate(names):
            kind = binds[name].type
            if dialect.name == "sqlite" and isinstance(kind, sa.DateTime):
                # SQLAlchemy's own formats field by field in Python, the writer's largest
                # cost per row; isoformat writes the same text ("YYYY-MM-DD HH:MM:SS.ffffff").
                converters.append((i, _sqlite_datetime))
            elif (proc := kind.dialect_impl(dialect).bind_processor(dialect)) is not None:
                converters.append((i, proc))
        self.converters = tuple(converters)

    def execute(self, conn: sa.Connection, rows: Sequence[Sequence[Any]]) -> None:
        """Insert ``rows``, each a sequence of values in the table's column order."""
        names, converters, order = self.names, self.converters, self.order
        params: list[Any] = []
        identity = self.identity
        for row in rows:
            values = list(row) if identity else [row[i] for i in order]
            for i, convert in converters:
                if values[i] is not None:
                    values[i] = convert(values[i])
            if self.positional:
                params.append(tuple(values))
            else:
                params.append(dict(zip(names, values, strict=True)))
        conn.exec_driver_sql(self.sql, params)


class TraceStore:
    """The trace queries of :class:`~polyroute.store.db.Store` (blocking: call off the loop)."""

    engine: sa.Engine
    _inserts: tuple[_PreparedInsert, _PreparedInsert]

    def insert_traces(
        self, requests: Sequence[dict[str, Any]], attempts: Sequence[dict[str, Any]] = ()
    ) -> None:
        """Write request rows and their attempt rows (mappings) in one transaction.

        A column a row leaves out is stored as NULL; a trace stored already is skipped.
        """
        r, a = self._prepared_inserts()
        self.insert_trace_values(
            [[row.get(c) for c in r.columns] for row in requests],
            [[row.get(c) for c in a.columns] for row in attempts],
        )

    def insert_trace_values(
        self, requests: Sequence[Sequence[Any]], attempts: Sequence[Sequence[Any]] = ()
    ) -> None:
        """Write request rows and attempt rows, values in column order, in one transaction.

        Rows whose key is stored already are skipped, so a replay never duplicates.
        """
        if not requests and not attempts:
            return
        if self.engine.dialect.driver == "psycopg":
            try:  # straight in: rows the database has already are rare (a replay's)
                with self.engine.begin() as conn:
                    self._copy_traces(conn, requests, attempts, staged=False)
            except sa.exc.IntegrityError:
                with self.engine.begin() as conn:
                    self._copy_traces(conn, requests, attempts, staged=True)
            return
        inserts = self._prepared_inserts()
        with self.engine.begin() as conn:
            if requests:
                inserts[0].execute(conn, requests)
            if attempts:
                inserts[1].execute(conn, attempts)

    def _copy_traces(
        self,
        conn: sa.Connection,
        requests: Sequence[Sequence[Any]],
        attempts: Sequence[Sequence[Any]],
        *,
        staged: bool,
    ) -> None:
        """PostgreSQL: COPY the rows in, one statement per table and batch.

        A row-by-row executemany costs PostgreSQL a statement per row (~5,000 rows/s here);
        COPY streams the rows in PostgreSQL's own format. ``staged`` copies into temporary
        tables first and inserts from them with ``ON CONFLICT DO NOTHING``, for a batch in
        which some rows are stored already.
        """
        dbapi_error = conn.dialect.loaded_dbapi.Error
        try:
            self._copy_rows(conn, requests, attempts, staged)
        except dbapi_error as e:
            # As SQLAlchemy would raise it (OperationalError, IntegrityError, DataError, ...):
            # the writer tells a database that is down from a row that is bad by that class.
            raise sa.exc.DBAPIError.instance("COPY", None, e, dbapi_error) from e

    @staticmethod
    def _copy_rows(
        conn: sa.Connection,
        requests: Sequence[Sequence[Any]],
        attempts: Sequence[Sequence[Any]],
        staged: bool,
    ) -> None:
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        for table, rows in ((_R, requests), (_A, attempts)):
            if not rows:
                continue
            columns = ", ".join(c.name for c in table.c)
            if not staged:
                with cursor.copy(f"COPY {table.name} ({columns}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
                continue
            staging = f"polyroute_in_{table.name}"
            cursor.execute(
                f"CREATE TEMPORARY TABLE IF NOT EXISTS {staging} "
                f"(LIKE {table.name} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
            )
            with cursor.copy(f"COPY {staging} ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            cursor.execute(
                f"INSERT INTO {table.name} ({columns}) SELECT {columns} FROM {staging} "
                f"ON CONFLICT DO NOTHING"
            )

    def _prepared_inserts(self) -> tuple[_PreparedInsert, _PreparedInsert]:
        prepared: tuple[_PreparedInsert, _PreparedInsert] | None = getattr(self, "_inserts", None)
        if prepared is None:
            dialect = self.engine.dialect
            prepared = (_PreparedInsert(_R, dialect), _PreparedInsert(_A, dialect))
            self._inserts = prepared
        return prepared

    def get_trace(self, trace_id: str) -> dict[str, Any] | None:
        """The request row with ``attempts`` and ``feedback`` lists; None if no such trace."""
        with self.engine.connect() as conn:
            found = conn.execute(sa.select(_R).where(_R.c.id == trace_id)).first()
            if found is None:
                return None
            trace = _row(found._mapping)
            tries = conn.execute(sa.select(_A).where(_A.c.request_id == trace_id).order_by(_A.c.n))
            trace["attempts"] = [_row(a._mapping) for a in tries]
            given = conn.execute(sa.select(_F).where(_F.c.request_id == trace_id).order_by(_F.c.id))
            trace["feedback"] = [_row(f._mapping) for f in given]
        return trace

    def list_traces(
        self,
        *,
        model: str | None = None,
        router: str | None = None,
        status: int | None = None,
        errors: bool | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        """Traces newest first, without their text.

        ``model`` is the model that answered, ``status`` an exact HTTP status, ``errors``
        True for failed requests (status >= 400) and False for successful ones; ``since`` is
        inclusive and ``until`` exclusive. ``limit`` is capped at 1000.
        """
        columns = [c for c in _R.c if c.name not in _TEXT_COLUMNS]
        query = sa.select(*columns).where(
            *self._filters(model, router, status, errors, since, until)
        )
        query = query.order_by(_R.c.created_at.desc(), _R.c.id.desc())
        query = query.limit(max(0, min(limit, _MAX_LIMIT))).offset(max(0, offset))
        with self.engine.connect() as conn:
            return [_row(r._mapping) for r in conn.execute(query)]

    def count_traces(
        self,
        *,
        model: str | None = None,
        router: str | None = None,
        status: int | None = None,
        errors: bool | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> int:
        """How many traces :meth:`list_traces` would page through with these filters."""
        query = sa.select(sa.func.count()).select_from(_R)
        query = query.where(*self._filters(model, router, status, errors, since, until))
        with self.engine.connect() as conn:
            return int(conn.scalar(query) or 0)

    @staticmethod
    def _filters(
        model: str | None,
        router: str | None,
        status: int | None,
        errors: bool | None,
        since: datetime | None,
        until: datetime | None,
    ) -> list[sa.ColumnElement[bool]]:
        where: list[sa.ColumnElement[bool]] = []
        if model is not None:
            where.append(_R.c.model == model)
        if router is not None:
            where.append(_R.c.router == router)
        if status is not None:
            where.append(_R.c.status == status)
        if errors is not None:
            where.append(_R.c.status >= 400 if errors else _R.c.status < 400)
        # Stored times are UTC (SQLite keeps them without a zone): compare in UTC.
        if since is not None:
            where.append(_R.c.created_at >= utc(since))
        if until is not None:
            where.append(_R.c.created_at < utc(until))
        return where

    def trace_summary(self, trace_id: str) -> dict[str, Any] | None:
        """What feedback needs of a trace: router, model, status and request body (or None)."""
        query = sa.select(_R.c.id, _R.c.router, _R.c.model, _R.c.status, _R.c.request_body)
        with self.engine.connect() as conn:
            found = conn.execute(query.where(_R.c.id == trace_id)).first()
        return None if found is None else _row(found._mapping)

    def purge_before(self, cutoff: datetime, *, stop: Callable[[], bool] = lambda: False) -> int:
        """Delete the traces created before ``cutoff``, their attempts and feedback.

        Returns how many traces went. Works in chunks, one short transaction each, so that
        the recorder is never locked out for long; ``stop()`` true ends it between chunks.
        """
        cutoff = utc(cutoff)
        deleted = 0
        while not stop():
            with self.engine.begin() as conn:
                ids = list(
                    conn.scalars(
                        sa.select(_R.c.id).where(_R.c.created_at < cutoff).limit(_PURGE_CHUNK)
                    )
                )
                if not ids:
                    # Feedback is never older than its trace: what is left before the
                    # cutoff belongs to traces that were never written (dropped records).
                    conn.execute(_F.delete().where(_F.c.created_at < cutoff))
                    return deleted
                conn.execute(_A.delete().where(_A.c.request_id.in_(ids)))
                conn.execute(_F.delete().where(_F.c.request_id.in_(ids)))
                conn.execute(_R.delete().where(_R.c.id.in_(ids)))
            deleted += len(ids)
        return deleted
