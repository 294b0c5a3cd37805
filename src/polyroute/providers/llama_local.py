"""The embedded local engine: GGUF models run in-process by llama.cpp (llama-cpp-python).

A llama.cpp context is not thread-safe, so each model owns one worker thread: requests to a
model queue in FIFO order on it, and the event loop only ever awaits. A stream runs as one
job on that thread and hands chunks to the loop as they are generated.

Nothing holds the worker for long: every request has a flag that the generation checks
between tokens, set when its client leaves, when its deadline (``timeout_s``; for streams
``first_token_timeout_s`` and ``stall_timeout_s``) passes, and at shutdown; a request that
sets no ``max_tokens`` gets the model's ``max_tokens``; and the queue holds at most
``queue_size`` requests behind the running one, more are refused at once with 503 and a
``Retry-After`` from the recent job times.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import AsyncGenerator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import httpx
from pydantic import Field

from polyroute.config import ModelConfig, ProviderConfig
from polyroute.errors import (
    ContextWindowExceeded,
    InvalidRequest,
    ModelBusy,
    ModelUnavailable,
    PolyrouteError,
    UpstreamError,
    UpstreamTimeout,
)
from polyroute.options import Options
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
T = TypeVar("T")


class _Skipped(Exception):
    """A queued job whose request was cancelled before the worker reached it."""


def _refused(model: ModelConfig, e: ValueError) -> PolyrouteError:
    """llama-cpp-python's ValueError: a prompt too long for the context, or a bad argument."""
    if "context" in str(e).lower():
        return ContextWindowExceeded(f"{model.name}: {e}")
    return InvalidRequest(f"{model.name}: {e}")


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


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
        #: The running request's flag: set, the generation stops before its next token.
        cancel: threading.Event | None = None

        def generate(self, tokens: Any, *args: Any, **kwargs: Any) -> Iterator[int]:  # type: ignore[override]
            prompt, generated = len(tokens), 0
            self.last_usage = (prompt, 0)
            for token in super().generate(tokens, *args, **kwargs):
                if self.cancel is not None and self.cancel.is_set():
                    return
                # The end-of-generation token is sampled but is not part of the completion.
                if not llama_cpp.llama_vocab_is_eog(self._model.vocab, token):
                    generated += 1
                self.last_usage = (prompt, generated)
                yield token

    return CountingLlama(
        model_path=path, n_ctx=n_ctx, n_threads=n_threads, verbose=False, n_batch=min(n_ctx, 512)
    )


class LlamaCppLoadOptions(Options):
    """How llama.cpp loads a model: in-process (api ``llama_cpp``) or in a
    ``llama_cpp_server`` engine."""

    n_ctx: int = Field(
        4096, gt=0, description="The context window llama.cpp is loaded with (tokens)."
    )
    n_threads: int | None = Field(
        None, gt=0, description="CPU threads for generation; None: one per core."
    )


class LlamaCppModelOptions(LlamaCppLoadOptions):
    """A model the embedded llama.cpp engine serves (api ``llama_cpp``)."""

    max_tokens: int = Field(
        512,
        gt=0,
        description="Output tokens when the request sets no max_tokens: one request must not "
        "hold the model's only worker for minutes.",
    )
    queue_size: int = Field(
        16,
        ge=0,
        description="Requests waiting for the model beyond the one it runs; more are refused "
        "with 503.",
    )


