"""Named, ordered schema migrations, applied at startup.

Each migration is a function of Alembic's :class:`~alembic.operations.Operations`, so the
DDL is portable between SQLite and PostgreSQL; the names applied are kept in
``schema_migrations``. Never edit a migration that has shipped: add the next one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from alembic.operations import Operations


def m0001_requests(op: Operations) -> None:
    op.create_table(
        "requests",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, index=True),
        sa.Column("requested_model", sa.String(200), nullable=False),
        sa.Column("model", sa.String(200)),
        sa.Column("provider", sa.String(200)),
        sa.Column("upstream_model", sa.String(200)),
        sa.Column("router", sa.String(200)),
        sa.Column("stream", sa.Boolean, nullable=False),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("input_tokens", sa.Integer),
        sa.Column("output_tokens", sa.Integer),
        sa.Column("cached_tokens", sa.Integer),
        sa.Column("latency_ms", sa.Float),
        sa.Column("ttft_ms", sa.Float),
        sa.Column("cost_usd", sa.Float),
        # "known" | "unknown" | "free": an unknown price is its own state, never $0.
        sa.Column("cost_status", sa.String(16)),
        sa.Column("error", sa.Text),
    )


def m0002_traces_feedback_state(op: Operations) -> None:
    """A request row becomes a trace: its decision, attempts, text (optional) and feedback."""
    with op.batch_alter_table("requests") as batch:
        # {"router", "model", "reason", "scores", "costs", "fallbacks"} as JSON text.
        batch.add_column(sa.Column("decision", sa.Text))
        # The request body without secrets, and the answer's text; NULL when
        # store.store_text is off.
        batch.add_column(sa.Column("request_body", sa.Text))
        batch.add_column(sa.Column("response_text", sa.Text))
    op.create_table(
        "attempts",
        sa.Column("request_id", sa.String(64), primary_key=True),
        sa.Column("n", sa.Integer, primary_key=True),  # 0 = first try, then fallbacks
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("provider", sa.String(200), nullable=False),
        sa.Column("upstream_model", sa.String(200)),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("input_tokens", sa.Integer),
        sa.Column("output_tokens", sa.Integer),
        sa.Column("latency_ms", sa.Float),
        sa.Column("ttft_ms", sa.Float),
        sa.Column("cost_usd", sa.Float),
        sa.Column("cost_status", sa.String(16)),
        sa.Column("error", sa.Text),
    )
    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(64), nullable=False, index=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, index=True),
        # The score in [0, 1] that learning uses, whatever form it was given in ...
        sa.Column("score", sa.Float, nullable=False),
        # ... and that form: "number" | "boolean" | "category", with the category's label.
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("label", sa.String(200)),
        sa.Column("source", sa.String(200)),  # "user", a grader's name, ...
        sa.Column("comment", sa.Text),
    )
    op.create_table(
        "router_state",
        sa.Column("router", sa.String(200), primary_key=True),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("state", sa.Text, nullable=False),  # the router's state_dict() as JSON
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def _limits() -> list[sa.Column[Any]]:
    """Budget (nano-USD integers, so that sums are exact), its period, and rate limits."""
    return [
        sa.Column("budget_nusd", sa.BigInteger),  # NULL: no budget
        sa.Column("period", sa.String(16), nullable=False),  # total | daily | weekly | monthly
        sa.Column("period_start", sa.BigInteger, nullable=False),  # Unix seconds
        sa.Column("spent_nusd", sa.BigInteger, nullable=False),
        sa.Column("reserved_nusd", sa.BigInteger, nullable=False),  # in-flight worst cases
        sa.Column("soft_alert", sa.Float),  # share of the budget that raises an alert
        sa.Column("rpm", sa.Integer),
        sa.Column("tpm", sa.Integer),
        sa.Column("parallel", sa.Integer),
    ]


def m0003_keys(op: Operations) -> None:
    """Virtual keys and teams with budgets and limits; per-request usage; shared counters."""
    op.create_table(
        "teams",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        *_limits(),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(32), primary_key=True),  # the secret's visible prefix
        sa.Column("alias", sa.String(200), unique=True),
        sa.Column("salt", sa.String(64), nullable=False),
        sa.Column("secret_hash", sa.String(128), nullable=False),  # sha256(salt + secret)
        sa.Column("team_id", sa.String(64), index=True),
        sa.Column("user", sa.String(200)),
        sa.Column("metadata", sa.Text),  # JSON object
        sa.Column("models", sa.Text),  # JSON list; NULL: every model
        sa.Column("routers", sa.Text),  # JSON list; NULL: every router
        sa.Column("permissions", sa.Text),  # JSON list, e.g. ["dashboard"]
        sa.Column("store_text", sa.Boolean, nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True)),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        *_limits(),
    )
    op.create_table(
        "key_usage",
        sa.Column("request_id", sa.String(64), primary_key=True),
        sa.Column("key_id", sa.String(32), nullable=False, index=True),
        sa.Column("team_id", sa.String(64), index=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, index=True),
        sa.Column("model", sa.String(200)),
        sa.Column("router", sa.String(200)),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("input_tokens", sa.Integer),
        sa.Column("output_tokens", sa.Integer),
        sa.Column("cost_nusd", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "rate_windows",
        sa.Column("subject", sa.String(100), primary_key=True),  # "key:<id>" | "team:<id>"
        sa.Column("window", sa.BigInteger, primary_key=True),  # Unix minute
        sa.Column("requests", sa.Integer, nullable=False),
        sa.Column("tokens", sa.BigInteger, nullable=False),
    )


def m0004_tracecontext(op: Operations) -> None:
    """A trace keeps the W3C trace id it belongs to, and the id of the gateway's span."""
    with op.batch_alter_table("requests") as batch:
        batch.add_column(sa.Column("otel_trace_id", sa.String(32)))
        batch.add_column(sa.Column("otel_span_id", sa.String(16)))
    op.create_index("ix_requests_otel_trace_id", "requests", ["otel_trace_id"])


