"""Load for the gateway benchmarks: a lean HTTP/1.1 client, ``wrk`` when present, and the
servers under load (started in their own process group, with their CPU time read back).

The client speaks HTTP/1.1 with keep-alive straight over asyncio (uvloop when installed) and
parses answers with httptools, the parser uvicorn uses, so that at concurrency 1 the client adds
a few tens of microseconds and at concurrency 64 it serves some ten thousand requests a second
on one core. ``wrk`` (Debian's ``wrk``) costs less again and is used for throughput when on PATH.

Every run here is bounded twice: in requests and in seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httptools
import orjson

#: A content delta that is not empty, in any JSON spelling ("content":"x" or "content": "x").
_CONTENT = re.compile(rb'"content":\s*"[^"]')
#: Marker that a non-streamed answer echoed the prompt (and a stream carried it, word by word).
ECHO_WORD = "polyroute"


def chat_body(stream: bool) -> bytes:
    """The request every target gets: a short chat completion the echo upstream repeats."""
    body: dict[str, object] = {
        "model": "echo",
        "messages": [{"role": "user", "content": f"{ECHO_WORD} benchmark says hello"}],
        "max_tokens": 16,
    }
    if stream:
        body["stream"] = True
    return orjson.dumps(body)


def answer_ok(status: int, body: bytes, stream: bool) -> bool:
    """A 200 that carries the echoed text (and, for a stream, its ``[DONE]``)."""
    if status != 200:
        return False
    if stream:
        return b"data: [DONE]" in body and ECHO_WORD.encode() in body
    try:
        data = orjson.loads(body)
        content = data["choices"][0]["message"]["content"]
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
        return False
    return isinstance(content, str) and ECHO_WORD in content


@dataclass(slots=True)
class Answer:
    status: int
    body: bytes
    #: Seconds from sending to the whole answer, and to the first non-empty content delta.
    total_s: float
    first_content_s: float | None


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one request in flight at a time."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.closed = False
        self._reset()

    def _reset(self) -> None:
        self.chunks: list[bytes] = []
        self.status = 0
        self.sent_at = 0.0
        self.first_content_at: float | None = None
        self.seen = b""
        self.watch_content = False
        self.keep_alive = True

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc or ConnectionError("connection closed by the server"))

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as e:
            if self.waiter is not None and not self.waiter.done():
                self.waiter.set_exception(e)

    # httptools callbacks
    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        if self.watch_content and self.first_content_at is None:
            # Keep a short tail so that a delta split across two reads is still seen.
            self.seen = self.seen[-64:] + body
            if _CONTENT.search(self.seen):
                self.first_content_at = time.perf_counter()
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)


class Client:
    """Sends one prepared POST over a kept-alive connection, reconnecting when it closes."""

    def __init__(self, host: str, port: int, path: str, body: bytes, headers: dict[str, str]):
        self.host, self.port = host, port
        head = f"POST {path} HTTP/1.1\r\nhost: {host}:{port}\r\ncontent-type: application/json\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        head += f"content-length: {len(body)}\r\n\r\n"
        self.request = head.encode() + body
        self.conn: _Connection | None = None

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(_Connection, self.host, self.port)
        return conn

    async def send(self, *, watch_content: bool = False, timeout_s: float = 30.0) -> Answer:
        if self.conn is None or self.conn.closed:
            self.conn = await self._connect()
        conn = self.conn
        conn._reset()
        conn.watch_content = watch_content
        conn.waiter = asyncio.get_running_loop().create_future()
        assert conn.transport is not None
        conn.sent_at = start = time.perf_counter()
        conn.transport.write(self.request)
        try:
            await asyncio.wait_for(conn.waiter, timeout_s)
        except BaseException:
            self.close()
            raise
        end = time.perf_counter()
        if not conn.keep_alive:
            self.close()
        first = conn.first_content_at - start if conn.first_content_at is not None else None
        return Answer(conn.status, b"".join(conn.chunks), end - start, first)

    def close(self) -> None:
        if self.conn is not None and self.conn.transport is not None:
            self.conn.transport.close()
        self.conn = None


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop when installed (as uvicorn would pick), else asyncio's own loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


@dataclass
class Throughput:
    tool: str
    concurrency: int
    seconds: float
    ok: int = 0
    errors: int = 0
    #: What the errors were, e.g. {"status 502": 3, "timeout": 1}.
    kinds: dict[str, int] = field(default_factory=dict)
    p50_ms: float | None = None
    p99_ms: float | None = None
    #: CPU seconds used during the run: by the server under load (all its processes), the
    #: echo upstream behind it, the load generator, and the whole machine (neighbours too).
    server_cpu_s: float | None = None
    upstream_cpu_s: float | None = None
    load_cpu_s: float | None = None
    machine_cpu_s: float | None = None

    @property
    def rps(self) -> float:
        return self.ok / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_ms_per_request(self) -> float | None:
        if self.server_cpu_s is None or not self.ok:
            return None
        return self.server_cpu_s * 1000 / self.ok

    def cores(self, cpu_s: float | None) -> float | None:
        """Cores' worth of CPU that ``cpu_s`` seconds were over the run."""
        return cpu_s / self.seconds if cpu_s is not None and self.seconds > 0 else None

    def error(self, kind: str, n: int = 1) -> None:
        if n:
            self.errors += n
            self.kinds[kind] = self.kinds.get(kind, 0) + n


