"""Budgets and shared rate counters in the store: each decision one conditional statement.

A reservation is a conditional ``UPDATE ... SET reserved = reserved + :amount WHERE spent +
reserved + :amount <= budget``: the database checks and adds in one step, so the check can
never go stale between processes (no read-modify-write). A key and its team are updated in
one transaction, so one that does not fit leaves the other untouched. Settlements only add
and subtract, so many can be written together. Calls are blocking: run them off the loop.

A reservation made for a request is also held as rows of ``reservations`` (one per subject,
with an expiry), written in the same transaction. Its settlement deletes them; when they
are gone already, :meth:`Ledger.expire_holds` charged them (their gateway was killed, or
outlived the expiry), and the settlement is skipped. ``expire_holds``, run by every
gateway, charges each expired hold at its reservation (the upstream may have billed it:
never less) and records it as a usage row of status 0, so that a replica that died
mid-request cannot keep a budget reserved forever, nor spend without a trace in the usage.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from polyroute.auth.budget import period_start
from polyroute.store import schema

K = schema.api_keys
T = schema.teams
U = schema.key_usage
W = schema.rate_windows
H = schema.reservations
_TABLES = {t.name: t for t in (K, T)}
#: A request's status in the usage rows when its hold expired: no answer is known.
EXPIRED_STATUS = 0


@dataclass(frozen=True, slots=True)
class Charge:
    """One subject's (key or team) share of a reservation or settlement."""

    table: sa.Table
    id: str
    period: str


def fresh_spent(t: sa.Table, start: int | sa.BindParameter[int]) -> sa.ColumnElement[int]:
    """Spent in the current period: a row last charged in an earlier period counts 0."""
    return sa.case((t.c.period_start < start, 0), else_=t.c.spent_nusd)


def _charge(conn: sa.Connection, c: Charge, reserved: int, cost: int) -> None:
    """Drop ``reserved`` from a subject's reservation and add ``cost`` to its spend (in the
    current period: one that has ended starts again from zero). Only adds: never stale."""
    start = period_start(c.period)
    t = c.table
    conn.execute(
        t.update()
        .where(t.c.id == c.id)
        .values(
            spent_nusd=fresh_spent(t, start) + cost,
            period_start=sa.case((t.c.period_start < start, start), else_=t.c.period_start),
            reserved_nusd=t.c.reserved_nusd - reserved,
        )
    )


