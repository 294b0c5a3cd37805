"""The local engine's limits: output cap, bounded queue, deadlines, cancellation, shutdown.

The llama.cpp model is replaced by a stand-in that generates a token every 20 ms and
honours the same per-request flag the real engine checks between tokens (the real one is
exercised in test_local_engine_e2e.py); what is tested here is the provider's queueing.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from polyroute.config import ModelConfig, ProviderConfig
from polyroute.errors import ModelBusy, UpstreamTimeout
from polyroute.providers.llama_local import LlamaCppProvider

USER = [{"role": "user", "content": "hi"}]


class SlowLlama:
    """Generates ``max_tokens`` tokens, one every ``step_s``, stopping when cancelled."""

    def __init__(self, step_s: float = 0.02) -> None:
        self.step_s = step_s
        self.cancel: threading.Event | None = None
        self.calls: list[dict[str, Any]] = []
        self.tokens = 0
        self.last_usage = (1, 0)

    def _tokens(self, n: int) -> Any:
        for _ in range(n):
            if self.cancel is not None and self.cancel.is_set():
                return
            time.sleep(self.step_s)
            self.tokens += 1
            yield "x"

    def create_chat_completion(self, stream: bool = False, **args: Any) -> Any:
        self.calls.append(args)
        tokens = self._tokens(args["max_tokens"])
        if stream:
            return (
                {"choices": [{"index": 0, "delta": {"content": t}, "finish_reason": None}]}
                for t in tokens
            )
        text = "".join(tokens)
        return {"choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                             "finish_reason": "length"}]}  # fmt: skip


def provider(llama: SlowLlama, **model: Any) -> tuple[LlamaCppProvider, ModelConfig]:
    m = ModelConfig(name="local", provider="p", path="/unused.gguf", **model)
    p = LlamaCppProvider("p", ProviderConfig(api="llama_cpp"), [m])
    p._local["local"].llama = llama
    return p, m


async def test_a_request_without_max_tokens_gets_the_model_cap() -> None:
    llama = SlowLlama(step_s=0)
    p, m = provider(llama, max_tokens=7)
    out = await p.chat(m, {"messages": USER})
    assert out["choices"][0]["message"]["content"] == "x" * 7
    assert llama.calls[-1]["max_tokens"] == 7
    await p.chat(m, {"messages": USER, "max_tokens": 3})
    assert llama.calls[-1]["max_tokens"] == 3  # the client's own limit is kept
    await p.aclose()


async def test_a_full_queue_is_refused_with_retry_after() -> None:
    llama = SlowLlama()
    p, m = provider(llama, queue_size=1, max_tokens=10)
    first = asyncio.ensure_future(p.chat(m, {"messages": USER}))
    second = asyncio.ensure_future(p.chat(m, {"messages": USER}))
    await asyncio.sleep(0.01)
    with pytest.raises(ModelBusy) as caught:
        await p.chat(m, {"messages": USER})
    assert caught.value.status_code == 503 and caught.value.retry_after_s is not None
    assert caught.value.retry_after_s >= 1
    await asyncio.gather(first, second)
    await p.chat(m, {"messages": USER})  # room again once they finished
    assert p._local["local"].pending == 0
    await p.aclose()


async def test_a_deadline_stops_the_generation_and_frees_the_worker() -> None:
    llama = SlowLlama()
    p, m = provider(llama, timeout_s=0.1, max_tokens=10_000)
    with pytest.raises(UpstreamTimeout, match=r"within 0\.1s"):
        await p.chat(m, {"messages": USER})
    # The worker is free again (the job stopped at its next token, not after 10,000).
    for _ in range(100):
        if p._local["local"].pending == 0:
            break
        await asyncio.sleep(0.01)
    assert p._local["local"].pending == 0 and llama.tokens < 100
    await p.aclose()


async def test_a_cancelled_request_stops_and_a_queued_one_never_runs() -> None:
    llama = SlowLlama()
    p, m = provider(llama, max_tokens=10_000)
    running = asyncio.ensure_future(p.chat(m, {"messages": USER}))
    queued = asyncio.ensure_future(p.chat(m, {"messages": USER}))
    await asyncio.sleep(0.1)
    queued.cancel()
    running.cancel()  # the client went away
    for _ in range(100):
        if p._local["local"].pending == 0:
            break
        await asyncio.sleep(0.01)
    assert p._local["local"].pending == 0
    assert len(llama.calls) == 1 and llama.tokens < 100
    await p.aclose()


async def test_a_stalled_stream_times_out_and_a_closed_one_stops() -> None:
    llama = SlowLlama(step_s=0.3)
    p, m = provider(llama, first_token_timeout_s=1.0, stall_timeout_s=0.1, max_tokens=50)
    chunks = p.chat_stream(m, {"messages": USER})
    assert (await anext(chunks))["choices"][0]["delta"]["content"] == "x"
    with pytest.raises(UpstreamTimeout, match="stalled"):
        await anext(chunks)
    await chunks.aclose()
    for _ in range(100):
        if p._local["local"].pending == 0:
            break
        await asyncio.sleep(0.01)
    assert p._local["local"].pending == 0 and llama.tokens < 5
    await p.aclose()


async def test_shutdown_does_not_wait_for_running_generations() -> None:
    llama = SlowLlama()
    p, m = provider(llama, max_tokens=100_000)  # ~30 minutes of tokens
    jobs = [asyncio.ensure_future(p.chat(m, {"messages": USER})) for _ in range(4)]
    await asyncio.sleep(0.1)
    await asyncio.wait_for(p.aclose(), 30)
    # It stopped the running one at its next token and dropped the queued ones.
    assert len(llama.calls) == 1 and llama.tokens < 1000
    for job in jobs:
        job.cancel()
    await asyncio.gather(*jobs, return_exceptions=True)