async def python_throughput(
    port: int,
    *,
    stream: bool,
    concurrency: int,
    duration_s: float,
    max_requests: int,
    headers: dict[str, str],
    timeout_s: float = 30.0,
    warmup_s: float = 1.0,
    max_warmup_s: float = 60.0,
    on_window: Callable[[str], None] | None = None,
) -> Throughput:
    """``concurrency`` connections, each sending back to back; counted in a steady window.

    The window opens once every connection has had about one answer (``concurrency``
    answers in all) and at least ``warmup_s`` has passed (at most ``max_warmup_s``), and lasts
    ``duration_s``. Only answers that arrive inside it count, so a slow target is not
    undercounted by the answers it still owes when the run starts (wrk's way would cut a
    server that takes 4 s per answer at 64 connections to a fraction of its rate). A request
    that takes ``timeout_s`` is an error. ``on_window("start" | "end")`` is called as the window
    opens and closes (CPU readings).
    """
    body = chat_body(stream)
    result = Throughput("python", concurrency, 0.0)
    latencies: list[float] = []
    budget = [max_requests]
    done = [0]
    counting = [False]
    stopped = [False]

    async def worker() -> None:
        client = Client("127.0.0.1", port, "/v1/chat/completions", body, headers)
        try:
            # The flag, not cancellation alone, ends a worker: Python 3.11's wait_for can
            # swallow a cancel that races with an answer arriving.
            while budget[0] > 0 and not stopped[0]:
                budget[0] -= 1
                try:
                    answer = await client.send(timeout_s=timeout_s)
                except TimeoutError:
                    if counting[0]:
                        result.error("timeout")
                    continue
                except (OSError, httptools.HttpParserError) as e:
                    if counting[0]:
                        result.error(type(e).__name__)
                    await asyncio.sleep(0.01)  # a refused connection must not spin
                    continue
                done[0] += 1
                if not answer_ok(answer.status, answer.body, stream):
                    # Errors in the warm-up count too: no failure may go unseen.
                    result.error(f"status {answer.status}" if answer.status != 200 else "bad body")
                elif counting[0]:
                    result.ok += 1
                    latencies.append(answer.total_s)
        finally:
            client.close()

    tasks = [asyncio.ensure_future(worker()) for _ in range(concurrency)]
    warm_start = time.perf_counter()
    while time.perf_counter() - warm_start < max_warmup_s and not all(t.done() for t in tasks):
        if done[0] >= concurrency and time.perf_counter() - warm_start >= warmup_s:
            break
        await asyncio.sleep(0.02)
    if on_window is not None:
        on_window("start")
    counting[0] = True
    start = time.perf_counter()
    await asyncio.wait(tasks, timeout=duration_s)
    counting[0] = False
    result.seconds = time.perf_counter() - start
    if on_window is not None:
        on_window("end")
    stopped[0] = True
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    if latencies:
        latencies.sort()
        result.p50_ms = percentile(latencies, 50) * 1000
        result.p99_ms = percentile(latencies, 99) * 1000
    return result


def machine_cpu_seconds() -> float | None:
    """CPU seconds the whole machine has been busy (all cores, every process; Linux only)."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    ticks = [int(x) for x in fields]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    busy = sum(ticks[:8]) - idle  # guest time is already inside user time
    return busy / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """CPU seconds of this process and of its finished children (wrk): the load generator."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


_WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = BODY
wrk.headers["Content-Type"] = "application/json"
HEADERS
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) bad = 0 end
function response(status, headers, body)
  if status ~= 200 or not string.find(body, "ECHO", 1, true)
     or (STREAM and not string.find(body, "data: [DONE]", 1, true)) then
    bad = bad + 1
  end
end
function done(summary, latency, requests)
  local b = 0
  for _, t in ipairs(threads) do b = b + t:get("bad") end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bad":%d,"non2xx":%d,"connect":%d,' ..
    '"read":%d,"write":%d,"timeout":%d,"p50_us":%d,"p99_us":%d}\\n',
    summary.requests, summary.duration, b, e.status, e.connect, e.read, e.write,
    e.timeout, latency:percentile(50), latency:percentile(99)))
