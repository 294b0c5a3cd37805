"""``/metrics`` across the workers of ``polyroute serve --workers N``: one set of totals.

Each worker is its own process, so its counters live in its own memory, and a scrape lands
on whichever worker the kernel hands the connection to. prometheus-client's multiprocess
mode solves exactly this: with ``PROMETHEUS_MULTIPROC_DIR`` set before it is imported, every
counter and histogram keeps its values in a small memory-mapped file per process in that
directory, and a scrape adds up every process's files (a worker that died still counts:
its file stays). ``polyroute serve`` makes a fresh directory per start (:func:`metrics_dir`)
so that no stale file from an earlier run is added in, and removes it at exit.

The recorder's figures are not counters the request path increments but values each worker
reads from its recorder; here each worker writes them into gauges with the mode that adds
them up sensibly (totals summed over every worker that ever ran, backlog summed over the
live ones, the journal's size, which is one directory's, as the largest seen). Live-mode
gauges of a worker killed without a goodbye are removed at the next scrape.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from polyroute.store.recorder import RecorderStats

#: The variable prometheus-client reads, once, when it is imported.
ENV = "PROMETHEUS_MULTIPROC_DIR"

#: Recorder totals (counters in single-process mode), summed over every worker.
COUNTERS = {
    "journaled": "Traces appended to the write-ahead journal.",
    "written": "Traces of these processes the database has.",
    "dropped": "Traces lost: they could not even be journaled.",
    "quarantined": "Rows the database refused, kept in quarantine.",
    "replayed": "Traces of earlier processes stored from the journal.",
}
_PREFIX = "polyroute_recorder_"
_LIVE_FILE = re.compile(r"gauge_live\w+?_(\d+)\.db$")


def enabled() -> bool:
    """Whether this process keeps its metrics in the shared directory (set by ``serve``)."""
    return bool(os.environ.get(ENV))


@contextlib.contextmanager
def metrics_dir() -> Iterator[Path]:
    """A fresh directory for the workers' metric files, in the environment they inherit.

    Any ``PROMETHEUS_MULTIPROC_DIR`` already set is put back afterwards; the directory is
    removed however the block ends.
    """
    path = Path(tempfile.mkdtemp(prefix="polyroute-metrics-"))
    before = os.environ.get(ENV)
    os.environ[ENV] = str(path)
    try:
        yield path
    finally:
        if before is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = before
        shutil.rmtree(path, ignore_errors=True)


class RecorderGauges:
    """This worker's recorder figures, written where every worker's are added up."""

    def __init__(self) -> None:
        r = CollectorRegistry()  # never exposed: the files are
        self.totals = {
            name: Gauge(_PREFIX + name, doc, registry=r, multiprocess_mode="sum")
            for name, doc in COUNTERS.items()
        }
        self.queue_depth = Gauge(
            _PREFIX + "queue_depth",
            "Traces journaled and not yet in the database (all live workers).",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.journal_bytes = Gauge(
            _PREFIX + "journal_bytes",
            "Bytes in the journal's segments.",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.writer_up = Gauge(
            _PREFIX + "writer_up",
            "1 while every live worker's trace writer process runs.",
            registry=r,
            multiprocess_mode="livemin",
        )

    def publish(self, s: RecorderStats) -> None:
        values = {
            "journaled": s.journaled,
            "written": s.written,
            "dropped": s.dropped,
            "quarantined": s.quarantined,
            "replayed": s.replayed,
        }
        for name, value in values.items():
            self.totals[name].set(value)
        self.queue_depth.set(s.queue_depth)
        self.journal_bytes.set(s.journal_bytes)
        self.writer_up.set(int(s.writer_alive))


class MergedCollector(Collector):
    """Every worker's metric files as one exposition, the recorder totals as counters again
    (so that a series has the same name and type with one worker or many)."""

    def __init__(self) -> None:
        self._inner = MultiProcessCollector(None)  # type: ignore[no-untyped-call]

    def collect(self) -> Iterator[Metric]:
        for family in self._inner.collect():  # type: ignore[no-untyped-call]
            name = family.name.removeprefix(_PREFIX)
            if family.type == "gauge" and family.name.startswith(_PREFIX) and name in COUNTERS:
                total = sum(s.value for s in family.samples)
                yield CounterMetricFamily(family.name, COUNTERS[name], value=total)
            else:
                yield family


def forget_dead_workers(path: str | None = None) -> list[int]:
    """Remove the live-mode gauge files of processes that are gone; their pids.

    A worker that exits cleanly removes its own (:func:`mark_process_dead` at shutdown); one
    killed with ``kill -9`` leaves them, and its backlog would be counted forever.
    """
    directory = path or os.environ.get(ENV)
    if not directory:
        return []
    dead: set[int] = set()
    with contextlib.suppress(FileNotFoundError), os.scandir(directory) as entries:
        for entry in entries:
            match = _LIVE_FILE.match(entry.name)
            if match is None:
                continue
            pid = int(match.group(1))
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                dead.add(pid)
            except PermissionError:
                pass  # alive, someone else's
    for pid in dead:
        mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]
    return sorted(dead)


def merged_registry() -> CollectorRegistry:
    """A registry that collects every worker's files (build one per scrape: it is cheap)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MergedCollector())
    return registry
