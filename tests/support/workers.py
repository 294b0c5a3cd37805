"""``polyroute serve --workers N`` in a process of its own, for tests and benchmarks.

The processes are found through /proc (Linux): the supervisor's children are the workers,
and a worker's children are its trace writer (and any engine).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def children(pid: int) -> list[int]:
    """The child processes of ``pid`` now."""
    out: list[int] = []
    with contextlib.suppress(FileNotFoundError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(FileNotFoundError):
                text = Path(f"/proc/{pid}/task/{task}/children").read_text()
                out += [int(p) for p in text.split()]
    return sorted(set(out))


def cmdline(pid: int) -> str:
    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    return ""


def worker_pids(supervisor: int) -> list[int]:
    """uvicorn's worker processes (multiprocessing's helpers aside)."""
    return [
        p
        for p in children(supervisor)
        if "spawn_main" in cmdline(p) and "resource_tracker" not in cmdline(p)
    ]


def writer_pids(worker: int) -> list[int]:
    return [p for p in children(worker) if "polyroute.store.writer" in cmdline(p)]


def wait_for_workers(supervisor: int, n: int, timeout_s: float = 60) -> list[int]:
    """The pids of ``n`` workers, each with its writer running."""
    deadline = time.monotonic() + timeout_s
    while True:
        pids = worker_pids(supervisor)
        if len(pids) == n and all(writer_pids(p) for p in pids):
            return pids
        if time.monotonic() > deadline:
            raise RuntimeError(f"expected {n} workers with writers, found {pids}")
        time.sleep(0.1)


@contextlib.contextmanager
def serving_workers(
    config: Path, workers: int, *, env: dict[str, str] | None = None, timeout_s: float = 90
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``polyroute serve --workers N``; yield (root URL, the supervisor) once all answer.

    Stopped with SIGTERM (as a service manager would), SIGKILL past 30 s.
    """
    port = free_port()
    log = tempfile.TemporaryFile()  # noqa: SIM115  # not a pipe: nobody reads it unless it fails
    full_env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'src'}", **(env or {})}
    proc = subprocess.Popen(
        [sys.executable, "-c", "from polyroute.cli.main import main; main()", "serve",
         "--config", str(config), "--port", str(port), "--workers", str(workers),
         "--log-level", "warning"],
        env=full_env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    root = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{root}/health/live", timeout=1).status_code == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                log.seek(0)
                out = log.read().decode(errors="replace")
                raise RuntimeError(f"polyroute serve --workers did not start:\n{out[-3000:]}")
            time.sleep(0.1)
        wait_for_workers(proc.pid, workers, max(1.0, deadline - time.monotonic()))
        yield root, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        log.close()
