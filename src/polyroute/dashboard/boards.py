"""The benchmark leaderboards the dashboard shows, read from the results files in the config.

A file is read again only when its modification time changes. A file that cannot be read
is shown with its error rather than failing the page. The bench package is imported only
when a page asks for a board: a serving gateway never loads the offline code it needs.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from polyroute.errors import PolyrouteError

if TYPE_CHECKING:
    from polyroute.bench.leaderboard import Leaderboard


def board_json(board: Leaderboard) -> dict[str, Any]:
    """A leaderboard as JSON data: per model figures, per task quality, the oracle."""
    return {
        "prompts": board.prompts,
        "oracle": board.oracle,
        "models": [
            {
                "model": s.model,
                "quality": s.quality,
                "answers": s.answers,
                "errors": s.errors,
                "cost_usd": s.cost_usd if s.priced else None,
                "priced": s.priced,
                "usd_per_prompt": s.usd_per_prompt,
                "latency_s": s.mean_latency_s,
                "ttft_s": s.mean_ttft_s,
                "output_tokens": s.mean_output_tokens,
            }
            for s in board.models
        ],
        "tasks": {
            task: {m: {"quality": q, "answers": n} for m, (q, n) in per_model.items()}
            for task, per_model in board.tasks.items()
        },
    }


class BenchBoards:
    """The leaderboards of a fixed list of results files, cached by modification time."""

    def __init__(self, paths: list[str]) -> None:
        self.paths = [Path(p).expanduser() for p in paths]
        self._cache: dict[Path, tuple[float, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def load(self) -> list[dict[str, Any]]:
        """One entry per file: ``{"path", ...board}`` or ``{"path", "error"}``. Blocking."""
        return [self._one(p) for p in self.paths]

    def _one(self, path: Path) -> dict[str, Any]:
        try:
            mtime = path.stat().st_mtime
        except OSError:
            return {"path": str(path), "error": f"results file {path} does not exist"}
        with self._lock:
            cached = self._cache.get(path)
        if cached is not None and cached[0] == mtime:
            return cached[1]
        from polyroute.bench.leaderboard import compute
        from polyroute.bench.results import read_results

        try:
            entry = {"path": str(path), **board_json(compute(read_results(path)))}
        except PolyrouteError as e:
            entry = {"path": str(path), "error": e.message}
        except (OSError, ValueError) as e:  # unreadable, or not UTF-8
            entry = {"path": str(path), "error": f"results file {path} cannot be read: {e}"}
        with self._lock:
            self._cache[path] = (mtime, entry)
        return entry
