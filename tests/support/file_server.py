"""A real HTTP file server on 127.0.0.1 for the model store's tests, with faults to order.

It serves files from a dict, honours ``Range: bytes=N-`` (206 with Content-Range) and
records every request's path and range. Faults, set per path before a request:
``cut_after[path] = N`` sends the full Content-Length but closes the connection after N
bytes (once, then it is cleared); ``ignore_range`` answers 200 with the whole file;
``delay_s`` slows each response (to make concurrent pulls overlap).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class FileServer:
    files: dict[str, bytes] = field(default_factory=dict)
    cut_after: dict[str, int] = field(default_factory=dict)
    ignore_range: set[str] = field(default_factory=set)
    delay_s: float = 0.0
    #: (path, range header or None), in arrival order.
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    url: str = ""

    def full_downloads(self, path: str) -> int:
        return sum(1 for p, r in self.requests if p == path and r is None)


def _handler(state: FileServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            path = self.path
            rng = self.headers.get("Range")
            state.requests.append((path, rng))
            if state.delay_s:
                time.sleep(state.delay_s)
            data = state.files.get(path)
            if data is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            start = 0
            if rng and path not in state.ignore_range:
                start = int(rng.removeprefix("bytes=").split("-")[0])
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            body = data[start:]
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            cut = state.cut_after.pop(path, None)
            if cut is not None:
                self.wfile.write(body[: max(0, cut - start)])
                self.wfile.flush()
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(2)
                return
            self.wfile.write(body)

    return Handler


@contextlib.contextmanager
def running_file_server() -> Iterator[FileServer]:
    state = FileServer()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