end
"""


def wrk_path() -> str | None:
    return shutil.which("wrk")


def wrk_throughput(
    port: int,
    *,
    stream: bool,
    concurrency: int,
    duration_s: float,
    headers: dict[str, str],
) -> Throughput:
    """One wrk thread with ``concurrency`` connections for ``duration_s`` seconds."""
    wrk = wrk_path()
    assert wrk is not None
    lua = (
        _WRK_SCRIPT.replace("BODY", json.dumps(chat_body(stream).decode()))
        .replace(
            "HEADERS",
            "".join(
                f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}\n" for k, v in headers.items()
            ),
        )
        .replace("ECHO", ECHO_WORD)
        .replace("STREAM", "true" if stream else "false")
    )
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(lua)
        script = f.name
    seconds = max(1, round(duration_s))
    cmd = [
        wrk,
        "-t1",
        f"-c{concurrency}",
        f"-d{seconds}s",
        "--timeout",
        "30s",
        "-s",
        script,
        f"http://127.0.0.1:{port}/v1/chat/completions",
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    finally:
        with contextlib.suppress(OSError):
            Path(script).unlink()
    line = next((x for x in proc.stdout.splitlines() if x.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary (rc {proc.returncode}):\n{proc.stderr}")
    s = json.loads(line[len("WRKJSON ") :])
    # wrk counts a non-2xx answer both in requests and in "status"; "bad" covers those too.
    result = Throughput("wrk", concurrency, s["duration_us"] / 1e6)
    result.ok = s["requests"] - s["bad"]
    result.error("status not 200 or bad body", s["bad"])
    for kind in ("connect", "read", "write", "timeout"):
        result.error(f"socket {kind}", s[kind])
    result.p50_ms, result.p99_ms = s["p50_us"] / 1000, s["p99_us"] / 1000
    return result


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


@dataclass
class Latencies:
    """Per-request seconds at concurrency 1, for one target and one mode."""

    total: list[float] = field(default_factory=list)
    #: To the first non-empty content delta; streams only.
    first: list[float] = field(default_factory=list)
    errors: int = 0

    def ms(self, q: float, first: bool = False) -> float:
        return percentile(sorted(self.first if first else self.total), q) * 1000


async def interleaved(
    ports: dict[str, int],
    *,
    stream: bool,
    n: int,
    warmup: int,
    max_s: float,
    headers: dict[str, str],
) -> dict[str, Latencies]:
    """``n`` sequential requests to each target, alternating targets request by request, so
    that a busy neighbour on the machine slows every target alike."""
    body = chat_body(stream)
    clients = {
        k: Client("127.0.0.1", p, "/v1/chat/completions", body, headers) for k, p in ports.items()
    }
    out = {k: Latencies() for k in ports}
    deadline = time.perf_counter() + max_s
    try:
        for i in range(warmup + n):
            if time.perf_counter() > deadline:
                break
            for name, client in clients.items():
                try:
                    a = await client.send(watch_content=stream, timeout_s=30)
                except (TimeoutError, OSError, httptools.HttpParserError):
                    out[name].errors += 1
                    continue
                if not answer_ok(a.status, a.body, stream) or (
                    stream and a.first_content_s is None
                ):
                    out[name].errors += 1
                elif i >= warmup:
                    out[name].total.append(a.total_s)
                    if a.first_content_s is not None:
                        out[name].first.append(a.first_content_s)
    finally:
        for client in clients.values():
            client.close()
    return out


# ------------------------------------------------------------------------ servers under load


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A server started in a session of its own, so that stopping it stops its workers too."""

    def __init__(
        self, name: str, cmd: list[str], port: int, *, cwd: Path, logdir: Path, env: dict[str, str]
    ) -> None:
        self.name, self.cmd, self.port, self.cwd, self.env = name, cmd, port, cwd, env
        self.log = logdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def start(self, ready_path: str, timeout_s: float) -> Server:
        """Start it and wait (at most ``timeout_s``) until ``GET ready_path`` answers 200."""
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                self.cmd,
                cwd=self.cwd,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout_s
        url = f"http://127.0.0.1:{self.port}{ready_path}"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}):\n{self.tail()}")
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{self.name} not ready after {timeout_s:g} s:\n{self.tail()}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        # The group is the one start_new_session made for this server: its processes alone.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGINT)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def cpu_seconds(self) -> float | None:
        """User + system CPU of the server and every process below it (Linux only)."""
        if self.pid is None or not Path("/proc").is_dir():
            return None
        stats: dict[int, tuple[int, float]] = {}  # pid -> (parent, cpu seconds)
        tick = os.sysconf("SC_CLK_TCK")
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            # After "pid (comm)": state ppid ... utime stime at fields 14 and 15 of stat(5).
            stats[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
        tree, frontier = {self.pid}, [self.pid]
        while frontier:
            parent = frontier.pop()
            for pid, (ppid, _) in stats.items():
                if ppid == parent and pid not in tree:
                    tree.add(pid)
                    frontier.append(pid)
        return sum(stats[p][1] for p in tree if p in stats)

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
