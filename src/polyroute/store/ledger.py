"""Budgets and shared rate counters in the store: each decision one conditional statement.

A reservation is a conditional ``UPDATE ... SET reserved = reserved + :amount WHERE spent +
reserved + :amount <= budget``: the database checks and adds in one step, so the check can
never go stale between processes (no read-modify-write). A lease (a slice of the budget a
gateway process then spends request by request, :mod:`polyroute.gateway.leases`) is the same
statement, asking for more room than it takes. A key and its team are updated in
one transaction, so one that does not fit leaves the other untouched. Settlements only add
and subtract, so many can be written together. Calls are blocking: run them off the loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from polyroute.auth.budget import period_start
from polyroute.store import schema

K = schema.api_keys
T = schema.teams
U = schema.key_usage
W = schema.rate_windows


@dataclass(frozen=True, slots=True)
class Charge:
    """One subject's (key or team) share of a reservation or settlement."""

    table: sa.Table
    id: str
    period: str


def fresh_spent(t: sa.Table, start: int | sa.BindParameter[int]) -> sa.ColumnElement[int]:
    """Spent in the current period: a row last charged in an earlier period counts 0."""
    return sa.case((t.c.period_start < start, 0), else_=t.c.spent_nusd)


def _reserve_statement(t: sa.Table) -> sa.Update:
    """Reserve ``b_amount`` if ``b_need`` (≥ it) fits what is left of the budget."""
    start, amount, need = (
        sa.bindparam("b_start", type_=sa.BigInteger),
        sa.bindparam("b_amount", type_=sa.BigInteger),
        sa.bindparam("b_need", type_=sa.BigInteger),
    )
    fresh = fresh_spent(t, start)
    return (
        t.update()
        .where(
            t.c.id == sa.bindparam("b_id"),
            sa.or_(t.c.budget_nusd.is_(None), fresh + t.c.reserved_nusd + need <= t.c.budget_nusd),
        )
        .values(
            spent_nusd=fresh,
            period_start=sa.case((t.c.period_start < start, start), else_=t.c.period_start),
            reserved_nusd=t.c.reserved_nusd + amount,
        )
    )


# Built once with bound parameters, so SQLAlchemy compiles each a single time.
_RESERVE = {t.name: _reserve_statement(t) for t in (K, T)}
_UNRESERVE = {
    t.name: t.update()
    .where(t.c.id == sa.bindparam("b_id"))
    .values(reserved_nusd=t.c.reserved_nusd - sa.bindparam("b_amount", type_=sa.BigInteger))
    for t in (K, T)
}


