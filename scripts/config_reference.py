"""Write docs/config.md, the configuration reference, from the config schema itself.

Every section and field of ``polyroute.config.Config``, with its type, its default and the
``#:`` comment written above it in ``src/polyroute/config.py``; then the options each built-in
provider API and router kind declares (their pydantic models' ``Field(description=...)``).
Configuration errors point users to that file; ``tests/test_config_reference.py`` fails when
it is not current.

Usage::

    python scripts/config_reference.py            # rewrite docs/config.md
    python scripts/config_reference.py --check    # exit 1 if it is out of date
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from polyroute import config  # noqa: E402

T = TypeVar("T")

SOURCE = ROOT / "src" / "polyroute" / "config.py"
OUTPUT = ROOT / "docs" / "config.md"


def field_comments(source: str) -> dict[tuple[str, str], str]:
    """``{(class, field): text}`` from the ``#:`` lines right above each annotated field."""
    lines = source.splitlines()
    found: dict[tuple[str, str], str] = {}
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.ClassDef):
            continue
        for item in node.body:
            if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                text: list[str] = []
                i = item.lineno - 2
                while i >= 0 and lines[i].strip().startswith("#:"):
                    text.insert(0, lines[i].strip()[2:].strip())
                    i -= 1
                if text:
                    found[(node.name, item.target.id)] = " ".join(text)
    return found


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _type_name(typing.get_args(tp)[0])
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin is not None:
        args = ", ".join(_type_name(a) for a in typing.get_args(tp))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    if tp is type(None):
        return "null"
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return f"[{_section_title(tp)}](#{_anchor(tp)})"
    return getattr(tp, "__name__", str(tp))


def _default(info: Any) -> str:
    if info.default_factory is not None:
        made = info.default_factory()
        if isinstance(made, BaseModel):
            return "its section's defaults"
        # A computed string (a path under the user's home) differs per machine: say so.
        return "computed (see the text)" if isinstance(made, str) else f"`{made!r}`"
    if info.default is PydanticUndefined:
        return "**required**"
    return f"`{info.default!r}`"


def _models_in(tp: Any) -> list[type[BaseModel]]:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [tp]
    return [m for a in typing.get_args(tp) for m in _models_in(a)]


def _section_title(model: type[BaseModel]) -> str:
    return model.__name__


def _anchor(model: type[BaseModel]) -> str:
    return model.__name__.lower()


def _table(model: type[BaseModel], comments: dict[tuple[str, str], str]) -> list[str]:
    out = ["| field | type | default | what |", "|---|---|---|---|"]
    for name, info in model.model_fields.items():
        what = info.description or comments.get((model.__name__, name), "")
        cell = lambda s: re.sub(r"\s+", " ", s).replace("|", "\\|")  # noqa: E731
        out.append(
            f"| `{info.alias or name}` | {cell(_type_name(info.annotation))} "
            f"| {cell(_default(info))} | {cell(what)} |"
        )
    return out


def _doc(obj: object) -> str:
    return re.sub(r"\s+", " ", (obj.__doc__ or "").strip().split("\n\n")[0])


def _builtin(registered: dict[str, T]) -> list[tuple[str, T]]:
    """polyroute's own entries, by name (a test or a plugin may have registered others)."""
    own = [(n, c) for n, c in registered.items() if c.__module__.startswith("polyroute.")]
    return sorted(own, key=lambda item: item[0])


def _kinds() -> list[str]:
    """The provider APIs' and router kinds' options, built-ins only (plugins document theirs)."""
    from polyroute.kinds import load_builtin_providers
    from polyroute.providers import PROVIDERS
    from polyroute.routing.registry import ROUTERS

    load_builtin_providers()
    out = [
        "",
        "## Provider APIs",
        "",
        "A provider entry's `api` names its wire interface; the entry may add that API's own",
        "fields, and each model entry on it the API's model fields (both checked when the file",
        "is loaded). `engine` is made by polyroute for a model entry with `engine:`.",
    ]
    for api, cls in _builtin(PROVIDERS.registered()):
        out += ["", f"### `api: {api}`", "", _doc(cls)]
        for what, model in (("provider", cls.Options), ("model", cls.ModelOptions)):
            if model.model_fields:
                out += ["", f"Fields of a {what} entry (`{model.__name__}`): {_doc(model)}", ""]
                out += _table(model, {})
    out += [
        "",
        "## Router kinds",
        "",
        "A router entry is `{kind: KIND, models: [...], OPTION: value, ...}`; each kind's",
        "options are checked when the file is loaded. docs/routers.md says how each routes.",
    ]
    for kind, router in _builtin(ROUTERS.registered()):
        options = router.Options
        out += ["", f"### `kind: {kind}`", "", _doc(router)]
        if options is not None:
            out += ["", f"`{options.__name__}`: {_doc(options)}", ""]
            out += _table(options, {})
    return out


def render() -> str:
    comments = field_comments(SOURCE.read_text())
    out = [
        "# Configuration reference",
        "",
        "Generated from `src/polyroute/config.py` by `python scripts/config_reference.py`;",
        "`tests/test_config_reference.py` fails when this file is not current. One YAML file",
        "(`polyroute serve --config FILE`, or `POLYROUTE_CONFIG`) holds a `Config`; every field",
        "is validated, and an unknown field is an error naming its path.",
        "",
        "Provider and model entries take their API's own fields, and router entries their",
        "kind's options: see [Provider APIs](#provider-apis) and [Router kinds](#router-kinds).",
    ]
    seen: set[type[BaseModel]] = set()
    queue: list[type[BaseModel]] = [config.Config]
    while queue:
        model = queue.pop(0)
        if model in seen:
            continue
        seen.add(model)
        doc = (model.__doc__ or "").strip().split("\n\n")[0]
        out += ["", f"## {_section_title(model)}", ""]
        if doc and not doc.startswith("!!!"):
            out += [re.sub(r"\s+", " ", doc), ""]
        out += _table(model, comments)
        for info in model.model_fields.values():
            queue += [m for m in _models_in(info.annotation) if m not in seen]
    return "\n".join(out + _kinds()) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/config.md is stale")
    args = parser.parse_args()
    text = render()
    if args.check:
        current = OUTPUT.read_text() if OUTPUT.exists() else ""
        if current != text:
            print(f"{OUTPUT} is out of date: run python scripts/config_reference.py")
            return 1
        return 0
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT} ({len(seen_models(text))} sections)")
    return 0


def seen_models(text: str) -> list[str]:
    return re.findall(r"^## (\w+)", text, re.M)


if __name__ == "__main__":
    raise SystemExit(main())