class _LocalModel:
    """One loaded model with its own worker thread and its bounded queue."""

    def __init__(self, config: ModelConfig) -> None:
        self.config = config
        self.options = config.options_as(LlamaCppModelOptions, f"models.{config.name}")
        self.llama: Any = None
        self.error: str | None = None
        self.executor = ThreadPoolExecutor(1, thread_name_prefix=f"llama-{config.name}")
        self._lock = threading.Lock()
        #: Jobs submitted and not done (the running one and those queued behind it).
        self.pending = 0
        #: The flags of those jobs, set all at once at shutdown.
        self.flags: set[threading.Event] = set()
        #: A running mean of job seconds, for Retry-After.
        self.mean_job_s = 1.0

    def submit(self, job: Callable[[], T], cancel: threading.Event) -> asyncio.Future[T]:
        """Queue ``job`` on the model's thread; ModelBusy when the queue is full.

        The job is skipped if ``cancel`` is set before it starts, and its generation stops
        at the next token once ``cancel`` is set while it runs.
        """
        llama = self.ready()
        with self._lock:
            if self.pending > self.options.queue_size:
                wait = max(1.0, self.mean_job_s * self.pending)
                raise ModelBusy(
                    f"local model {self.config.name!r} is busy: {self.pending - 1} requests "
                    f"queued (models.queue_size is {self.options.queue_size}); retry later",
                    retry_after_s=wait,
                )
            self.pending += 1
            self.flags.add(cancel)

        def work() -> T:
            if cancel.is_set():
                raise _Skipped
            llama.cancel = cancel
            t0 = time.perf_counter()
            try:
                return job()
            finally:
                llama.cancel = None
                self.mean_job_s = 0.8 * self.mean_job_s + 0.2 * (time.perf_counter() - t0)

        def done(_: Any) -> None:  # whether it ran, failed, or was cancelled before it ran
            with self._lock:
                self.pending -= 1
                self.flags.discard(cancel)

        future = self.executor.submit(work)
        future.add_done_callback(done)
        return asyncio.wrap_future(future)

    def stop(self) -> None:
        """Stop every job (running ones at their next token) and the thread (blocking)."""
        with self._lock:
            for flag in self.flags:
                flag.set()
        self.executor.shutdown(wait=True, cancel_futures=True)

    def load(self) -> None:
        try:
            path = local_model_path(self.config.source, self.config.path, self.config.sha256)
            threads = self.options.n_threads or max(1, os.cpu_count() or 1)
            self.llama = _make_llama(str(path), self.options.n_ctx, threads)
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
    ModelOptions = LlamaCppModelOptions

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
        # Generations stop at their next token: shutdown (SIGTERM) waits for one token, not
        # for every queued answer to finish.
        await asyncio.gather(*(asyncio.to_thread(m.stop) for m in self._local.values()))
        for model in self._local.values():
            model.llama = None

    def _args(self, model: ModelConfig, body: JSON) -> dict[str, Any]:
        if (body.get("n") or 1) > 1:
            raise InvalidRequest(
                f"model {model.name!r} is a local model and returns one choice; set n to 1",
                param="n",
            )
        args = {k: body[k] for k in _PASSED if body.get(k) is not None}
        max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
        # Without a cap, one request may generate until the context is full, holding the
        # model's only worker (and everyone queued behind it) for minutes.
        if max_tokens is None:
            max_tokens = self._local[model.name].options.max_tokens
        args["max_tokens"] = max_tokens
        args["messages"] = body["messages"]
        return args

    async def chat(self, model: ModelConfig, body: JSON) -> JSON:
        local = self._local[model.name]
        llama = local.ready()
        args = self._args(model, body)
        total = model.timeout_s or self.config.timeout_s
        cancel = threading.Event()

        def run() -> JSON:
            result: JSON = llama.create_chat_completion(**args)
            for choice in result.get("choices") or ():
                message = choice.get("message") or {}
                if message.get("tool_calls"):
                    # llama-cpp-python adds the deprecated function_call beside tool_calls.
                    message.pop("function_call", None)
            return result

        try:
            async with asyncio.timeout(total):
                return await local.submit(run, cancel)
        except TimeoutError:
            raise UpstreamTimeout(
                f"local model {model.name!r} did not answer within {total:g}s (models.timeout_s)"
            ) from None
        except ValueError as e:  # llama-cpp-python's way of refusing a request
            raise _refused(model, e) from None
        except RuntimeError as e:
            raise UpstreamError(f"local model {model.name!r} failed: {e}") from None
        finally:
            cancel.set()  # a client that left, or the deadline: the generation stops

    async def chat_stream(self, model: ModelConfig, body: JSON) -> AsyncGenerator[JSON, None]:
        local = self._local[model.name]
        llama = local.ready()
        args = self._args(model, body)
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        cancel = threading.Event()

        # llama-cpp-python repeats a tool call's id and name in every chunk: OpenAI's form.
        tool_calls = ToolCallStream()

        def run() -> None:
            try:
                last: JSON | None = None
                for chunk in llama.create_chat_completion(stream=True, **args):
                    if cancel.is_set():
                        break
                    last = chunk = tool_calls.fix(chunk)
                    loop.call_soon_threadsafe(queue.put_nowait, chunk)
                if include_usage and last is not None and not cancel.is_set():
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

        future = local.submit(run, cancel)
        timeout = model.first_token_timeout_s or self.config.timeout_s
        what = "sent no first token"
        try:
            while True:
                try:
                    async with asyncio.timeout(timeout):
                        item = await queue.get()
                except TimeoutError:
                    raise UpstreamTimeout(
                        f"local model {model.name!r} {what} within {timeout:g}s"
                    ) from None
                if item is _DONE:
                    return
                if isinstance(item, ValueError):
                    raise _refused(model, item)
                if isinstance(item, BaseException):
                    raise UpstreamError(f"local model {model.name!r} failed: {item}")
                timeout = model.stall_timeout_s or self.config.timeout_s
                what = "stalled: no token"
                yield item
        finally:
            # The job sees this before its next token and returns; nothing here waits on it.
            cancel.set()
            if future.done() and not future.cancelled():
                future.exception()  # mark any exception as retrieved
            else:
                future.add_done_callback(_retrieve)

    async def health(self, model: ModelConfig) -> ModelHealth:
        local = self._local[model.name]
        if local.llama is not None:
            return ModelHealth(True)
        return ModelHealth(False, local.error or "loading")


PROVIDERS.add(LlamaCppProvider.kind, LlamaCppProvider)