class Ledger:
    """Reservations, settlements and per-minute counters over one engine."""

    engine: sa.Engine
    _compiled: dict[tuple[str, str], tuple[str, list[str] | None, dict[str, Any]]]

    def reserve(self, charges: Sequence[Charge], amount: int) -> bool:
        """Add ``amount`` to each subject's reservation if it fits every budget; all or none."""
        return self.reserve_many([(charges, amount)])[0]

    def reserve_many(self, asks: Sequence[tuple[Sequence[Charge], int]]) -> list[bool]:
        """Several reservations in one transaction, each decided on its own, in order.

        Each is one conditional update per subject; a request whose team does not fit has
        its key's share taken back in the same transaction. Batching only saves commits:
        every decision is still the database's, so it stays exact across processes.
        """
        out: list[bool] = []
        with self.engine.begin() as conn:
            # The driver's own cursor, in SQLAlchemy's transaction: these statements are the
            # hot path's only database work, and SQLAlchemy's per-execute bookkeeping would
            # cost more than SQLite takes to run them.
            cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            try:
                for charges, amount in asks:
                    taken: list[Charge] = []
                    for c in charges:
                        params = {
                            "b_id": c.id,
                            "b_amount": amount,
                            "b_need": amount,
                            "b_start": period_start(c.period),
                        }
                        sql, args = self._driver_sql("reserve", c.table, params)
                        cursor.execute(sql, args)
                        if cursor.rowcount != 1:
                            break
                        taken.append(c)
                    ok = len(taken) == len(charges)
                    if not ok:
                        for c in taken:
                            undo = {"b_id": c.id, "b_amount": amount}
                            cursor.execute(*self._driver_sql("unreserve", c.table, undo))
                    out.append(ok)
            finally:
                cursor.close()
        return out

    def lease(self, charge: Charge, amount: int, room: int) -> bool:
        """Reserve ``amount`` for a lease if ``room`` (≥ ``amount``) is left unreserved in
        the subject's budget (or it has none); one conditional update, like a reservation."""
        params = {
            "b_id": charge.id,
            "b_amount": amount,
            "b_need": room,
            "b_start": period_start(charge.period),
        }
        with self.engine.begin() as conn:
            cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            try:
                cursor.execute(*self._driver_sql("reserve", charge.table, params))
                return bool(cursor.rowcount == 1)
            finally:
                cursor.close()

    def unreserve(self, charge: Charge, amount: int) -> None:
        """Give back ``amount`` of a subject's reservation (a lease's unused part)."""
        with self.engine.begin() as conn:
            cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            try:
                undo = {"b_id": charge.id, "b_amount": amount}
                cursor.execute(*self._driver_sql("unreserve", charge.table, undo))
            finally:
                cursor.close()

    def _driver_sql(self, kind: str, table: sa.Table, params: dict[str, Any]) -> tuple[str, Any]:
        """A statement compiled once for this engine's driver, and its arguments."""
        key = (kind, table.name)
        compiled = self._compiled.get(key)
        if compiled is None:
            stmt = (_RESERVE if kind == "reserve" else _UNRESERVE)[table.name]
            done = stmt.compile(dialect=self.engine.dialect)
            order = list(done.positiontup) if done.positional and done.positiontup else None
            # Literals (the 0 of a reset period) are bound parameters too: keep their values.
            fixed = {k: v for k, v in done.params.items() if not k.startswith("b_")}
            compiled = self._compiled[key] = (done.string, order, fixed)
        sql, order, fixed = compiled
        merged = {**fixed, **params}
        return sql, (tuple(merged[n] for n in order) if order is not None else merged)

    def remaining(self, charges: Sequence[Charge]) -> int | None:
        """The least budget left (unreserved) over the subjects; None when none has one."""
        least: int | None = None
        with self.engine.connect() as conn:
            for c in charges:
                start = period_start(c.period)
                row = conn.execute(
                    sa.select(
                        c.table.c.budget_nusd,
                        fresh_spent(c.table, start).label("spent"),
                        c.table.c.reserved_nusd,
                    ).where(c.table.c.id == c.id)
                ).first()
                if row is None or row.budget_nusd is None:
                    continue
                left = max(0, row.budget_nusd - row.spent - row.reserved_nusd)
                least = left if least is None else min(least, left)
        return least

    def settle_many(
        self,
        deltas: dict[Charge, tuple[int, int]],
        usage: Sequence[dict[str, Any]],
        window_tokens: dict[tuple[str, int], int] | None = None,
    ) -> None:
        """Settle many requests at once: per subject, (reservations to drop, cost to add);
        then their usage rows. One transaction; each update still adds, never overwrites."""
        with self.engine.begin() as conn:
            for c, (reserved, cost) in deltas.items():
                start = period_start(c.period)
                fresh = fresh_spent(c.table, start)
                conn.execute(
                    c.table.update()
                    .where(c.table.c.id == c.id)
                    .values(
                        spent_nusd=fresh + cost,
                        period_start=sa.case(
                            (c.table.c.period_start < start, start),
                            else_=c.table.c.period_start,
                        ),
                        reserved_nusd=c.table.c.reserved_nusd - reserved,
                    )
                )
            if usage:
                conn.execute(U.insert(), list(usage))
            for (subject, window), tokens in (window_tokens or {}).items():
                conn.execute(
                    W.update()
                    .where(W.c.subject == subject, W.c.window == window)
                    .values(tokens=W.c.tokens + tokens)
                )

    def hit_window(
        self, subject: str, window: int, rpm: int | None, tpm: int | None
    ) -> tuple[int, int] | None:
        """Count one request in ``subject``'s minute if it has room under ``rpm`` and
        ``tpm`` (tokens already used); return the minute's (requests, tokens) before it, or
        None with nothing counted. One conditional update: exact across replicas."""
        cond: list[sa.ColumnElement[bool]] = [W.c.subject == subject, W.c.window == window]
        room = list(cond)
        if rpm is not None:
            room.append(W.c.requests < rpm)
        if tpm is not None:
            room.append(W.c.tokens < tpm)
        bump = W.update().where(*room).values(requests=W.c.requests + 1)
        with self.engine.begin() as conn:
            if conn.execute(bump).rowcount == 1:
                return (0, 0)
            found = conn.execute(sa.select(W.c.requests, W.c.tokens).where(*cond)).first()
            if found is not None:
                return None  # the minute is full
            try:
                with conn.begin_nested():
                    conn.execute(
                        W.insert().values(subject=subject, window=window, requests=1, tokens=0)
                    )
            except sa.exc.IntegrityError:  # another replica made the row first: try once more
                return (0, 0) if conn.execute(bump).rowcount == 1 else None
            conn.execute(W.delete().where(W.c.subject == subject, W.c.window < window - 2))
            return (0, 0)

    def window_usage(self, subject: str, window: int) -> tuple[int, int]:
        """(requests, tokens) counted in ``subject``'s minute."""
        with self.engine.connect() as conn:
            found = conn.execute(
                sa.select(W.c.requests, W.c.tokens).where(
                    W.c.subject == subject, W.c.window == window
                )
            ).first()
        return (int(found[0]), int(found[1])) if found is not None else (0, 0)
