"""Budgets and shared rate counters in the store: each decision one conditional statement.

A reservation is a conditional ``UPDATE ... SET reserved = reserved + :amount WHERE spent +
reserved + :amount <= budget``: the database checks and adds in one step, so the check can
never go stale between processes (no read-modify-write). A key and its team are updated in
one transaction, so one that does not fit leaves the other untouched. Settlements only add
and subtract, so many can be written together. Calls are blocking: run them off the loop.

A reservation made for a request is also held as a row of ``holds`` (with an expiry),
written in the same transaction. Its settlement deletes it; when it is gone already,
:meth:`Ledger.expire_holds` charged it (its gateway was killed, or outlived the expiry),
and the settlement is skipped. ``expire_holds``, run by every gateway, charges each expired
hold at its reservation (the upstream may have billed it: never less) and records it as a
usage row of status 0, so that a replica that died mid-request cannot keep a budget
reserved forever, nor spend without a trace in the usage.

The reservation and the settlement are the gateway's per-request work, so they run on the
driver's own cursor with statements compiled once (:class:`_Compiled`): SQLAlchemy's
bookkeeping per execute and per transaction would cost more than SQLite takes to run them.
A caller that makes many (the gateway's store thread) passes the connection it keeps.
"""

from __future__ import annotations

import contextlib
import operator
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from polyroute.auth.budget import period_start
from polyroute.store import schema

K = schema.api_keys
T = schema.teams
U = schema.key_usage
W = schema.rate_windows
H = schema.holds
#: A request's status in the usage rows when its hold expired: no answer is known.
EXPIRED_STATUS = 0
#: Holds deleted by one statement at most (its ids padded to a power of two, so that a few
#: compiled statements serve every batch).
_TAKE_CHUNK = 512


class _HoldsGone(Exception):
    """Some holds a settlement meant to delete were gone (charged by expire_holds)."""


@dataclass(frozen=True, slots=True)
class Charge:
    """One subject's (key or team) share of a reservation or settlement."""

    table: sa.Table
    id: str
    period: str


@dataclass(frozen=True, slots=True)
class Ask:
    """One request's reservation: ``amount`` on every subject in ``charges``, held for
    ``request_id`` (made with the key ``key_id``) until settled or expired."""

    request_id: str
    key_id: str
    charges: tuple[Charge, ...]
    amount: int


@dataclass(frozen=True, slots=True)
class Hold:
    """A request's settlement: its subjects, what it reserved and what it cost."""

    charges: tuple[Charge, ...]
    reserved: int
    cost: int


def fresh_spent(t: sa.Table, start: int | sa.BindParameter[int]) -> sa.ColumnElement[int]:
    """Spent in the current period: a row last charged in an earlier period counts 0."""
    return sa.case((t.c.period_start < start, 0), else_=t.c.spent_nusd)


def _start(period: str) -> int:
    return 0 if period == "total" else period_start(period)


def _big(name: str) -> sa.BindParameter[int]:
    return sa.bindparam(name, type_=sa.BigInteger)


def _reserve_statement(t: sa.Table) -> sa.Update:
    start, amount = _big("b_start"), _big("b_amount")
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


def _charge_statement(t: sa.Table) -> sa.Update:
    """Drop ``b_reserved`` from a subject's reservation and add ``b_cost`` to its spend (in
    the current period: one that has ended starts again from zero). Only adds: never stale."""
    start = _big("b_start")
    return (
        t.update()
        .where(t.c.id == sa.bindparam("b_id"))
        .values(
            spent_nusd=fresh_spent(t, start) + _big("b_cost"),
            period_start=sa.case((t.c.period_start < start, start), else_=t.c.period_start),
            reserved_nusd=t.c.reserved_nusd - _big("b_reserved"),
        )
    )


def _ids(n: int) -> list[sa.BindParameter[str]]:
    return [sa.bindparam(f"b_{i}") for i in range(n)]


def _usage_statement(dialect: str) -> sa.ClauseElement:
    """Usage rows, each written once: a settlement tried again after a commit that was
    reported failed but went through (the connection lost meanwhile) finds its rows there,
    and must not fail on them (``request_id`` is the key) forever."""
    values = {c.name: sa.bindparam(f"b_{c.name}", type_=c.type) for c in U.c}
    if dialect == "postgresql":
        return postgresql.insert(U).values(values).on_conflict_do_nothing()
    if dialect == "sqlite":
        return sqlite.insert(U).values(values).on_conflict_do_nothing()
    return U.insert().values(values)


