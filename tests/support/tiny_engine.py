"""A small real engine process for the supervisor's tests: an OpenAI-ish HTTP server.

Run as ``python tiny_engine.py --model M --host H --port P [...]`` (the llama_cpp_server
flags; unknown ones are ignored). ``TINY_ENGINE_MODE`` picks its behaviour: ``ok`` serves;
``crash`` prints a line and exits 3 at once; ``ignore_term`` serves and ignores SIGTERM;
``sick`` answers its first health check, then 500 to every later one.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model_alias", default="tiny")
    args, _ = parser.parse_known_args()
    mode = os.environ.get("TINY_ENGINE_MODE", "ok")
    print(f"tiny engine pid {os.getpid()} mode {mode}", flush=True)
    if mode == "crash":
        print("tiny engine: failing on purpose", flush=True)
        sys.exit(3)
    if mode == "ignore_term":
        signal.signal(signal.SIGTERM, lambda *_: print("tiny engine: ignoring SIGTERM", flush=True))
    checks = {"n": 0}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a: object) -> None:
            pass

        def _send(self, status: int, body: dict[str, object]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            checks["n"] += 1
            if mode == "sick" and checks["n"] > 1:
                self._send(500, {"error": "sick"})
                return
            self._send(
                200, {"object": "list", "data": [{"id": args.model_alias, "object": "model"}]}
            )

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            request = json.loads(self.rfile.read(length) or b"{}")
            self._send(200, {
                "id": "x", "object": "chat.completion", "created": 0, "model": request.get("model"),
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": f"pid {os.getpid()}"}}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
            })  # fmt: skip

    HTTPServer((args.host, args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
