"""What translating between APIs costs per request, against parsing the JSON it translates.

The native providers (``anthropic``, ``gemini``) and ``POST /v1/messages`` translate each
request and answer between OpenAI's shape and the vendor's. This times those pure
functions, in-process, on a typical agent turn (system prompt, 6 messages, a tool call and
its result, 2 tools) and a 200-chunk stream, against the baseline of one ``orjson`` parse
and dump of the same body (which the gateway does anyway), measured in the same run.

    python benchmarks/translation_overhead.py            # ~5 s
    python benchmarks/translation_overhead.py --quick    # ~1 s
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from polyroute.gateway.messages_protocol import to_openai, validate_messages_request  # noqa: E402
from polyroute.gateway.messages_wire import MessageStream, to_message  # noqa: E402
from polyroute.providers import anthropic_wire, gemini_wire  # noqa: E402

TOOL = {"type": "function", "function": {"name": "read_file", "description": "Read a file",
        "parameters": {"type": "object", "properties": {"path": {"type": "string"}}}}}  # fmt: skip
CALL = {"id": "call_1", "type": "function",
        "function": {"name": "read_file", "arguments": '{"path": "src/app.py"}'}}  # fmt: skip
OPENAI: dict[str, Any] = {
    "model": "m",
    "max_tokens": 1024,
    "tools": [TOOL, {**TOOL, "function": {**TOOL["function"], "name": "write_file"}}],
    "messages": [
        {"role": "system", "content": "You are a careful coding assistant. " * 20},
        {"role": "user", "content": "Fix the bug in src/app.py, please. " * 5},
        {"role": "assistant", "content": "Let me read it.", "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "call_1", "content": "def f():\n    return 1\n" * 40},
        {"role": "assistant", "content": "The function returns 1; it should return 2."},
        {"role": "user", "content": "Go ahead."},
    ],
}
ANTHROPIC_ANSWER = {
    "id": "msg_1", "type": "message", "role": "assistant", "model": "m",
    "content": [
        {"type": "text", "text": "Done. " * 50},
        {"type": "tool_use", "id": "toolu_1", "name": "write_file", "input": {"path": "a"}},
    ],
    "stop_reason": "tool_use",
    "usage": {"input_tokens": 900, "output_tokens": 80, "cache_read_input_tokens": 500},
}  # fmt: skip
OPENAI_ANSWER = anthropic_wire.from_anthropic(ANTHROPIC_ANSWER, json_mode=False)
DELTA = {"index": 0, "delta": {"content": "word "}, "finish_reason": None}
CHUNK = {
    "id": "c",
    "object": "chat.completion.chunk",
    "created": 0,
    "model": "m",
    "choices": [DELTA],
}


def per_call_us(fn: Callable[[], object], seconds: float) -> float:
    """Median over 5 rounds of the mean time of one call, in microseconds."""
    rounds = []
    for _ in range(5):
        n, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds / 5:
            for _ in range(50):
                fn()
            n += 50
        rounds.append(elapsed / n * 1e6)
    return statistics.median(rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    budget = 0.12 if args.quick else 0.6

    raw = orjson.dumps(OPENAI)
    inbound = anthropic_wire.to_anthropic(OPENAI)
    inbound_raw = orjson.dumps(inbound)

    def stream_anthropic() -> None:
        s = MessageStream("t", "m")
        s.start()
        for _ in range(200):
            s.feed(CHUNK)
        s.end()

    def parse_stream() -> None:
        for _ in range(200):
            orjson.dumps(orjson.loads(orjson.dumps(CHUNK)))

    cases = {
        "baseline: orjson loads+dumps of the request": lambda: orjson.dumps(orjson.loads(raw)),
        "anthropic provider: request out + answer back": lambda: (
            anthropic_wire.to_anthropic(OPENAI),
            anthropic_wire.from_anthropic(ANTHROPIC_ANSWER, json_mode=False),
        ),
        "gemini provider: request out": lambda: gemini_wire.to_gemini(OPENAI),
        "/v1/messages: validate + to OpenAI + answer back": lambda: (
            to_openai(validate_messages_request(orjson.loads(inbound_raw)), inbound),
            to_message(OPENAI_ANSWER, "t"),
        ),
        "baseline: 200 stream chunks dumped, parsed, dumped": parse_stream,
        "/v1/messages: 200 stream chunks to Anthropic events": stream_anthropic,
    }
    print(f"request body {len(raw)} bytes; python {sys.version.split()[0]}")
    for name, fn in cases.items():
        print(f"{per_call_us(fn, budget):9.1f} µs  {name}")
    print("reproduce: python benchmarks/translation_overhead.py")


if __name__ == "__main__":
    main()