def _statement(name: str, dialect: str = "") -> sa.ClauseElement:
    """The hot path's statements by name (``kind:table`` or ``kind:count``), all with bound
    parameters named ``b_*``."""
    kind, _, arg = name.partition(":")
    if kind == "hold":
        return H.insert().values({c.name: sa.bindparam(f"b_{c.name}", type_=c.type) for c in H.c})
    if kind == "usage":
        return _usage_statement(dialect)
    if kind == "take":  # ``take:n``: delete n holds (ids padded, see _take_holds)
        return H.delete().where(H.c.request_id.in_(_ids(int(arg)))).returning(H.c.request_id)
    if kind == "drop":  # ``drop:n``: the same, counted only
        return H.delete().where(H.c.request_id.in_(_ids(int(arg))))
    if kind == "take1":
        return H.delete().where(H.c.request_id == sa.bindparam("b_0"))
    table, _, count = arg.partition(":")
    t = schema.metadata.tables[table]
    if kind == "reserve":
        return _reserve_statement(t)
    if kind == "unreserve":
        return (
            t.update()
            .where(t.c.id == sa.bindparam("b_id"))
            .values(reserved_nusd=t.c.reserved_nusd - _big("b_amount"))
        )
    if kind == "charge":
        return _charge_statement(t)
    if kind == "lock":  # ``lock:table:n``: lock n rows, in id order (see _lock_in_order)
        return (
            sa.select(t.c.id).where(t.c.id.in_(_ids(int(count)))).order_by(t.c.id).with_for_update()
        )
    raise KeyError(name)


def _padded(ids: Sequence[str]) -> dict[str, str]:
    """``ids`` as parameters ``b_0 ...`` padded to a power of two with the last id (an ``IN``
    list that repeats one answers the same), so a few compiled statements serve any count."""
    size = 1 << (len(ids) - 1).bit_length()
    return {f"b_{j}": ids[min(j, len(ids) - 1)] for j in range(size)}


class _Compiled:
    """A statement compiled for one driver: its SQL, and how to turn named values into the
    driver's arguments (their order, literals, and the types' conversions, e.g. SQLite's
    datetimes as text)."""

    __slots__ = ("_convert", "_fixed", "_pick", "sql")

    def __init__(self, done: sa.sql.compiler.Compiled, dialect: sa.Dialect) -> None:
        self.sql = done.string
        # Literals (the 0 of a reset period) are bound parameters too: keep their values.
        self._fixed = {k: v for k, v in done.params.items() if not k.startswith("b_")}
        convert = []
        for key, bind in done.binds.items():  # type: ignore[attr-defined]
            process = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if process is not None and key.startswith("b_"):
                convert.append((key, process))
        self._convert = tuple(convert)
        order = done.positiontup if done.positional else None  # type: ignore[attr-defined]
        self._pick = None
        if order:
            pick = operator.itemgetter(*order)
            self._pick = pick if len(order) > 1 else lambda p: (pick(p),)

    def args(self, params: Mapping[str, Any]) -> Any:
        merged = {**self._fixed, **params}
        for name, convert in self._convert:
            merged[name] = convert(merged[name])
        return self._pick(merged) if self._pick is not None else merged


