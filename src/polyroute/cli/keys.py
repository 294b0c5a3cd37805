"""``polyroute keys``: create, list, show, update, rotate and revoke virtual keys, and set a
team's shared budget, straight in the store the gateway reads (``--config`` as for ``serve``).

A running gateway sees a change within ``auth.cache_ttl_s`` seconds (2 by default).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from polyroute.auth.spec import KeySpec, KeyUpdate, TeamSpec
from polyroute.config import load_config
from polyroute.errors import PolyrouteError
from polyroute.store.keys import KeyStore

err = Console(stderr=True, soft_wrap=True)
keys_app = typer.Typer(
    help="Virtual keys: budgets, rate limits and allowed models for clients of the gateway.",
    no_args_is_help=True,
)

_CONFIG = typer.Option(
    None, "--config", "-c", help="The gateway's YAML config (its store).", envvar="POLYROUTE_CONFIG"
)
_BUDGET = typer.Option(None, "--budget", help="USD per period.")
_PERIOD = typer.Option(None, "--period", help="total, daily, weekly or monthly [default: total].")
_ALERT = typer.Option(None, "--soft-alert", help="Share of the budget that raises an alert.")
_RPM = typer.Option(None, "--rpm", help="Requests per minute.")
_TPM = typer.Option(None, "--tpm", help="Tokens per minute.")
_PARALLEL = typer.Option(None, "--parallel", help="Requests in flight at once.")
_MODELS = typer.Option(None, "--models", help="Allowed models, comma-separated [default: all].")
_ROUTERS = typer.Option(None, "--routers", help="Allowed routers, comma-separated [default: all].")
_EXPIRES = typer.Option(None, "--expires", help="30d, 12h, 90m or an ISO 8601 date/time.")
_ALIAS = typer.Option(None, "--alias", help="A unique name for the key.")
_TEAM = typer.Option(None, "--team", help="The team whose shared budget the key also spends.")
_USER = typer.Option(None, "--user", help="Whose key it is.")
_PERMS = typer.Option(None, "--permissions", help="Extra permissions, e.g. dashboard.")
_META = typer.Option(None, "--metadata", help="A JSON object kept with the key.")


def _store(config: Path | None) -> KeyStore:
    from polyroute.store import Store

    cfg = load_config(config)
    store = Store(cfg.store.database_url)
    store.migrate()
    return KeyStore(store.engine)


def _split(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


def _options(**given: Any) -> dict[str, Any]:
    out = {k: v for k, v in given.items() if v is not None}
    for name in ("models", "routers", "permissions"):
        if name in out:
            out[name] = _split(out[name])
    if "metadata" in out:
        try:
            out["metadata"] = json.loads(out["metadata"])
        except ValueError:
            raise typer.BadParameter("--metadata must be a JSON object") from None
    return out


def _fail(e: Exception) -> typer.Exit:
    if isinstance(e, PolyrouteError):
        err.print(f"[red]error:[/red] {e.message}")
    else:
        err.print(f"[red]error:[/red] {e}")
    return typer.Exit(2)


def _print(data: dict[str, Any]) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


@keys_app.command()
def create(
    config: Path | None = _CONFIG,
    budget: float | None = _BUDGET,
    period: str | None = _PERIOD,
    soft_alert: float | None = _ALERT,
    rpm: int | None = _RPM,
    tpm: int | None = _TPM,
    parallel: int | None = _PARALLEL,
    models: str | None = _MODELS,
    routers: str | None = _ROUTERS,
    expires: str | None = _EXPIRES,
    alias: str | None = _ALIAS,
    team: str | None = _TEAM,
    user: str | None = _USER,
    permissions: str | None = _PERMS,
    metadata: str | None = _META,
    no_store_text: bool = typer.Option(
        False, "--no-store-text", help="Never store this key's prompts and answers."
    ),
) -> None:
    """Create a key. Its secret is printed once, alone on the last line."""
    opts = _options(
        budget_usd=budget, period=period, soft_alert=soft_alert, rpm=rpm, tpm=tpm,
        parallel=parallel, models=models, routers=routers, expires=expires, alias=alias,
        team=team, user=user, permissions=permissions, metadata=metadata,
    )  # fmt: skip
    if no_store_text:
        opts["store_text"] = False
    try:
        spec = KeySpec.model_validate(opts)
        key, secret = _store(config).create_key(spec)
    except Exception as e:
        raise _fail(e) from None
    err.print(f"created key {key.id}" + (f" ({key.alias})" if key.alias else ""))
    err.print("the secret is shown only now: keep it")
    typer.echo(secret)


@keys_app.command("list")
def list_keys(
    config: Path | None = _CONFIG,
    all_keys: bool = typer.Option(False, "--all", help="Include revoked keys."),
) -> None:
    """List keys (never their secrets)."""
    try:
        store = _store(config)
        rows = store.all(include_revoked=all_keys)
    except Exception as e:
        raise _fail(e) from None
    for key in rows:
        lim = key.limits
        budget = f"${lim.budget_nusd / 1e9:g}/{lim.period}" if lim.budget_nusd is not None else "-"
        spent = store.spend(key.id).get("spent_usd", 0.0)
        state = "revoked" if key.revoked_at else ("expired" if key.why_unusable() else "active")
        typer.echo(
            f"{key.id}\t{key.alias or '-'}\t{state}\tbudget {budget}\tspent ${spent:.6f}\t"
            f"rpm {lim.rpm or '-'}\tteam {key.team_id or '-'}"
        )


@keys_app.command()
def show(
    key: str = typer.Argument(..., help="Key id or alias."), config: Path | None = _CONFIG
) -> None:
    """One key: its settings, and its spend by model and router."""
    from polyroute.gateway.admin import key_view

    try:
        store = _store(config)
        _print(key_view(store, store.require(key)))
    except Exception as e:
        raise _fail(e) from None


@keys_app.command()
def update(
    key: str = typer.Argument(..., help="Key id or alias."),
    config: Path | None = _CONFIG,
    budget: float | None = _BUDGET,
    period: str | None = _PERIOD,
    soft_alert: float | None = _ALERT,
    rpm: int | None = _RPM,
    tpm: int | None = _TPM,
    parallel: int | None = _PARALLEL,
    models: str | None = _MODELS,
    routers: str | None = _ROUTERS,
    expires: str | None = _EXPIRES,
    alias: str | None = _ALIAS,
    team: str | None = _TEAM,
    user: str | None = _USER,
    permissions: str | None = _PERMS,
    metadata: str | None = _META,
    rotate: bool = typer.Option(
        False, "--rotate", help="Replace the secret; the new one is printed on the last line."
    ),
) -> None:
    """Change a key's settings (only the options given), or rotate its secret."""
    opts = _options(
        budget_usd=budget, period=period, soft_alert=soft_alert, rpm=rpm, tpm=tpm,
        parallel=parallel, models=models, routers=routers, expires=expires, alias=alias,
        team=team, user=user, permissions=permissions, metadata=metadata,
    )  # fmt: skip
    try:
        store = _store(config)
        changed = store.update(key, KeyUpdate.model_validate(opts))
        _print(changed.public())
        if rotate:
            _, secret = store.rotate(changed.id)
            err.print("new secret (the old one stops working within seconds):")
            typer.echo(secret)
    except Exception as e:
        raise _fail(e) from None


@keys_app.command()
def revoke(
    key: str = typer.Argument(..., help="Key id or alias."), config: Path | None = _CONFIG
) -> None:
    """Revoke a key: every gateway refuses it within seconds."""
    try:
        done = _store(config).revoke(key)
    except Exception as e:
        raise _fail(e) from None
    typer.echo(f"revoked {done.id}")


@keys_app.command()
def team(
    name: str = typer.Argument(..., help="The team's id."),
    config: Path | None = _CONFIG,
    budget: float | None = _BUDGET,
    period: str | None = _PERIOD,
    soft_alert: float | None = _ALERT,
    rpm: int | None = _RPM,
    tpm: int | None = _TPM,
    parallel: int | None = _PARALLEL,
) -> None:
    """Create or change a team: the budget and limits its keys share."""
    opts = _options(budget_usd=budget, period=period, soft_alert=soft_alert, rpm=rpm, tpm=tpm,
                    parallel=parallel)  # fmt: skip
    try:
        _store(config).set_team(name, TeamSpec.model_validate(opts))
    except Exception as e:
        raise _fail(e) from None
    typer.echo(f"team {name}: " + json.dumps(opts))


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")
