"""What putting streamed tool calls in OpenAI's form costs per relayed chunk.

Every provider's stream goes through :class:`polyroute.providers.tool_stream.ToolCallStream`,
so its cost on a plain text chunk is paid on the gateway's hot path. Figures (ns per chunk,
the best of ``--repeat`` rounds of ``--number`` calls), against the baseline every relayed
chunk pays already: ``orjson.loads`` of the same chunk. Tool-call chunks are parsed in each
call (the fix rewrites them in place), so their rows are loads + fix against loads alone.

- **text chunk**: a content delta (the common case);
- **tool-call argument chunk**: a piece of a call's arguments, in OpenAI's form;
- **repeating chunk**: the same piece with the id and name repeated (llama-cpp-python).

Usage::

    python benchmarks/tool_stream.py
    python benchmarks/tool_stream.py --number 50000 --repeat 3
"""

from __future__ import annotations

import argparse
import sys
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from polyroute.providers.tool_stream import ToolCallStream


def _chunk(delta: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
    }


TEXT = _chunk({"content": "hello"})
PIECE = _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"'}}]})
REPEAT = _chunk(
    {
        "tool_calls": [
            {
                "index": 0,
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '"Paris"'},
            }
        ]
    }
)


def _ns(fn: Callable[[], object], number: int, repeat: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e9


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--number", type=int, default=200_000, help="calls per round")
    parser.add_argument("--repeat", type=int, default=5, help="rounds (the best one counts)")
    args = parser.parse_args(argv)

    stream = ToolCallStream()
    # A call under way, so that argument pieces take the path they take in a real stream.
    stream.fix(orjson.loads(orjson.dumps(REPEAT)))
    raw, piece, repeat = orjson.dumps(TEXT), orjson.dumps(PIECE), orjson.dumps(REPEAT)
    rows = [
        ("baseline: orjson.loads(text chunk)", lambda: orjson.loads(raw)),
        ("fix(text chunk)", lambda: stream.fix(TEXT)),
        # Parsed each call (the fix rewrites in place), as the relay parses every chunk.
        ("baseline: orjson.loads(argument chunk)", lambda: orjson.loads(piece)),
        ("loads + fix(argument chunk)", lambda: stream.fix(orjson.loads(piece))),
        ("baseline: orjson.loads(repeating chunk)", lambda: orjson.loads(repeat)),
        ("loads + fix(repeating chunk)", lambda: stream.fix(orjson.loads(repeat))),
    ]
    for name, fn in rows:
        print(f"{name:44s} {_ns(fn, args.number, args.repeat):8.0f} ns")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
