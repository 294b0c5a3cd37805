"""Named, ordered schema migrations, applied at startup.

Each migration is a function of Alembic's :class:`~alembic.operations.Operations`, so the
DDL is portable between SQLite and PostgreSQL; the names applied are kept in
``schema_migrations``. Never edit a migration that has shipped: add the next one.
"""

from __future__ import annotations

from collections.abc import Callable

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


MIGRATIONS: list[tuple[str, Callable[[Operations], None]]] = [
    ("0001_requests", m0001_requests),
]