def _reserve_statement(t: sa.Table) -> sa.Update:
    start, amount = (
        sa.bindparam("b_start", type_=sa.BigInteger),
        sa.bindparam("b_amount", type_=sa.BigInteger),
    )
    fresh = fresh_spent(t, start)
    return (
        t.update()
        .where(
            t.c.id == sa.bindparam("b_id"),
            sa.or_(
                t.c.budget_nusd.is_(None), fresh + t.c.reserved_nusd + amount <= t.c.budget_nusd
            ),
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
_HOLD = H.insert().values(
    request_id=sa.bindparam("b_request"),
    subject_table=sa.bindparam("b_table"),
    subject_id=sa.bindparam("b_id"),
    period=sa.bindparam("b_period"),
    amount_nusd=sa.bindparam("b_amount", type_=sa.BigInteger),
    expires_at=sa.bindparam("b_expires", type_=sa.BigInteger),
)

# One statement for any number of ids (an expanding parameter): compiled once, cached.
_TAKE_HOLDS = (
    H.delete()
    .where(H.c.request_id.in_(sa.bindparam("ids", expanding=True)))
    .returning(H.c.request_id)
)


@dataclass(frozen=True, slots=True)
class Hold:
    """A request's settlement: its subjects, what it reserved and what it cost."""

    charges: tuple[Charge, ...]
    reserved: int
    cost: int


class Ledger:
    """Reservations, settlements and per-minute counters over one engine."""

    engine: sa.Engine
    _compiled: dict[tuple[str, str], tuple[str, list[str] | None, dict[str, Any]]]

    def reserve(self, charges: Sequence[Charge], amount: int) -> bool:
        """Add ``amount`` to each subject's reservation if it fits every budget; all or none."""
        return self.reserve_many([(charges, amount)])[0]

    def reserve_many(
        self,
        asks: Sequence[tuple[Sequence[Charge], int]],
        held_for: Sequence[str] | None = None,
        ttl_s: float = 900.0,
    ) -> list[bool]:
        """Several reservations in one transaction, each decided on its own, in order.

        Each is one conditional update per subject; a request whose team does not fit has
        its key's share taken back in the same transaction. Batching only saves commits:
        every decision is still the database's, so it stays exact across processes.
        With ``held_for`` (a request id per ask), each one granted is held until settled
        (:meth:`settle_many`'s ``holds``) or ``ttl_s`` passes (:meth:`expire_holds`).
        """
        out: list[bool] = []
        holds: list[tuple[str, Any]] = []
        expires = int(time.time() + ttl_s)
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
                    elif held_for is not None:
                        for c in charges:
                            hold = {"b_request": held_for[len(out)], "b_table": c.table.name,
                                    "b_id": c.id, "b_period": c.period, "b_amount": amount,
                                    "b_expires": expires}  # fmt: skip
                            holds.append(self._driver_sql("hold", H, hold))
                    out.append(ok)
                if holds:  # one statement for the batch's holds (they decide nothing)
                    cursor.executemany(holds[0][0], [args for _, args in holds])
            finally:
                cursor.close()
        return out

    def _driver_sql(self, kind: str, table: sa.Table, params: dict[str, Any]) -> tuple[str, Any]:
        """A statement compiled once for this engine's driver, and its arguments."""
        key = (kind, table.name)
        compiled = self._compiled.get(key)
        if compiled is None:
            stmt = (
                _HOLD
                if kind == "hold"
                else (_RESERVE if kind == "reserve" else _UNRESERVE)[table.name]
            )
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
        holds: dict[str, Hold] | None = None,
    ) -> None:
        """Settle many requests at once: per subject, (reservations to drop, cost to add);
        then their usage rows. One transaction; each update still adds, never overwrites.

        ``holds`` are settlements of held reservations, by request id: each is added to the
        deltas if its hold is still there (and deleted), else skipped with its usage row
        (:meth:`expire_holds` charged and recorded it already).
        """
        with self.engine.begin() as conn:
            deltas = dict(deltas)
            present = self._take_holds(conn, list(holds or {}))
            gone = set(holds or {}) - present
            for request_id in present:
                hold = (holds or {})[request_id]
                for c in hold.charges:
                    held, spent = deltas.get(c, (0, 0))
                    deltas[c] = (held + hold.reserved, spent + hold.cost)
            if gone:
                usage = [row for row in usage if row["request_id"] not in gone]
            # In one order (table, id): two replicas settling the same keys cannot deadlock.
            for c in sorted(deltas, key=lambda c: (c.table.name, c.id)):
                _charge(conn, c, *deltas[c])
            if usage:
                conn.execute(U.insert(), list(usage))
            for (subject, window), tokens in (window_tokens or {}).items():
                conn.execute(
                    W.update()
                    .where(W.c.subject == subject, W.c.window == window)
                    .values(tokens=W.c.tokens + tokens)
                )

    def _take_holds(self, conn: sa.Connection, request_ids: list[str]) -> set[str]:
        """Delete these requests' holds; the ids that had one (whoever deletes a hold
        settles it: one ``DELETE ... RETURNING`` per 500, so a sweep cannot slip between)."""
        found: set[str] = set()
        if not self.engine.dialect.delete_returning:
            for request_id in request_ids:
                if conn.execute(H.delete().where(H.c.request_id == request_id)).rowcount:
                    found.add(request_id)
            return found
        for i in range(0, len(request_ids), 500):
            chunk = request_ids[i : i + 500]
            found.update(conn.execute(_TAKE_HOLDS, {"ids": chunk}).scalars())
        return found

    def expire_holds(self, now: float | None = None, limit: int = 500) -> int:
        """Charge up to ``limit`` requests' holds that expired (see the module docstring);
        how many requests were charged. Safe to run in every replica at once: a hold is
        charged by whoever deletes it."""
        at = int(now if now is not None else time.time())
        with self.engine.connect() as conn:
            expired = list(
                conn.scalars(
                    sa.select(H.c.request_id).where(H.c.expires_at < at).distinct().limit(limit)
                )
            )
        charged = 0
        for request_id in expired:
            with self.engine.begin() as conn:
                rows = conn.execute(sa.select(H).where(H.c.request_id == request_id)).all()
                deleted = conn.execute(
                    H.delete().where(H.c.request_id == request_id, H.c.expires_at < at)
                ).rowcount
                if not rows or deleted != len(rows):
                    continue  # another gateway charged it (or it was settled) meanwhile
                subjects = {r.subject_table: r.subject_id for r in rows}
                for r in sorted(rows, key=lambda r: (r.subject_table, r.subject_id)):
                    held = Charge(_TABLES[r.subject_table], r.subject_id, r.period)
                    _charge(conn, held, r.amount_nusd, r.amount_nusd)  # at its reservation
                if "api_keys" in subjects:
                    conn.execute(
                        U.insert().values(
                            request_id=request_id,
                            key_id=subjects["api_keys"],
                            team_id=subjects.get("teams"),
                            created_at=datetime.now(UTC),
                            status=EXPIRED_STATUS,
                            cost_nusd=rows[0].amount_nusd,
                        )
                    )
                charged += 1
        return charged

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
