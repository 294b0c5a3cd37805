"""The embedded local engine: GGUF models run in-process by llama.cpp (llama-cpp-python).

A llama.cpp context is not thread-safe, so each model owns one worker thread: requests to a
model queue in FIFO order on it, and the event loop only ever awaits. A stream runs as one
job on that thread and hands chunks to the loop as they are generated; closing the stream
sets a flag the job checks between tokens, so a client disconnect frees the model at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import AsyncGenerator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from polyroute.config import ModelConfig, ProviderConfig
from polyroute.errors import InvalidRequest, ModelUnavailable, PolyrouteError, UpstreamError
from polyroute.providers import PROVIDERS
from polyroute.providers.base import JSON, ModelHealth, Provider
from polyroute.providers.local_models import local_model_path
from polyroute.providers.tool_stream import ToolCallStream

log = logging.getLogger(__name__)

# Request fields llama-cpp-python's create_chat_completion understands, passed as they are.
_PASSED = (
    "temperature", "top_p", "stop", "seed", "presence_penalty", "frequency_penalty",
    "response_format", "tools", "tool_choice", "logprobs", "top_logprobs", "logit_bias",
)  # fmt: skip
_DONE = object()


def _make_llama(path: str, n_ctx: int, n_threads: int) -> Any:
    """Load a model; the llama_cpp import is deferred so the package imports without it."""
    try:
        import llama_cpp
        from llama_cpp import Llama
    except ImportError:
        raise ModelUnavailable(
            "the local engine needs llama-cpp-python: pip install 'polyroute[local]' "
            "(it compiles llama.cpp, about 7 minutes on 2 cores)"
        ) from None

    class CountingLlama(Llama):
        """Counts prompt and generated tokens, which llama-cpp-python's streams omit."""

        last_usage: tuple[int, int] = (0, 0)

        def generate(self, tokens: Any, *args: Any, **kwargs: Any) -> Iterator[int]:  # type: ignore[override]
            prompt, generated = len(tokens), 0
            self.last_usage = (prompt, 0)
            for token in super().generate(tokens, *args, **kwargs):
                # The end-of-generation token is sampled but is not part of the completion.
                if not llama_cpp.llama_vocab_is_eog(self._model.vocab, token):
                    generated += 1
                self.last_usage = (prompt, generated)
                yield token

    return CountingLlama(
        model_path=path, n_ctx=n_ctx, n_threads=n_threads, verbose=False, n_batch=min(n_ctx, 512)
    )


class _LocalModel:
    """One loaded model with its own worker thread."""

    def __init__(self, config: ModelConfig) -> None:
        self.config = config
        self.llama: Any = None
        self.error: str | None = None
        self.executor = ThreadPoolExecutor(1, thread_name_prefix=f"llama-{config.name}")

    def load(self) -> None:
        try:
            path = local_model_path(self.config.source, self.config.path, self.config.sha256)
            threads = self.config.n_threads or max(1, os.cpu_count() or 1)
            self.llama = _make_llama(str(path), self.config.n_ctx, threads)
        except PolyrouteError as e:
            self.error = e.message
        except Exception as e:  # llama.cpp's own failure to read a file
            self.error = f"local model {self.config.name!r} failed to load: {e}"
        if self.error:
            log.warning("%s", self.error)

    def ready(self) -> Any:
        if self.llama is None:
            raise ModelUnavailable(
                self.error or f"local model {self.config.name!r} is still loading; retry shortly"
            )
        return self.llama


class LlamaCppProvider(Provider):
    """Serves GGUF models in-process, one queue per model."""

    kind = "llama_cpp"

    def __init__(
        self,
        name: str,
        config: ProviderConfig,
        models: list[ModelConfig],
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(name, config, models)
        self._local = {m.name: _LocalModel(m) for m in models}

    async def start(self) -> None:
        # Loading reads hundreds of MB and runs before the server accepts requests.
        for model in self._local.values():
            await asyncio.get_running_loop().run_in_executor(model.executor, model.load)

    async def aclose(self) -> None:
        for model in self._local.values():
            model.executor.shutdown(wait=True, cancel_futures=True)
            model.llama = None

    def _args(self, model: ModelConfig, body: JSON) -> dict[str, Any]:
        if (body.get("n") or 1) > 1:
            raise InvalidRequest(
                f"model {model.name!r} is a local model and returns one choice; set n to 1",
                param="n",
            )
        args = {k: body[k] for k in _PASSED if body.get(k) is not None}
        max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
        if max_tokens is not None:
            args["max_tokens"] = max_tokens
        args["messages"] = body["messages"]
        return args

    async def chat(self, model: ModelConfig, body: JSON) -> JSON:
        local = self._local[model.name]
        llama = local.ready()
        args = self._args(model, body)

        def run() -> JSON:
            result: JSON = llama.create_chat_completion(**args)
            for choice in result.get("choices") or ():
                message = choice.get("message") or {}
                if message.get("tool_calls"):
                    # llama-cpp-python adds the deprecated function_call beside tool_calls.
                    message.pop("function_call", None)
            return result

        try:
            return await asyncio.get_running_loop().run_in_executor(local.executor, run)
        except ValueError as e:  # llama-cpp-python's way of saying the prompt is too long
            raise InvalidRequest(f"{model.name}: {e}") from None
        except RuntimeError as e:
            raise UpstreamError(f"local model {model.name!r} failed: {e}") from None

    async def chat_stream(self, model: ModelConfig, body: JSON) -> AsyncGenerator[JSON, None]:
        local = self._local[model.name]
        llama = local.ready()
        args = self._args(model, body)
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        cancelled = threading.Event()

        # llama-cpp-python repeats a tool call's id and name in every chunk: OpenAI's form.
        tool_calls = ToolCallStream()

        def run() -> None:
            try:
                last: JSON | None = None
                for chunk in llama.create_chat_completion(stream=True, **args):
                    if cancelled.is_set():
                        break
                    last = chunk = tool_calls.fix(chunk)
                    loop.call_soon_threadsafe(queue.put_nowait, chunk)
                if include_usage and last is not None and not cancelled.is_set():
                    prompt, generated = llama.last_usage
                    usage = {
                        "prompt_tokens": prompt,
                        "completion_tokens": generated,
                        "total_tokens": prompt + generated,
                    }
                    final = {**last, "choices": [], "usage": usage}
                    loop.call_soon_threadsafe(queue.put_nowait, final)
            except BaseException as e:  # handed to the loop, raised there
                loop.call_soon_threadsafe(queue.put_nowait, e)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, _DONE)

        future = loop.run_in_executor(local.executor, run)
        try:
            while (item := await queue.get()) is not _DONE:
                if isinstance(item, ValueError):
                    raise InvalidRequest(f"{model.name}: {item}")
                if isinstance(item, BaseException):
                    raise UpstreamError(f"local model {model.name!r} failed: {item}")
                yield item
        finally:
            # The job sees this before its next token and returns; nothing here waits on it.
            cancelled.set()
            if future.done() and not future.cancelled():
                future.exception()  # mark any exception as retrieved

    async def health(self, model: ModelConfig) -> ModelHealth:
        local = self._local[model.name]
        if local.llama is not None:
            return ModelHealth(True)
        return ModelHealth(False, local.error or "loading")


PROVIDERS.add(LlamaCppProvider.kind, LlamaCppProvider)
