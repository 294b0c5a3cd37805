"""A throwaway Redis server for the tests, started from Debian's ``redis-server``.

``POLYROUTE_TEST_REDIS_URL`` points the tests at an existing server instead (tests count
under the ids of keys they create, random each time, so they never meet).
Otherwise ``redis-server`` starts in a temporary directory, on 127.0.0.1 at a free port,
without persistence. Where it is missing the tests skip, except under CI (``CI`` set),
where that is a broken setup and fails loudly (``.ci/run`` installs it).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ENV_URL = "POLYROUTE_TEST_REDIS_URL"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def redis_server() -> Iterator[str]:
    """The URL (``redis://127.0.0.1:PORT``) of a Redis server for this test session."""
    if os.environ.get(ENV_URL):
        yield os.environ[ENV_URL].rstrip("/")
        return
    exe = shutil.which("redis-server")
    if exe is None:
        message = "redis-server not found: apt-get install redis-server, or set " + ENV_URL
        if os.environ.get("CI"):
            pytest.fail(message + " (CI is set: the Redis tests must run there)")
        pytest.skip(message)
    root = Path(tempfile.mkdtemp(prefix="polyroute-redis-"))
    port = _free_port()
    proc = subprocess.Popen(
        [exe, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(root),
         "--save", "", "--appendonly", "no", "--logfile", str(root / "log")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log = root / "log"
                raise RuntimeError(
                    f"redis-server did not start: {log.read_text()[-2000:] if log.exists() else ''}"
                )
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def redis_url(redis_server: str) -> str:
    """A Redis URL for one test (database 0)."""
    return f"{redis_server}/0"
