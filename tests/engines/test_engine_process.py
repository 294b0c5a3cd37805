"""The supervisor with a real (small) engine process: readiness, restart after a kill, the
crash-loop limit, failed health checks, SIGTERM then SIGKILL, idle scale-to-zero, and no
orphan when the supervising process is SIGKILLed."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from polyroute.config import EngineConfig, ModelConfig
from polyroute.engines import EngineProcess, build_command
from polyroute.engines.manager import free_port
from polyroute.engines.process import DOWN, IDLE, READY, STOPPED

TINY = Path(__file__).resolve().parents[1] / "support" / "tiny_engine.py"
REPO = Path(__file__).resolve().parents[2]


def _engine(mode: str = "ok", **options: object) -> tuple[EngineProcess, list[bool]]:
    config = EngineConfig.model_validate(
        {"kind": "llama_cpp_server", "command": [sys.executable, str(TINY)],
         "env": {"TINY_ENGINE_MODE": mode}, "backoff_s": 0.05, "health_interval_s": 0.1,
         "startup_timeout_s": 30, **options}
    )  # fmt: skip
    model = ModelConfig(name="tiny", engine=config, path="/dev/null")
    changes: list[bool] = []
    return EngineProcess("tiny", config, build_command(model, "/dev/null", free_port()),
                         on_change=changes.append), changes  # fmt: skip


async def _until(check: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")  # a zombie has stopped running; only its reaping is left


async def test_a_killed_engine_is_restarted_and_routers_hear_of_it() -> None:
    engine, changes = _engine()
    engine.start()
    try:
        assert await engine.wait_ready(30)
        first = engine.pid
        assert first is not None and engine.status()["state"] == READY
        os.kill(first, signal.SIGKILL)
        await _until(lambda: engine.state == READY and engine.pid not in (None, first), "a restart")
        assert engine.restarts == 1
        assert changes == [True, False, True]
        assert any("exited with status -9" in line for line in engine.log)
    finally:
        await engine.stop()
    assert engine.state == STOPPED and _gone(first)


async def test_a_crash_loop_marks_the_engine_down_with_its_last_log_lines() -> None:
    engine, changes = _engine("crash", max_restarts=2)
    engine.start()
    try:
        assert not await engine.wait_ready(30)  # gives up once it is down, not at the timeout
        assert engine.state == DOWN
        assert engine.restarts == 2
        assert "crashed 3 times" in engine.detail
        assert "tiny engine: failing on purpose" in engine.detail
        assert changes == []  # never routable
    finally:
        await engine.stop()


async def test_failed_health_checks_restart_a_live_engine() -> None:
    engine, _ = _engine("sick", max_restarts=10)
    engine.start()
    try:
        assert await engine.wait_ready(30)
        await _until(lambda: engine.restarts >= 1, "a restart after failed checks")
        assert any("failed 3 health checks in a row" in line for line in engine.log)
    finally:
        await engine.stop()


async def test_stop_sends_sigterm_then_sigkill_after_the_grace_period() -> None:
    engine, _ = _engine("ignore_term", stop_grace_s=0.5)
    engine.start()
    assert await engine.wait_ready(30)
    pid = engine.pid
    assert pid is not None
    await engine.stop()
    assert _gone(pid)
    assert any("SIGKILL" in line for line in engine.log)
    assert any("ignoring SIGTERM" in line for line in engine.log)


async def test_an_idle_engine_stops_and_the_next_request_starts_it() -> None:
    engine, changes = _engine(idle_timeout_s=0.3)
    engine.start()
    try:
        assert await engine.wait_ready(30)
        first = engine.pid
        assert first is not None
        await _until(lambda: engine.state == IDLE and engine.pid is None, "scale to zero")
        assert _gone(first)
        assert changes == [True]  # an idle engine stays routable: it starts on demand
        assert await engine.wait_ready(30)
        assert engine.pid not in (None, first)
        engine.begin()  # a request in flight keeps it up past the idle timeout
        await asyncio.sleep(0.6)
        assert engine.state == READY
        engine.end()
    finally:
        await engine.stop()


_ORPHAN_PARENT = """
import asyncio, sys
sys.path[:0] = [{src!r}, {repo!r}]
from tests.engines.test_engine_process import _engine

async def main():
    engine, _ = _engine()
    engine.start()
    assert await engine.wait_ready(30)
    print(engine.pid, flush=True)
    await asyncio.sleep(120)

asyncio.run(main())
"""


def test_no_orphan_when_the_supervisor_is_killed() -> None:
    code = _ORPHAN_PARENT.format(src=str(REPO / "src"), repo=str(REPO))
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        line = parent.stdout.readline()
        engine_pid = int(line)
        assert not _gone(engine_pid)
        parent.send_signal(signal.SIGKILL)  # no chance to stop its engine
        parent.wait(10)
        deadline = time.monotonic() + 10
        while not _gone(engine_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _gone(engine_pid), "the engine outlived the process that supervised it"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(10)
