"""Progress of a long command: a spinner on a terminal, one line per step anywhere else.

``polyroute train`` runs for minutes (tens of them on large data) and ``router onboard``
waits on a model's answers. rich's spinner draws nothing when stderr is not a terminal, so
under ``nohup``, in CI or in a container's log those commands were silent until the end.
There each step is a line on stderr instead, with the seconds since the command began.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.markup import escape


@contextmanager
def steps(console: Console, first: str) -> Iterator[Callable[[str], None]]:
    """Show ``first``, and yield the function that shows each next step (plain text)."""
    if console.is_terminal:
        with console.status(escape(first) + "…") as status:
            yield lambda message: status.update(escape(message) + "…")
        return
    started = time.monotonic()

    def line(message: str) -> None:
        stamp = f"[{time.monotonic() - started:.0f} s]"
        console.print(f"{stamp} {message}…", markup=False, highlight=False, soft_wrap=True)

    line(first)
    yield line
