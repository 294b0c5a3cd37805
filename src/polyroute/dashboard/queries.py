"""What the dashboard reads from the store: aggregates over a time window, and traces.

Every function here blocks; the routes run them on the dashboard's own threads. The SQL is
SQLAlchemy Core that SQLite and PostgreSQL both run: time buckets come from
``EXTRACT(epoch ...)``, which SQLAlchemy renders for each dialect, and the bucket size is a
validated integer inlined into the statement (PostgreSQL cannot tell that two bound
parameters in SELECT and GROUP BY are the same expression).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from polyroute.dashboard.params import DIRECT, TraceFilter, Window
from polyroute.store import schema
from polyroute.store.db import Store

R = schema.requests.c
A = schema.attempts.c
F = schema.feedback.c

#: The trace list leaves out the large columns; one trace has them all.
_LIST_COLUMNS = (
    R.id, R.created_at, R.requested_model, R.model, R.provider, R.router, R.stream, R.status,
    R.input_tokens, R.output_tokens, R.latency_ms, R.ttft_ms, R.cost_usd, R.cost_status, R.error,
)  # fmt: skip


def utc(value: datetime | None) -> datetime | None:
    """SQLite gives back naive datetimes; the store writes them in UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _in_window(column: sa.ColumnElement[Any], w: Window) -> sa.ColumnElement[bool]:
    return sa.and_(column >= w.since, column < w.until)


def _bucket(column: sa.ColumnElement[Any], step: int) -> sa.ColumnElement[Any]:
    epoch = sa.cast(sa.extract("epoch", column), sa.Numeric)
    size: sa.ColumnElement[Any] = sa.literal_column(str(int(step)))
    return (epoch - epoch % size).label("bucket")


def _ok() -> sa.ColumnElement[bool]:
    return R.status < 400


def _num(value: Any) -> float | None:
    return None if value is None else float(value)


def _cost_terms() -> list[sa.ColumnElement[Any]]:
    """Known USD (free counts as $0) and how many requests had no known price."""
    return [
        sa.func.sum(sa.case((R.cost_status != "unknown", R.cost_usd), else_=None)),
        sa.func.sum(sa.case((R.cost_status == "unknown", 1), else_=0)),
    ]


def summary(store: Store, w: Window) -> dict[str, Any]:
    """Totals over the window, and the models and routers seen (for the filters)."""
    ok_latency = sa.case((_ok(), R.latency_ms), else_=None)
    ok_ttft = sa.case((_ok(), R.ttft_ms), else_=None)
    # One pass over the window, grouped by (router, model): the totals are the groups' sums,
    # and the groups name the models and routers seen.
    groups = (
        sa.select(
            R.router,
            R.model,
            sa.func.count(),
            sa.func.sum(sa.case((R.status >= 400, 1), else_=0)),
            sa.func.sum(R.input_tokens),
            sa.func.sum(R.output_tokens),
            *_cost_terms(),
            sa.func.sum(ok_latency),
            sa.func.count(ok_latency),
            sa.func.sum(ok_ttft),
            sa.func.count(ok_ttft),
        )
        .where(_in_window(R.created_at, w))
        .group_by(R.router, R.model)
    )
    fb = sa.select(sa.func.count(), sa.func.avg(F.score)).where(_in_window(F.created_at, w))
    with store.engine.connect() as conn:
        rows = conn.execute(groups).all()
        fb_n, fb_mean = conn.execute(fb).one()
    sums = [sum(float(row[i] or 0) for row in rows) for i in range(2, len(groups.selected_columns))]
    n, errors, tin, tout, cost, unknown, lat_sum, lat_n, ttft_sum, ttft_n = sums
    return {
        "since": w.since,
        "until": w.until,
        "requests": int(n),
        "errors": int(errors),
        "input_tokens": int(tin),
        "output_tokens": int(tout),
        "cost_usd": cost,
        "unknown_cost": int(unknown),
        "latency_ms_avg": lat_sum / lat_n if lat_n else None,
        "ttft_ms_avg": ttft_sum / ttft_n if ttft_n else None,
        "feedback": {"count": int(fb_n), "mean_score": _num(fb_mean)},
        "models": sorted({row.model for row in rows if row.model is not None}),
        "routers": sorted({row.router or DIRECT for row in rows}),
    }


