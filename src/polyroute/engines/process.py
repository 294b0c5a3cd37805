"""One supervised engine process: start, readiness, health checks, restarts, stop.

States::

    starting ──ready──► ready ──exit / 3 failed checks──► restarting ──backoff──► starting
       │                  │                                   │
       │                  └──idle_timeout_s──► idle ──request──► starting
       └──────── more than max_restarts crashes within restart_window_s ──► down

No orphans. The engine runs in a session (process group) of its own, so stopping it signals
every process it spawned (vLLM's workers too): SIGTERM, then SIGKILL after ``stop_grace_s``.
If polyroute itself dies without stopping it (SIGKILL, a crash), Linux's PR_SET_PDEATHSIG,
set in the child before it executes the engine, has the kernel SIGKILL the engine at once.
(PDEATHSIG fires when the thread that forked the child exits: engines are forked from the
event loop's thread, which lives as long as the gateway.) Elsewhere only the first holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import httpx

from polyroute.config import EngineConfig
from polyroute.engines.commands import EngineCommand

log = logging.getLogger("polyroute.engines")

STARTING, READY, RESTARTING, IDLE, DOWN, STOPPED = (
    "starting", "ready", "restarting", "idle", "down", "stopped",
)  # fmt: skip
#: States in which a router may choose the model (an idle engine starts on demand).
ROUTABLE = frozenset({READY, IDLE})
_FAILED_CHECKS = 3
_PR_SET_PDEATHSIG = 1
_LOG_LINES = 50

try:
    _libc: Any = ctypes.CDLL(None, use_errno=True)  # loaded before any fork
except OSError:  # pragma: no cover - not Linux
    _libc = None


def _die_with_parent(parent: int) -> Callable[[], None]:
    def setup() -> None:  # runs in the child, between fork and exec
        if _libc is not None and hasattr(_libc, "prctl"):
            _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return setup


class EngineProcess:
    """Supervises one engine; state changes are reported through ``on_change(routable)``."""

    def __init__(
        self,
        name: str,
        config: EngineConfig,
        command: EngineCommand,
        *,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        self.name = name
        self.config = config
        self.command = command
        self.on_change = on_change
        self.state = STOPPED
        self.detail = "not started"
        self.pid: int | None = None
        self.restarts = 0
        self.started_at: float | None = None
        self.log: deque[str] = deque(maxlen=_LOG_LINES)
        #: polyroute's own lines about this engine (starts, exits, signals), kept apart from
        #: the engine's output, which can be hundreds of lines at each start.
        self.events: deque[str] = deque(maxlen=20)
        self.in_flight = 0
        self.last_used = time.monotonic()
        self._proc: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._crashes: deque[float] = deque()

    # -- what the provider and /health see -----------------------------------------------------

    def status(self) -> dict[str, Any]:
        return {
            "kind": self.config.kind,
            "state": self.state,
            "detail": self.detail,
            "pid": self.pid,
            "port": self.command.port,
            "restarts": self.restarts,
            "uptime_s": round(time.time() - self.started_at, 1)
            if self.started_at and self.state == READY
            else None,
            "command": self.command.argv,
            "events": list(self.events),
            "log": list(self.log)[-20:],
        }

    async def wait_ready(self, timeout_s: float) -> bool:
        """Wait (bounded) for the engine to serve, starting it if it is idle."""
        if self.state == READY:
            return True
        if self.state == IDLE:
            self._wake.set()
        if self.state in (DOWN, STOPPED):
            return False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), timeout_s)
        return self.state == READY

    def begin(self) -> None:
        self.in_flight += 1
        self.last_used = time.monotonic()

    def end(self) -> None:
        self.in_flight -= 1
        self.last_used = time.monotonic()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start supervising (returns at once; :meth:`wait_ready` waits for readiness)."""
        if self._task is None:
            self._stop.clear()
            self.state, self.detail = STARTING, "starting"  # so that waiters wait from now
            self._task = asyncio.create_task(self._supervise(), name=f"engine-{self.name}")

    async def stop(self) -> None:
        """Stop the engine cleanly (SIGTERM, then SIGKILL after the grace period)."""
        self._stop.set()
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._terminate()
        self._set(STOPPED, "stopped")

    def _set(self, state: str, detail: str) -> None:
        was = self.state in ROUTABLE
        self.state, self.detail = state, detail
        if state == READY:
            self._ready.set()
        else:
            self._ready.clear()
        if state in (DOWN, STOPPED):
            self._ready.set()  # wake waiters: they see it is not ready and give up
            self._ready.clear()
        now = state in ROUTABLE
        if self.on_change is not None and now != was:
            self.on_change(now)
        log.info("engine %s: %s (%s)", self.name, state, detail)

    async def _supervise(self) -> None:
        while not self._stop.is_set():
            self._set(STARTING, "starting: " + " ".join(self.command.argv[:4]) + " ...")
            reason = await self._spawn_and_wait()
            if reason is None:
                self._set(READY, f"serving at {self.command.base_url}")
                reason = await self._watch()
            if self._stop.is_set():
                return
            self._event(reason)
            if reason == "idle":
                # Idle before it stops: a request arriving meanwhile waits, then wakes it.
                self._wake.clear()
                self._set(IDLE, f"stopped after {self.config.idle_timeout_s:g}s idle; "
                          "the next request starts it")  # fmt: skip
                await self._terminate()
                await self._wake.wait()
                continue
            await self._terminate()
            now = time.monotonic()
            self._crashes.append(now)
            while self._crashes and now - self._crashes[0] > self.config.restart_window_s:
                self._crashes.popleft()
            if len(self._crashes) > self.config.max_restarts:
                self._set(
                    DOWN,
                    f"{reason}; crashed {len(self._crashes)} times within "
                    f"{self.config.restart_window_s:g}s (max_restarts: "
                    f"{self.config.max_restarts}), so it is marked down; its last log lines: "
                    + " | ".join([x for x in self.log if not x.startswith("[polyroute]")][-5:]),
                )
                return
            delay = min(
                self.config.backoff_s * 2 ** (len(self._crashes) - 1), self.config.backoff_max_s
            )
            self._set(RESTARTING, f"{reason}; restarting in {delay:g}s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)
            self.restarts += 1

    async def _spawn_and_wait(self) -> str | None:
        """Start the process and wait for its health check; None when ready, else why not."""
        env = {**os.environ, **self.command.env}
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *self.command.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=env,
                start_new_session=True,
                preexec_fn=_die_with_parent(os.getpid()),
            )
        except OSError as e:
            self._event(f"could not run {self.command.argv[0]}: {e}")
            return f"could not start: {e}"
        self.pid = self._proc.pid
        self.started_at = time.time()
        self._event(f"started pid {self.pid}: {' '.join(self.command.argv)}")
        self._reader = asyncio.create_task(self._read_log(self._proc))
        deadline = time.monotonic() + self.config.startup_timeout_s
        async with httpx.AsyncHTTPTransport() as client:
            while time.monotonic() < deadline:
                if self._stop.is_set():
                    return "stopping"
                if self._proc.returncode is not None:
                    return f"exited with status {self._proc.returncode} while starting"
                if await self._check(client, 2.0):
                    return None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._proc.wait(), 0.25)
        return f"not ready within startup_timeout_s={self.config.startup_timeout_s:g}s"

    async def _check(self, client: httpx.AsyncBaseTransport, timeout_s: float) -> bool | None:
        """True: healthy; False: failed; None: no answer in time while requests are in flight
        (llama.cpp's server answers its health route only between generations: busy).

        Straight through the transport: httpx's client would log every check at INFO."""
        request = httpx.Request(
            "GET",
            self.command.health_url,
            extensions={"timeout": httpx.Timeout(timeout_s).as_dict()},
        )
        try:
            response = await client.handle_async_request(request)
            await response.aclose()
        except httpx.TimeoutException:
            return None if self.in_flight else False
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    async def _watch(self) -> str:
        """Return why the running engine stopped serving: an exit, failed checks, idleness."""
        proc = self._proc
        assert proc is not None
        exited = asyncio.ensure_future(proc.wait())
        stopping = asyncio.ensure_future(self._stop.wait())
        failures = 0
        try:
            async with httpx.AsyncHTTPTransport() as client:
                while True:
                    done, _ = await asyncio.wait(
                        {exited, stopping},
                        timeout=self.config.health_interval_s,
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                    if stopping in done:
                        return "stopping"
                    if exited in done:
                        return f"exited with status {proc.returncode}"
                    idle = self.config.idle_timeout_s
                    if idle and not self.in_flight and time.monotonic() - self.last_used > idle:
                        return "idle"
                    ok = await self._check(client, 5.0)
                    if ok is not None:
                        failures = 0 if ok else failures + 1
                    if failures >= _FAILED_CHECKS:
                        return f"failed {failures} health checks in a row"
        finally:
            exited.cancel()
            stopping.cancel()

    async def _read_log(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        checks = f'"GET {self.command.health_path} '  # our own health checks: not news
        while line := await proc.stdout.readline():
            text = line.decode("utf-8", "replace").rstrip()
            if text and not (checks in text and " 200" in text):
                self.log.append(text)
                log.debug("engine %s: %s", self.name, text)

    async def _terminate(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.returncode is None:
            self._signal(proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), self.config.stop_grace_s)
            except TimeoutError:
                self._event(f"no exit {self.config.stop_grace_s:g}s after SIGTERM: SIGKILL")
                self._signal(proc.pid, signal.SIGKILL)
                await proc.wait()
        else:
            self._signal(proc.pid, signal.SIGKILL)  # what it left behind in its group
        self._event(f"pid {proc.pid} exited with status {proc.returncode}")
        if self._reader is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._reader, 2.0)
            self._reader = None
        self.pid = None

    def _event(self, text: str) -> None:
        line = f"[polyroute] {text}"
        self.log.append(line)
        self.events.append(time.strftime("%H:%M:%S ") + text)

    @staticmethod
    def _signal(pid: int, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)  # its own session: pgid == pid
