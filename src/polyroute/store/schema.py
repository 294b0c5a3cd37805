"""Table definitions for queries: the shape the migrations leave the database in."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

metadata = sa.MetaData()

schema_migrations = sa.Table(
    "schema_migrations",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
)

requests = sa.Table(
    "requests",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
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
    sa.Column("cost_status", sa.String(16)),
    sa.Column("error", sa.Text),
    sa.Column("decision", sa.Text),
    sa.Column("request_body", sa.Text),
    sa.Column("response_text", sa.Text),
    sa.Column("otel_trace_id", sa.String(32)),
    sa.Column("otel_span_id", sa.String(16)),
)

attempts = sa.Table(
    "attempts",
    metadata,
    sa.Column("request_id", sa.String(64), primary_key=True),
    sa.Column("n", sa.Integer, primary_key=True),
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
    sa.Column("rescued", sa.Boolean),
)

feedback = sa.Table(
    "feedback",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("request_id", sa.String(64), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("label", sa.String(200)),
    sa.Column("source", sa.String(200)),
    sa.Column("comment", sa.Text),
)

router_state = sa.Table(
    "router_state",
    metadata,
    sa.Column("router", sa.String(200), primary_key=True),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)


def _limits() -> list[sa.Column[Any]]:
    return [
        sa.Column("budget_nusd", sa.BigInteger),
        sa.Column("period", sa.String(16), nullable=False),
        sa.Column("period_start", sa.BigInteger, nullable=False),
        sa.Column("spent_nusd", sa.BigInteger, nullable=False),
        sa.Column("reserved_nusd", sa.BigInteger, nullable=False),
        sa.Column("soft_alert", sa.Float),
        sa.Column("rpm", sa.Integer),
        sa.Column("tpm", sa.Integer),
        sa.Column("parallel", sa.Integer),
    ]


teams = sa.Table(
    "teams",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    *_limits(),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("alias", sa.String(200), unique=True),
    sa.Column("salt", sa.String(64), nullable=False),
    sa.Column("secret_hash", sa.String(128), nullable=False),
    sa.Column("team_id", sa.String(64)),
    sa.Column("user", sa.String(200)),
    sa.Column("metadata", sa.Text),
    sa.Column("models", sa.Text),
    sa.Column("routers", sa.Text),
    sa.Column("permissions", sa.Text),
    sa.Column("store_text", sa.Boolean, nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True)),
    sa.Column("revoked_at", sa.DateTime(timezone=True)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    *_limits(),
)

key_usage = sa.Table(
    "key_usage",
    metadata,
    sa.Column("request_id", sa.String(64), primary_key=True),
    sa.Column("key_id", sa.String(32), nullable=False),
    sa.Column("team_id", sa.String(64)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("model", sa.String(200)),
    sa.Column("router", sa.String(200)),
    sa.Column("status", sa.Integer, nullable=False),
    sa.Column("input_tokens", sa.Integer),
    sa.Column("output_tokens", sa.Integer),
    sa.Column("cost_nusd", sa.BigInteger, nullable=False),
)

holds = sa.Table(
    "holds",
    metadata,
    sa.Column("request_id", sa.String(64), primary_key=True),
    sa.Column("key_id", sa.String(32)),
    sa.Column("team_id", sa.String(64)),
    sa.Column("key_period", sa.String(16)),
    sa.Column("team_period", sa.String(16)),
    sa.Column("amount_nusd", sa.BigInteger, nullable=False),
    sa.Column("expires_at", sa.BigInteger, nullable=False),
    sqlite_with_rowid=False,
)

rate_windows = sa.Table(
    "rate_windows",
    metadata,
    sa.Column("subject", sa.String(100), primary_key=True),
    sa.Column("window", sa.BigInteger, primary_key=True),
    sa.Column("requests", sa.Integer, nullable=False),
    sa.Column("tokens", sa.BigInteger, nullable=False),
)