def timeseries(store: Store, w: Window) -> dict[str, Any]:
    """Requests, errors, tokens, cost and latency per bucket; empty buckets are zeros."""
    bucket = _bucket(R.created_at, w.step)
    query = (
        sa.select(
            bucket,
            sa.func.count(),
            sa.func.sum(sa.case((R.status >= 400, 1), else_=0)),
            sa.func.sum(R.input_tokens),
            sa.func.sum(R.output_tokens),
            *_cost_terms(),
            sa.func.avg(sa.case((_ok(), R.latency_ms), else_=None)),
            sa.func.max(sa.case((_ok(), R.latency_ms), else_=None)),
            sa.func.avg(sa.case((_ok(), R.ttft_ms), else_=None)),
        )
        .where(_in_window(R.created_at, w))
        .group_by(bucket)
    )
    with store.engine.connect() as conn:
        found = {int(row[0]): row[1:] for row in conn.execute(query)}
    points = []
    for t in w.bucket_starts():
        n, errors, tin, tout, cost, unknown, lat, lat_max, ttft = found.get(
            t, (0, 0, 0, 0, None, 0, None, None, None)
        )
        points.append(
            {
                "t": t,
                "requests": int(n),
                "errors": int(errors or 0),
                "input_tokens": int(tin or 0),
                "output_tokens": int(tout or 0),
                "cost_usd": float(cost or 0.0),
                "unknown_cost": int(unknown or 0),
                "latency_ms_avg": _num(lat),
                "latency_ms_max": _num(lat_max),
                "ttft_ms_avg": _num(ttft),
            }
        )
    return {"since": w.since, "until": w.until, "bucket_s": w.step, "points": points}


def model_mix(store: Store, w: Window) -> dict[str, Any]:
    """For each router: how often it chose each model, in all and per bucket."""
    bucket = _bucket(R.created_at, w.step)
    query = (
        sa.select(R.router, R.model, bucket, sa.func.count())
        .where(_in_window(R.created_at, w), R.model.is_not(None))
        .group_by(R.router, R.model, bucket)
    )
    with store.engine.connect() as conn:
        rows = conn.execute(query).all()
    routers: dict[str, dict[str, Any]] = {}
    for router, model, t, n in rows:
        entry = routers.setdefault(router or DIRECT, {"total": 0, "models": {}, "buckets": {}})
        entry["total"] += n
        entry["models"][model] = entry["models"].get(model, 0) + n
        per = entry["buckets"].setdefault(int(t), {})
        per[model] = per.get(model, 0) + n
    out = []
    # Routers first (busiest first), then the requests that named a model directly.
    for name, entry in sorted(routers.items(), key=lambda kv: (kv[0] == DIRECT, -kv[1]["total"])):
        models = dict(sorted(entry["models"].items(), key=lambda kv: (-kv[1], kv[0])))
        series = [{"t": t, "models": entry["buckets"].get(t, {})} for t in w.bucket_starts()]
        out.append({"router": name, "total": entry["total"], "models": models, "series": series})
    return {"since": w.since, "until": w.until, "bucket_s": w.step, "routers": out}


def feedback_quality(store: Store, w: Window) -> dict[str, Any]:
    """Mean feedback score per answering model, and per router and model."""
    joined = schema.feedback.join(schema.requests, F.request_id == R.id)
    query = (
        sa.select(R.router, R.model, sa.func.count(), sa.func.avg(F.score))
        .select_from(joined)
        .where(_in_window(F.created_at, w))
        .group_by(R.router, R.model)
    )
    with store.engine.connect() as conn:
        rows = conn.execute(query).all()
    per_model: dict[str, list[float]] = {}
    by_router = []
    for router, model, n, mean in rows:
        name = model or "(none)"
        acc = per_model.setdefault(name, [0.0, 0.0])
        acc[0] += n
        acc[1] += float(mean) * n
        by_router.append(
            {"router": router or DIRECT, "model": name, "count": int(n), "mean_score": float(mean)}
        )
    ranked = sorted(per_model.items(), key=lambda kv: (-kv[1][1] / kv[1][0], kv[0]))
    models = [{"model": m, "count": int(n), "mean_score": total / n} for m, (n, total) in ranked]
    by_router.sort(key=lambda r: (str(r["router"]), -float(r["mean_score"])))
    return {"since": w.since, "until": w.until, "models": models, "by_router": by_router}


def _arm_summary(arm: Any) -> dict[str, float] | None:
    """Observations and mean reward of one bandit arm, whatever the router's state shape."""
    if not isinstance(arm, dict):
        return None
    if isinstance(arm.get("n"), int | float):
        n = float(arm["n"])
        total = arm.get("sum")
        mean = float(total) / n if isinstance(total, int | float) and n > 0 else None
        return {"n": n, **({"mean": mean} if mean is not None else {})}
    s, f = arm.get("successes"), arm.get("failures")
    if isinstance(s, int | float) and isinstance(f, int | float):
        n = float(s) + float(f)
        return {"n": n, **({"mean": float(s) / n} if n > 0 else {})}
    return None


