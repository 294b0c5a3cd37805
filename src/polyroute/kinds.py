"""The registered kinds a config names, resolved: provider APIs and router kinds.

:func:`option_errors` checks every provider's, model's and router's options against the
options model its class declares (:mod:`polyroute.options`), once, when a config file is
loaded, so a wrong field fails at start-up with its path rather than when first used. The
providers and routers then take the parsed options from the config instead of parsing again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from polyroute.errors import ConfigError

if TYPE_CHECKING:
    from polyroute.config import Config
    from polyroute.providers.base import Provider
    from polyroute.routing.base import Router

#: Fields every router entry takes, whatever its kind (the gateway handles them).
ROUTER_COMMON = ("kind", "models")


def load_builtin_providers() -> None:
    """Import the built-in provider modules: importing one registers it in PROVIDERS."""
    import polyroute.engines.provider  # noqa: F401
    from polyroute.providers import (  # noqa: F401
        anthropic,
        azure,
        gemini,
        llama_local,
        openai_compat,
    )


def provider_class(name: str, api: str) -> type[Provider]:
    """The provider class registered for ``api``, or a ConfigError naming the entry."""
    from polyroute.providers import PROVIDERS

    load_builtin_providers()
    try:
        return PROVIDERS.get(api)
    except KeyError as e:
        raise ConfigError(f"providers.{name}.api: {e.args[0]}") from None


def router_class(name: str, section: dict[str, Any]) -> type[Router]:
    """The router class ``routers.NAME.kind`` names, or a ConfigError listing the kinds."""
    from polyroute.routing.registry import ROUTERS

    kind = section.get("kind")
    if not isinstance(kind, str):
        raise ConfigError(
            f"routers.{name}.kind is required; known kinds: {', '.join(ROUTERS.names())}"
        )
    try:
        return ROUTERS.get(kind)
    except KeyError as e:
        raise ConfigError(f"routers.{name}.kind: {e.args[0]}") from None


def router_options(name: str, cls: type[Router], section: dict[str, Any]) -> dict[str, Any]:
    """The options of ``routers.NAME`` for ``cls.from_config``: validated by the kind's
    ``Options`` model where it declares one, as written (``kind`` and ``models`` aside)."""
    options = {k: v for k, v in section.items() if k not in ROUTER_COMMON}
    model = cls.Options
    if model is None:
        return options  # a plugin router without an options model checks its own
    from polyroute.options import parse_options

    parsed = parse_options(model, options, f"routers.{name}")
    return parsed.model_dump(by_alias=True, exclude_unset=True)


def _lines(e: ConfigError) -> list[str]:
    head, *rest = e.message.splitlines()
    return rest if rest else [f"  {head}"]


def option_errors(config: Config) -> list[str]:
    """Every options problem in ``config``, one ``  path: message`` line each (none: fine)."""
    errors: list[str] = []
    classes: dict[str, type[Provider]] = {}
    for name, provider in config.providers.items():
        try:
            cls = classes[name] = provider_class(name, provider.api)
            provider.options_as(cls.Options, f"providers.{name}")
        except ConfigError as e:
            errors += _lines(e)
    for i, model in enumerate(config.models):
        owner = classes.get(model.provider)
        if model.engine is not None:
            owner = provider_class(model.name, "engine")
        if owner is not None:
            try:
                model.options_as(owner.ModelOptions, f"models.{i}")
            except ConfigError as e:
                errors += _lines(e)
    for name, section in config.routers.items():
        try:
            router_options(name, router_class(name, section), section)
        except ConfigError as e:
            errors += _lines(e)
    return errors