def m0005_rescued(op: Operations) -> None:
    """An attempt whose stream broke after it started and was continued by the next attempt
    (a rescue) says so in a column of its own, not only in its error text. NULL on the rows
    written before it: they cannot tell."""
    with op.batch_alter_table("attempts") as batch:
        batch.add_column(sa.Column("rescued", sa.Boolean))


def m0006_reservations(op: Operations) -> None:
    """Each request's reservation, held until settled or, if its gateway ended, until it
    expires (then charged): a killed replica's reservations cannot hold a budget forever."""
    op.create_table(
        "reservations",
        sa.Column("request_id", sa.String(64), primary_key=True),
        sa.Column("subject_table", sa.String(16), primary_key=True),  # api_keys | teams
        sa.Column("subject_id", sa.String(64), primary_key=True),
        sa.Column("period", sa.String(16), nullable=False),
        sa.Column("amount_nusd", sa.BigInteger, nullable=False),
        # Unix seconds. Not indexed: the table holds only requests in flight (a scan is short),
        # and an index would cost every reservation one more b-tree insert.
        sa.Column("expires_at", sa.BigInteger, nullable=False),
    )


def m0007_holds(op: Operations) -> None:
    """One hold per request instead of one per subject, naming the request's key (so an
    expired hold on a team's budget alone is still recorded under its key), without a rowid
    on SQLite: each reservation then writes one b-tree, not a table and its key's index."""
    op.create_table(
        "holds",
        sa.Column("request_id", sa.String(64), primary_key=True),
        sa.Column("key_id", sa.String(32)),  # NULL only on holds copied from 0006 without one
        sa.Column("team_id", sa.String(64)),
        # The period of each subject charged; NULL: that subject has no share in the hold.
        sa.Column("key_period", sa.String(16)),
        sa.Column("team_period", sa.String(16)),
        sa.Column("amount_nusd", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=False),  # Unix seconds; not indexed
        sqlite_with_rowid=False,
    )
    # Holds in flight while the gateway upgrades: one row per request, as the new table has.
    old = sa.table(
        "reservations",
        *(sa.column(c) for c in ("request_id", "subject_table", "subject_id", "period")),
        sa.column("amount_nusd", sa.BigInteger),
        sa.column("expires_at", sa.BigInteger),
    )
    conn = op.get_bind()
    if conn.dialect.name == "postgresql":
        # A replica of the old version could insert a hold between the read and the drop;
        # that hold would never be copied nor expire. Locked, it waits and then fails (the
        # old replicas must be drained before an upgrade: docs/keys.md).
        conn.execute(sa.text("LOCK TABLE reservations IN ACCESS EXCLUSIVE MODE"))
    held: dict[str, dict[str, Any]] = {}
    for r in conn.execute(sa.select(old)):
        row = held.setdefault(
            r.request_id,
            {"request_id": r.request_id, "key_id": None, "team_id": None, "key_period": None,
             "team_period": None, "amount_nusd": r.amount_nusd, "expires_at": r.expires_at},
        )  # fmt: skip
        if r.subject_table == "api_keys":
            row.update(key_id=r.subject_id, key_period=r.period)
        else:
            row.update(team_id=r.subject_id, team_period=r.period)
    if held:
        op.bulk_insert(
            sa.table("holds", *(sa.column(c) for c in next(iter(held.values())))),
            list(held.values()),
        )
    op.drop_table("reservations")


MIGRATIONS: list[tuple[str, Callable[[Operations], None]]] = [
    ("0001_requests", m0001_requests),
    ("0002_traces_feedback_state", m0002_traces_feedback_state),
    ("0003_keys", m0003_keys),
    ("0004_tracecontext", m0004_tracecontext),
    ("0005_rescued", m0005_rescued),
    ("0006_reservations", m0006_reservations),
    ("0007_holds", m0007_holds),
]
