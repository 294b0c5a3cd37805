"""A local, bounded Ray cluster for the tests: ``ray start --head --block`` on 127.0.0.1.

It runs in a process group of its own, with its own temporary directory, 2 CPUs, no
dashboard and no usage stats; the replicas it starts import polyroute from this checkout
(``PYTHONPATH``). Stopping it ends that process group (SIGTERM, then SIGKILL): only what
this fixture started, however the test ended.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class RayCluster:
    """A running head node: its GCS address and the environment that talks to it."""

    address: str
    env: dict[str, str]
    temp_dir: Path
    #: ``ray start --block``: every process of the cluster runs below it.
    process: subprocess.Popen[bytes]


def ray_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of the cluster's processes (and of the clients that join it)."""
    return {
        **os.environ,
        "PYTHONPATH": str(REPO / "src") + os.pathsep + str(REPO),
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_DEDUP_LOGS": "0",
        # A client or worker gives up on a GCS that is gone after 10 s, not Ray's 60.
        "RAY_gcs_rpc_server_reconnect_timeout_s": "10",
        **(extra or {}),
    }


def _ray_bin() -> str:
    return str(Path(sys.executable).with_name("ray"))


def _ready(address: str, env: dict[str, str]) -> bool:
    done = subprocess.run(
        [_ray_bin(), "status", "--address", address],
        env=env,
        capture_output=True,
        timeout=30,
    )
    return done.returncode == 0


@contextlib.contextmanager
def running_ray_cluster(
    num_cpus: int = 2, extra_env: dict[str, str] | None = None, timeout_s: float = 60
) -> Iterator[RayCluster]:
    """Start a head node; yield it once ``ray status`` answers; stop it afterwards."""
    temp_dir = Path(tempfile.mkdtemp(prefix="pr-ray-", dir="/tmp"))  # short: socket paths
    port = free_port()
    env = ray_env(extra_env)
    log = open(temp_dir / "ray-start.log", "wb")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(
        [_ray_bin(), "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
         "--port", str(port), "--num-cpus", str(num_cpus), "--include-dashboard", "false",
         "--disable-usage-stats", "--temp-dir", str(temp_dir)],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while not _ready(address, env):
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = (temp_dir / "ray-start.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"ray start did not come up:\n{tail}")
            time.sleep(0.5)
        yield RayCluster(address, {**env, "RAY_ADDRESS": address}, temp_dir, proc)
    finally:
        _stop_group(proc)
        log.close()
        shutil.rmtree(temp_dir, ignore_errors=True)  # the session's logs and sockets


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """End the cluster's process group: SIGTERM, then SIGKILL after 5 s (a test cluster
    keeps nothing worth a longer wait)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _group_alive(proc.pid):
        proc.poll()
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(10)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def replica_pids(deployment: str = "Gateway") -> list[int]:
    """PIDs of the live processes whose title names a Serve replica of ``deployment``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if title.startswith("ray::ServeReplica") and f":{deployment}" in title:
            found.append(int(entry.name))
    return sorted(found)
