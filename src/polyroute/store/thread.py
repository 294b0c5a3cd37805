"""One thread, with one database connection, for a caller's frequent blocking store calls;
and group commit on it: what many requests ask for at once, decided in one transaction.

The gateway reserves every budgeted request in the store before it goes upstream and
settles it after. ``asyncio.to_thread`` costs some 40-55 µs of CPU a call (an executor's
future chained to the loop's, the context copied, a thread woken for each), more than
SQLite takes to run the reservation; a connection checked out of the pool for each
transaction another ~15 µs. This thread takes calls from a queue, in order, runs each on the
connection it keeps, and hands the result back with one ``call_soon_threadsafe``.

In order and on one connection, the calls of one process never wait for each other's write
lock. After an error the connection is invalidated (its transaction was already rolled
back), so the next call starts on a fresh one: a PostgreSQL that restarted fails the call
in flight, not every later one.

:class:`GroupCommit` batches asks on that thread: an ask that comes while a batch is in the
store goes in the next one, which the thread starts as soon as it is done, and each batch's
answers go back to the loop together. Nothing waits for a batch to fill: under light load
every ask is a batch of one, under heavy load the batches grow with the time each takes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

import sqlalchemy as sa

log = logging.getLogger(__name__)
I = TypeVar("I")  # noqa: E741
R = TypeVar("R")
_Item = tuple[Callable[[Any], Any], asyncio.AbstractEventLoop | None, "asyncio.Future[Any] | None"]


def _deliver(
    loop: asyncio.AbstractEventLoop,
    future: asyncio.Future[Any],
    result: Any,
    error: BaseException | None,
) -> None:
    def done() -> None:
        if future.done():  # its caller was cancelled meanwhile
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits
        loop.call_soon_threadsafe(done)


class StoreThread:
    """Runs ``fn(connection)`` calls in order on a thread of its own (started at the first
    call); ``connection`` is a pool connection (SQLAlchemy's proxy of the driver's)."""

    def __init__(self, engine: sa.Engine, name: str = "polyroute-store") -> None:
        self.engine = engine
        self.name = name
        # The running thread's queue; each thread has its own, ended by a None. Taken under
        # the lock: a batch on the thread queues the next one while the loop may be closing.
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[_Item | None] | None = None
        self._thread: threading.Thread | None = None

    async def call(self, fn: Callable[[Any], R]) -> R:
        """``fn(connection)``'s result, or its exception, once the calls before it ran."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._put((fn, loop, future))
        return await future

    def submit(self, fn: Callable[[Any], object]) -> None:
        """Run ``fn(connection)`` after the calls queued before, answering nobody (``fn``
        hands its results back itself); callable from any thread."""
        self._put((fn, None, None))

    def _put(self, item: _Item) -> None:
        with self._lock:
            if self._queue is None:  # the first call, or the first since aclose
                self._queue = queue.SimpleQueue()
                self._thread = threading.Thread(
                    target=self._run, args=(self._queue,), name=self.name, daemon=True
                )
                self._thread.start()
            self._queue.put(item)

    def _run(self, calls: queue.SimpleQueue[_Item | None]) -> None:
        connection: Any = None
        while (item := calls.get()) is not None:
            fn, loop, future = item
            try:
                if connection is None:
                    connection = self.engine.raw_connection()
                result = fn(connection)
            except BaseException as e:  # handed to the caller
                if connection is not None:
                    with contextlib.suppress(Exception):
                        connection.invalidate()
                    connection = None
                if loop is not None and future is not None:
                    _deliver(loop, future, None, e)
                elif not isinstance(e, Exception):
                    raise
            else:
                if loop is not None and future is not None:
                    _deliver(loop, future, result, None)
        if connection is not None:
            connection.close()

    async def aclose(self) -> None:
        """End the thread once the calls queued before have run; give back its connection.
        A call after this starts a new thread."""
        with self._lock:
            calls, thread = self._queue, self._thread
            self._queue = self._thread = None
            if calls is not None:
                calls.put(None)
        if thread is not None:
            await asyncio.to_thread(thread.join, 10)


class GroupCommit(Generic[I, R]):
    """Asks from the event loop, decided in batches on a :class:`StoreThread` by
    ``run(connection, asks) -> answers`` (one answer per ask, in order; see the module
    docstring). ``orphan(ask, answer)`` is called, on the loop, for an answer whose asker
    was cancelled while its batch was in the store."""

    def __init__(
        self,
        thread: StoreThread,
        run: Callable[[Any, Sequence[I]], Sequence[R]],
        orphan: Callable[[I, R], None] | None = None,
    ) -> None:
        self.thread = thread
        self.run = run
        self.orphan = orphan
        self._lock = threading.Lock()  # the waiting asks are the loop's and the thread's
        self._waiting: list[tuple[I, asyncio.Future[R]]] = []
        self._running = False
        self._loop: asyncio.AbstractEventLoop | None = None

    async def ask(self, item: I) -> R:
        """``item``'s answer, decided in the next batch."""
        loop = self._loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        with self._lock:
            self._waiting.append((item, future))
            start, self._running = not self._running, True
        if start:
            loop.call_soon(self.thread.submit, self._batch)
        return await future

    def _batch(self, connection: Any) -> None:
        """On the thread: decide what waits now, answer it, and start the next batch if
        more came meanwhile."""
        with self._lock:
            batch, self._waiting = self._waiting, []
        loop = self._loop
        try:
            answers = self.run(connection, [item for item, _ in batch])
        except BaseException as e:
            if loop is not None:
                with contextlib.suppress(RuntimeError):  # the loop has closed
                    loop.call_soon_threadsafe(self._answer, batch, None, e)
            raise  # the thread gives up its connection
        else:
            if loop is not None:
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(self._answer, batch, answers, None)
        finally:
            with self._lock:
                again = self._running = bool(self._waiting)
            if again:
                self.thread.submit(self._batch)

    def _answer(
        self,
        batch: list[tuple[I, asyncio.Future[R]]],
        answers: Sequence[R] | None,
        error: BaseException | None,
    ) -> None:
        for i, (item, future) in enumerate(batch):
            if answers is None:
                if not future.done():
                    future.set_exception(error or RuntimeError("no answer"))
            elif not future.done():
                future.set_result(answers[i])
            elif self.orphan is not None:
                try:
                    self.orphan(item, answers[i])
                except Exception:
                    log.exception("handling an answer nobody waited for failed")
