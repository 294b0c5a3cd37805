"""Typed options of one provider API or router kind, and the one error formatter for config.

Each provider class declares ``Options`` (fields of its ``providers.NAME`` entry beyond the
common ones) and ``ModelOptions`` (fields of a ``models[i]`` entry it serves); each router
class declares ``Options`` (its ``routers.NAME`` entry). They are pydantic models with
``Field(description=...)``: the config reference (docs/config.md) is generated from them, and
a wrong field is refused with the same message as the rest of the config, naming its path.

:class:`WithOptions` is the base of the config entries that carry such fields (a provider,
a model): it keeps them aside and parses them, once, into the class's options model. This
module imports neither the config nor the registries, so both can import it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, PrivateAttr, ValidationError

from polyroute.errors import ConfigError

#: Where users read what each field means; every config error points there.
REFERENCE = "docs/config.md"


class Options(BaseModel):
    """Base of every provider's, model's and router's options: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class NoOptions(Options):
    """For a provider API or router kind that takes no options of its own."""


OptionsT = TypeVar("OptionsT", bound=Options)


def error_lines(err: ValidationError, prefix: str = "") -> list[str]:
    """One ``path: message`` line per error, the path starting with ``prefix``."""
    lines = []
    for e in err.errors():
        where = ".".join(p for p in (prefix, *(str(x) for x in e["loc"])) if p) or "(top level)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = f"unknown field (check its spelling; see {REFERENCE} for the fields)"
        lines.append(f"  {where}: {msg}")
    return lines


def format_validation_error(source: str, err: ValidationError, prefix: str = "") -> str:
    """The message of a :class:`ConfigError` for ``err``, found in ``source`` (a file)."""
    return "\n".join([f"invalid configuration in {source}:", *error_lines(err, prefix)])


def parse_options(model: type[OptionsT], raw: Mapping[str, Any], where: str) -> OptionsT:
    """``raw`` validated as ``model``; a :class:`ConfigError` naming ``where.FIELD`` if not."""
    try:
        return model.model_validate(dict(raw))
    except ValidationError as e:
        lines = [f"invalid options at {where}:", *error_lines(e, where)]
        raise ConfigError("\n".join(lines)) from None


class WithOptions(BaseModel):
    """A config entry whose fields beyond its own are the options of its provider's API
    (the :class:`Options` its class declares), validated once and kept, typed, with the entry."""

    model_config = ConfigDict(extra="allow", frozen=True)
    _options: Options | None = PrivateAttr(None)

    def options_as(self, model: type[OptionsT], where: str) -> OptionsT:
        """The extra fields as ``model``, parsed on first use (a :class:`ConfigError`
        naming ``where.FIELD`` when they do not fit) and then kept."""
        cached = self.options
        if type(cached) is model:
            return cached
        parsed = parse_options(model, self.model_extra or {}, where)
        self._options = parsed
        return parsed

    @property
    def options(self) -> Options | None:
        """The options last parsed by :meth:`options_as` (None before)."""
        # Read from the slot: ``self._options`` goes through pydantic's __getattr__, which
        # costs microseconds, and this is read per request (options_as, candidates).
        private = self.__pydantic_private__
        return None if private is None else private.get("_options")
