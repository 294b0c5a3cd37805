"""Fakes for the bench tests: an in-process pool that answers like a model would."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from polyroute.bench.questions import Question, user_message

JSON = dict[str, Any]
#: (model, prompt text) -> answer text, or an exception to raise.
Behaviour = Callable[[str, str], "str | BaseException"]


class FakePool:
    """Has the two methods the runner uses; streams each answer word by word, usage last."""

    def __init__(self, behaviour: Behaviour, *, delay_s: float = 0.0) -> None:
        self.behaviour = behaviour
        self.delay_s = delay_s
        self.calls: list[tuple[str, str]] = []
        self.bodies: list[JSON] = []
        self.in_flight = 0
        self.max_in_flight = 0

    def _answer(self, name: str, body: JSON) -> str:
        prompt = body["messages"][-1]["content"]
        self.calls.append((name, prompt))
        self.bodies.append(body)
        result = self.behaviour(name, prompt)
        if isinstance(result, BaseException):
            raise result
        return result

    async def chat(self, name: str, body: JSON) -> JSON:
        text = self._answer(name, body)
        return {
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": len(text.split())},
        }

    async def chat_stream(self, name: str, body: JSON) -> AsyncIterator[JSON]:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            text = self._answer(name, body)
            yield {"choices": [{"index": 0, "delta": {"role": "assistant"}}]}
            await asyncio.sleep(self.delay_s)
            for i, word in enumerate(text.split(" ")):
                piece = word if i == 0 else " " + word
                yield {"choices": [{"index": 0, "delta": {"content": piece}}]}
            yield {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
            if body.get("stream_options", {}).get("include_usage"):
                usage = {"prompt_tokens": 10, "completion_tokens": len(text.split())}
                yield {"choices": [], "usage": usage}
        finally:
            self.in_flight -= 1


def adder(name: str, prompt: str) -> str:
    """A model that gets "What is A plus B?" right when it is 'good', and wrong otherwise."""
    words = prompt.rstrip("?").split()
    a, b = int(words[2]), int(words[4])
    return f"The answer is {a + b}." if name == "good" else f"I think {a + b + 1}"


def addition_questions(n: int) -> list[Question]:
    return [
        Question(
            id=f"add:{i}",
            messages=user_message(f"What is {i} plus {i + 1}?"),
            references=(str(2 * i + 1),),
            grader="numeric",
            task="addition",
        )
        for i in range(n)
    ]


async def no_sleep(_seconds: float) -> None:
    return None


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path
