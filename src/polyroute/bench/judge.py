"""An LLM as judge: a model from the pool decides whether an answer matches the reference.

Questions name the grader ``judge``; the run supplies the judge model (``--judge MODEL``).
"""

from __future__ import annotations

from polyroute.bench.questions import BenchError, Question
from polyroute.bench.registry import GRADERS
from polyroute.bench.runner import ChatPool

JUDGE_PROMPT = """You are grading an answer to a question against the reference answer.

Question:
{question}

Reference answer:
{reference}

Answer to grade:
{answer}

Does the answer give the same final result as the reference?
Reply with one word: CORRECT or INCORRECT."""


class LLMJudge:
    """A grader that asks ``model`` (through ``pool``) to compare answer and reference."""

    def __init__(self, pool: ChatPool, model: str, *, max_tokens: int = 8) -> None:
        self.pool = pool
        self.model = model
        self.max_tokens = max_tokens

    async def __call__(self, answer: str, question: Question, /) -> float:
        prompt = JUDGE_PROMPT.format(
            question=question.prompt,
            reference=" | ".join(question.references) or "(none)",
            answer=answer.strip() or "(empty)",
        )
        response = await self.pool.chat(
            self.model,
            {
                "messages": [{"role": "user", "content": prompt}],
                "max_tokens": self.max_tokens,
                "temperature": 0.0,
            },
        )
        choices = response.get("choices") or [{}]
        verdict = str((choices[0].get("message") or {}).get("content") or "").strip().upper()
        return parse_verdict(verdict)


def parse_verdict(text: str) -> float:
    """1.0 for CORRECT, 0.0 for INCORRECT (or anything the judge said besides)."""
    text = text.upper()
    if "INCORRECT" in text or "NOT CORRECT" in text:
        return 0.0
    return 1.0 if "CORRECT" in text else 0.0


@GRADERS.register("judge")
def _judge_placeholder(answer: str, question: Question, /) -> float:
    raise BenchError(
        f"question {question.id} is graded by an LLM judge: pass --judge MODEL "
        f"(a model from the config) to `polyroute bench`"
    )
