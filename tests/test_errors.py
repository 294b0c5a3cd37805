"""The error tree in ``errors.py``'s docstring is the whole tree, and it tells the truth."""

from __future__ import annotations

import importlib
import pkgutil
import re

import polyroute
from polyroute import errors
from polyroute.errors import PolyrouteError

_LINE = re.compile(
    r"^(?P<indent>[ │├└─]*)(?P<name>[A-Z]\w+)\s*(?P<status>\d{3})?\s*(?P<code>[a-z_]+)?"
)


def _all_subclasses(cls: type) -> set[type]:
    out = set()
    for sub in cls.__subclasses__():
        out |= {sub, *_all_subclasses(sub)}
    return out


def _status(cls: type[PolyrouteError]) -> int:
    """The status an instance answers with (some errors set it as they are made)."""
    try:
        return cls("a message").status_code
    except TypeError:  # needs more than a message: the class's own status stands
        return cls.status_code


def _tree() -> dict[str, tuple[str | None, int | None, str | None]]:
    """name → (parent, status, code) as the docstring draws them."""
    doc = errors.__doc__ or ""
    block = doc.split("\n\n")[1]
    rows: dict[str, tuple[str | None, int | None, str | None]] = {}
    stack: list[tuple[int, str]] = []
    for line in block.splitlines():
        m = _LINE.match(line.strip("\n")[4:])  # the block is indented by 4
        assert m, line
        depth = len(m["indent"])
        while stack and stack[-1][0] >= depth:
            stack.pop()
        parent = stack[-1][1] if stack else None
        rows[m["name"]] = (parent, int(m["status"]) if m["status"] else None, m["code"])
        stack.append((depth, m["name"]))
    return rows


def test_every_error_class_is_in_the_tree_under_its_parent_with_its_status_and_code() -> None:
    for info in pkgutil.walk_packages(polyroute.__path__, "polyroute."):
        importlib.import_module(info.name)  # every module, so every subclass is defined
    tree = _tree()
    classes = {
        c.__name__: c
        for c in _all_subclasses(PolyrouteError)
        if c.__module__.startswith("polyroute")
    }
    missing = sorted(set(classes) - set(tree))
    assert missing == [], f"add these to the tree in errors.py: {missing}"
    assert sorted(set(tree) - set(classes) - {"PolyrouteError"}) == []  # no stale lines
    for name, cls in classes.items():
        parent, status, code = tree[name]
        assert cls.__mro__[1].__name__ == parent, name
        if status is not None:
            assert _status(cls) == status, name
        if code is not None and status is not None:
            assert cls.code == code, name


def test_one_way_to_say_not_found() -> None:
    from polyroute.errors import ModelNotFound, NotFound

    assert issubclass(ModelNotFound, NotFound) and NotFound.status_code == 404
    for cls in _all_subclasses(PolyrouteError):
        if cls.status_code == 404:
            assert issubclass(cls, NotFound), cls
