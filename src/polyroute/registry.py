"""One small registry for the parts users can add: providers, routers, suites, graders.

Built-ins register through the same call as third parties. Third-party packages expose
theirs through entry points in the group ``polyroute.<kind>`` (e.g. ``polyroute.providers``);
they are loaded lazily, the first time a name is looked up and not found.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """A name → object map for one kind of plugin."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._entry_points_loaded = False

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of :meth:`add`."""

        def decorate(obj: T) -> T:
            return self.add(name, obj)

        return decorate

    def add(self, name: str, item: T) -> T:
        """Register ``item`` under ``name``; a second, different item under one name is an error."""
        if name in self._items and self._items[name] is not item:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._items[name] = item
        return item

    def get(self, name: str) -> T:
        """Return the item named ``name``, or raise ``KeyError`` listing what exists."""
        if name not in self._items:
            self._load_entry_points()
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "none"
            raise KeyError(f"unknown {self.kind} {name!r}; known: {known}") from None

    def registered(self) -> dict[str, T]:
        """What is registered now, without loading entry points (e.g. the built-ins only)."""
        return dict(self._items)

    def names(self) -> list[str]:
        self._load_entry_points()
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        self._load_entry_points()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        for ep in entry_points(group=f"polyroute.{self.kind}"):
            if ep.name not in self._items:
                self._items[ep.name] = ep.load()