def router_states(store: Store) -> list[dict[str, Any]]:
    """What each learning router has saved: per model, how much feedback and its mean."""
    rs = schema.router_state.c
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(rs.router, rs.kind, rs.updated_at, rs.state)).all()
    out = []
    for router, kind, updated_at, state_text in sorted(rows):
        try:
            state = json.loads(state_text)
        except ValueError:
            state = {}
        arms_raw = state.get("arms") if isinstance(state, dict) else None
        arms = []
        for model, arm in (arms_raw or {}).items() if isinstance(arms_raw, dict) else []:
            summary_ = _arm_summary(arm)
            if summary_ is not None:
                arms.append({"model": model, **summary_})
        arms.sort(key=lambda a: (-a["n"], a["model"]))
        out.append({"router": router, "kind": kind, "updated_at": utc(updated_at), "arms": arms})
    return out


def _trace_where(f: TraceFilter) -> list[sa.ColumnElement[bool]]:
    where = [_in_window(R.created_at, f.window)]
    if f.model is not None:
        where.append(R.model == f.model)
    if f.router == DIRECT:
        where.append(R.router.is_(None))
    elif f.router is not None:
        where.append(R.router == f.router)
    if f.status == "ok":
        where.append(R.status < 400)
    elif f.status == "error":
        where.append(R.status >= 400)
    elif isinstance(f.status, int):
        where.append(R.status == f.status)
    if f.key_id is not None:  # a dashboard key sees only the traces it made
        U = schema.key_usage.c
        where.append(R.id.in_(sa.select(U.request_id).where(U.key_id == f.key_id)))
    return where


def _row(mapping: Any) -> dict[str, Any]:
    row = dict(mapping)
    row["created_at"] = utc(row["created_at"])
    return row


def _feedback_stats(conn: sa.Connection, ids: Sequence[str]) -> dict[str, tuple[int, float]]:
    if not ids:
        return {}
    query = (
        sa.select(F.request_id, sa.func.count(), sa.func.avg(F.score))
        .where(F.request_id.in_(list(ids)))
        .group_by(F.request_id)
    )
    return {rid: (int(n), float(mean)) for rid, n, mean in conn.execute(query)}


def traces(store: Store, f: TraceFilter) -> dict[str, Any]:
    """One page of traces, newest first, each with its feedback count and mean."""
    query = (
        sa.select(*_LIST_COLUMNS)
        .where(*_trace_where(f))
        .order_by(R.created_at.desc(), R.id.desc())
        .limit(f.limit + 1)  # one more tells whether there is a next page
        .offset(f.offset)
    )
    with store.engine.connect() as conn:
        rows = [_row(r._mapping) for r in conn.execute(query)]
        more = len(rows) > f.limit
        rows = rows[: f.limit]
        stats = _feedback_stats(conn, [r["id"] for r in rows])
    for row in rows:
        n, mean = stats.get(row["id"], (0, None))
        row["router"] = row["router"] or DIRECT
        row["feedback"] = {"count": n, "mean_score": mean}
    return {"traces": rows, "limit": f.limit, "offset": f.offset, "has_more": more}


def _parse_json(text: str | None) -> Any:
    """Stored JSON text as data; text that is not JSON is kept as it is."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def trace(store: Store, trace_id: str) -> dict[str, Any] | None:
    """One trace: the request row, its decision and body as data, attempts and feedback."""
    with store.engine.connect() as conn:
        found = conn.execute(sa.select(schema.requests).where(R.id == trace_id)).first()
        if found is None:
            return None
        attempts = conn.execute(
            sa.select(schema.attempts).where(A.request_id == trace_id).order_by(A.n)
        ).all()
        feedback = conn.execute(
            sa.select(schema.feedback).where(F.request_id == trace_id).order_by(F.created_at, F.id)
        ).all()
    row = _row(found._mapping)
    row["decision"] = _parse_json(row["decision"])
    row["request_body"] = _parse_json(row["request_body"])
    row["attempts"] = []
    for a in attempts:
        item = dict(a._mapping)
        item["started_at"] = utc(item["started_at"])
        row["attempts"].append(item)
    row["feedback"] = [{**dict(fb._mapping), "created_at": utc(fb.created_at)} for fb in feedback]
    return row