class Ledger:
    """Reservations, settlements and per-minute counters over one engine."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._compiled: dict[str, _Compiled] = {}

    # -- the driver's cursor -------------------------------------------------------------

    def _sql(self, name: str) -> _Compiled:
        compiled = self._compiled.get(name)
        if compiled is None:
            dialect = self.engine.dialect
            statement = _statement(name, dialect.name)
            compiled = _Compiled(statement.compile(dialect=dialect), dialect)
            self._compiled[name] = compiled
        return compiled

    @contextlib.contextmanager
    def _cursor(self, connection: Any | None) -> Iterator[Any]:
        """A driver cursor in a transaction, committed at the end (rolled back on error), on
        ``connection`` (a pool connection the caller keeps) or one from the pool."""
        raw = connection if connection is not None else self.engine.raw_connection()
        cursor = raw.cursor()
        try:
            yield cursor
            raw.commit()
        except BaseException:
            with contextlib.suppress(Exception):
                raw.rollback()
            raise
        finally:
            cursor.close()
            if connection is None:
                raw.close()

    def _execute(self, cursor: Any, name: str, params: Mapping[str, Any]) -> Any:
        c = self._sql(name)
        cursor.execute(c.sql, c.args(params))
        return cursor

    # -- reservations and settlements (the gateway's per-request work) ------------------

    def reserve_many(
        self, asks: Sequence[Ask], ttl_s: float = 900.0, connection: Any | None = None
    ) -> list[bool]:
        """Several reservations in one transaction, each decided on its own, in order, and
        each one granted held until settled (:meth:`settle`) or ``ttl_s`` passes
        (:meth:`expire_holds`).

        Each is one conditional update per subject; a request whose team does not fit has
        its key's share taken back in the same transaction. Batching only saves commits:
        every decision is still the database's, so it stays exact across processes. A batch
        whose asks share their subjects first tries their sum at once: when it fits, each
        ask in turn would have fitted too (amounts are never negative), so all are granted
        with one update per subject.
        """
        with self._cursor(connection) as cursor:
            self._lock_in_order(cursor, asks)
            charges = asks[0].charges if asks else ()
            if len(asks) > 1 and all(ask.charges == charges for ask in asks):
                out = [self._take(cursor, charges, sum(ask.amount for ask in asks))] * len(asks)
            else:
                out = [False] * len(asks)
            if not out or not out[0]:
                out = [self._take(cursor, ask.charges, ask.amount) for ask in asks]
            holds = [self._hold(ask, ttl_s) for ask, ok in zip(asks, out, strict=True) if ok]
            if holds:  # one statement for the batch's holds (they decide nothing)
                cursor.executemany(self._sql("hold").sql, holds)
        return out

    def _take(self, cursor: Any, charges: Sequence[Charge], amount: int) -> bool:
        """Reserve ``amount`` on every subject if it fits each budget; else on none."""
        taken: list[Charge] = []
        for c in charges:
            params = {"b_id": c.id, "b_amount": amount, "b_start": _start(c.period)}
            if self._execute(cursor, f"reserve:{c.table.name}", params).rowcount != 1:
                for t in taken:
                    self._execute(cursor, f"unreserve:{t.table.name}", params | {"b_id": t.id})
                return False
            taken.append(c)
        return True

    def _hold(self, ask: Ask, ttl_s: float) -> Any:
        """The driver's arguments for ``ask``'s row of ``holds``."""
        key = team = None
        for c in ask.charges:
            if c.table is K:
                key = c
            else:
                team = c
        return self._sql("hold").args(
            {
                "b_request_id": ask.request_id,
                "b_key_id": ask.key_id,
                "b_team_id": team.id if team else None,
                "b_key_period": key.period if key else None,
                "b_team_period": team.period if team else None,
                "b_amount_nusd": ask.amount,
                "b_expires_at": int(time.time() + ttl_s),
            }
        )

    def _lock_in_order(self, cursor: Any, asks: Sequence[Ask]) -> None:
        """On PostgreSQL, lock a batch's subjects in one order, (table, id), before its
        updates lock them in the order the requests came: two replicas whose batches share
        keys then cannot each wait for the other's. SQLite locks the whole database."""
        if self.engine.dialect.name == "sqlite":
            return
        subjects = {(c.table.name, c.id) for ask in asks for c in ask.charges}
        if len(subjects) < 2:
            return
        for table in (K, T):
            ids = sorted(i for name, i in subjects if name == table.name)
            for i in range(0, len(ids), _TAKE_CHUNK):
                params = _padded(ids[i : i + _TAKE_CHUNK])
                self._execute(cursor, f"lock:{table.name}:{len(params)}", params).fetchall()

    def settle(
        self,
        holds: Mapping[str, Hold],
        usage: Sequence[Mapping[str, Any]] = (),
        connection: Any | None = None,
    ) -> None:
        """Settle many requests' held reservations (by request id) and write usage rows,
        in one transaction. A hold still there is deleted and its subjects charged its cost
        (each update adds, never overwrites, in (table, id) order); one gone already was
        charged by :meth:`expire_holds`, so it is skipped, with its usage row."""
        try:
            self._settle(holds, usage, connection, which=False)
        except _HoldsGone:  # rolled back: find out which, row by row
            self._settle(holds, usage, connection, which=True)

    def _settle(
        self,
        holds: Mapping[str, Hold],
        usage: Sequence[Mapping[str, Any]],
        connection: Any | None,
        which: bool,
    ) -> None:
        with self._cursor(connection) as cursor:
            present = self._take_holds(cursor, list(holds), which)
            deltas: dict[Charge, tuple[int, int]] = {}
            for request_id in present:
                hold = holds[request_id]
                for c in hold.charges:
                    held, spent = deltas.get(c, (0, 0))
                    deltas[c] = (held + hold.reserved, spent + hold.cost)
            if len(present) < len(holds):
                usage = [
                    row
                    for row in usage
                    if row["request_id"] not in holds or row["request_id"] in present
                ]
            # In one order (table, id): two replicas settling the same keys cannot deadlock.
            for c in sorted(deltas, key=lambda c: (c.table.name, c.id)):
                reserved, cost = deltas[c]
                params = {"b_id": c.id, "b_start": _start(c.period), "b_cost": cost,
                          "b_reserved": reserved}  # fmt: skip
                self._execute(cursor, f"charge:{c.table.name}", params)
            if usage:
                insert = self._sql("usage")
                names = [f"b_{c.name}" for c in U.columns]
                cursor.executemany(
                    insert.sql,
                    [insert.args({n: row.get(n[2:]) for n in names}) for row in usage],
                )

    def _take_holds(self, cursor: Any, request_ids: list[str], which: bool) -> set[str]:
        """Delete these requests' holds; the ids that had one (whoever deletes a hold
        settles it, so a sweep cannot slip between). Without ``which``, one ``DELETE`` per
        chunk whose count says whether every hold was there (nearly always); if not, it
        raises :class:`_HoldsGone`, and the caller tries again with ``which``: one
        ``DELETE ... RETURNING`` per chunk, each row read back."""
        found: set[str] = set()
        if which and not self.engine.dialect.delete_returning:
            for request_id in request_ids:
                if self._execute(cursor, "take1:1", {"b_0": request_id}).rowcount:
                    found.add(request_id)
            return found
        deleted = 0
        for i in range(0, len(request_ids), _TAKE_CHUNK):
            params = _padded(request_ids[i : i + _TAKE_CHUNK])
            if which:
                rows = self._execute(cursor, f"take:{len(params)}", params).fetchall()
                found.update(r[0] for r in rows)
            else:
                deleted += self._execute(cursor, f"drop:{len(params)}", params).rowcount
        if not which and deleted != len(request_ids):
            raise _HoldsGone
        return found if which else set(request_ids)

    def expire_holds(self, now: float | None = None, limit: int = 500) -> int:
        """Charge up to ``limit`` requests' holds that expired (see the module docstring);
        how many requests were charged. Safe to run in every replica at once: a hold is
        charged by whoever deletes it."""
        at = int(now if now is not None else time.time())
        with self.engine.connect() as conn:
            expired = list(conn.execute(sa.select(H).where(H.c.expires_at < at).limit(limit)).all())
        charged = 0
        for hold in expired:
            with self.engine.begin() as conn:
                deleted = conn.execute(
                    H.delete().where(H.c.request_id == hold.request_id, H.c.expires_at < at)
                ).rowcount
                if deleted != 1:
                    continue  # another gateway charged it (or it was settled) meanwhile
                cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
                try:
                    for table, id_, period in (
                        (K, hold.key_id, hold.key_period),
                        (T, hold.team_id, hold.team_period),
                    ):
                        if period is not None and id_ is not None:  # at its reservation
                            params = {"b_id": id_, "b_start": _start(period),
                                      "b_cost": hold.amount_nusd,
                                      "b_reserved": hold.amount_nusd}  # fmt: skip
                            self._execute(cursor, f"charge:{table.name}", params)
                finally:
                    cursor.close()
                if hold.key_id is not None:  # None only on a hold written before 0007
                    conn.execute(
                        U.insert().values(
                            request_id=hold.request_id,
                            key_id=hold.key_id,
                            team_id=hold.team_id,
                            created_at=datetime.now(UTC),
                            status=EXPIRED_STATUS,
                            cost_nusd=hold.amount_nusd,
                        )
                    )
                charged += 1
        return charged

    def remaining(self, charges: Sequence[Charge]) -> int | None:
        """The least budget left (unreserved) over the subjects; None when none has one."""
        least: int | None = None
        with self.engine.connect() as conn:
            for c in charges:
                start = _start(c.period)
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

    # -- shared rate windows ------------------------------------------------------------

    def add_window_tokens(self, tokens: Mapping[tuple[str, int], int]) -> None:
        """Add finished requests' tokens to their (subject, minute) rows."""
        if not tokens:
            return
        with self.engine.begin() as conn:
            for (subject, window), n in tokens.items():
                conn.execute(
                    W.update()
                    .where(W.c.subject == subject, W.c.window == window)
                    .values(tokens=W.c.tokens + n)
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
