"""A throwaway PostgreSQL server for the tests, started from the Debian binaries.

``POLYROUTE_TEST_POSTGRES_URL`` (a ``postgresql://`` URL whose user may create databases)
points the tests at an existing server instead. Otherwise ``initdb`` and ``pg_ctl`` from
``/usr/lib/postgresql/*/bin`` start one in a temporary directory, listening on 127.0.0.1
at a free port, with fsync off. PostgreSQL refuses to run as root, so as root (CI) it runs
as the ``postgres`` user the Debian package creates (or ``nobody``). Each test gets a fresh
database. Where the binaries are missing the tests skip, except under CI (``CI`` set),
where that is a broken setup and fails loudly.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ENV_URL = "POLYROUTE_TEST_POSTGRES_URL"


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    return Path(found[0]).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """One PostgreSQL server in a temporary directory (see the module docstring)."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.port = _free_port()
        self.root = Path(tempfile.mkdtemp(prefix="polyroute-pg-"))
        self.data = self.root / "data"
        self.user: str | None = None
        if os.geteuid() == 0:
            for name in ("postgres", "nobody"):
                with contextlib.suppress(KeyError):
                    entry = pwd.getpwnam(name)
                    os.chown(self.root, entry.pw_uid, entry.pw_gid)
                    self.user = name
                    break

    def _run(self, *args: str) -> None:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if self.user is not None:
            command = ["runuser", "-u", self.user, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, cwd=self.root, timeout=120)
        if done.returncode != 0:
            log = self.root / "log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(
                f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}{done.stderr}{tail}"
            )

    def start(self) -> str:
        """Start the server; return the admin URL (psycopg form)."""
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                  "-E", "UTF8", "--no-sync")  # fmt: skip
        options = f"-F -p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.root / "log"),
                  "-w", "-t", "60", "start")  # fmt: skip
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The admin URL (``postgresql://...``) of a PostgreSQL server for this test session."""
    if os.environ.get(ENV_URL):
        yield os.environ[ENV_URL].replace("postgresql+psycopg://", "postgresql://", 1)
        return
    bin_dir = _bin_dir()
    if bin_dir is None:
        message = (
            "PostgreSQL binaries not found under /usr/lib/postgresql/*/bin: "
            "apt-get install postgresql, or set POLYROUTE_TEST_POSTGRES_URL"
        )
        if os.environ.get("CI"):
            pytest.fail(message + " (CI is set: PostgreSQL tests must run there)")
        pytest.skip(message)
    server = PostgresServer(bin_dir)
    try:
        url = server.start()
        yield url
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A SQLAlchemy URL to a fresh, empty database on the session's server."""
    import psycopg

    name = f"polyroute_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = postgres_server.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    yield f"{base}/{name}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest) -> str:
    """The same test on SQLite and on PostgreSQL: a fresh database's URL."""
    fixture = "db_url" if request.param == "sqlite" else "postgres_url"
    return str(request.getfixturevalue(fixture))
