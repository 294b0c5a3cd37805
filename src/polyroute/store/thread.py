"""One thread, with one database connection, for a caller's frequent blocking store calls;
and group commit on it: what many requests ask for at once, decided in one transaction.

The gateway reserves every budgeted request in the store before it goes upstream and
settles it after. ``asyncio.to_thread`` costs some 40-55 µs of CPU a call (an executor's
future chained to the loop's, the context copied, a thread woken for each), more than
SQLite takes to run the reservation; a connection checked out of the pool for each
transaction another ~15 µs. This thread takes calls from a queue, in order, runs each on the
connection it keeps, and hands the result back with one ``call_soon_threadsafe``.

In order and on one connection, the calls of one process never wait for each other's write
lock. After an error the call's transaction was already rolled back, so the connection is
kept; only one the driver reports disconnected (a PostgreSQL that restarted) is given up, so
that the next call starts on a fresh one and the error fails the call in flight, not every
later one. An in-memory SQLite (``StaticPool``) is never given up: its one connection is the
database.

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
_OnError = Callable[[BaseException], None]
#: A call: its function, and who hears how it went (a loop and its future, or an error callback).
_Item = tuple[
    Callable[[Any], Any],
    asyncio.AbstractEventLoop | None,
    "asyncio.Future[Any] | None",
    _OnError | None,
]


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
        self._put((fn, loop, future, None))
        return await future

    def submit(self, fn: Callable[[Any], object], on_error: _OnError | None = None) -> None:
        """Run ``fn(connection)`` after the calls queued before, answering nobody (``fn``
        hands its results back itself); callable from any thread. ``on_error`` is called,
        on the thread, with what ``fn`` raised or with why it could not run (no connection):
        whoever waits on ``fn`` must hear of it from there."""
        self._put((fn, None, None, on_error))

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
        try:
            while (item := calls.get()) is not None:
                fn, loop, future, on_error = item
                try:
                    if connection is None:
                        connection = self.engine.raw_connection()
                    result = fn(connection)
                except BaseException as e:  # handed to the caller
                    if connection is not None and not self._keep(connection, e):
                        with contextlib.suppress(Exception):
                            connection.invalidate()
                        connection = None
                    if loop is not None and future is not None:
                        _deliver(loop, future, None, e)
                    elif on_error is not None:
                        try:
                            on_error(e)
                        except Exception:
                            log.exception("handling a failed store call failed")
                    if not isinstance(e, Exception):
                        raise
                else:
                    if loop is not None and future is not None:
                        _deliver(loop, future, result, None)
        finally:
            # Ended by a None, or by a call that raised what is not an Exception: the next
            # call starts a new thread, and the calls queued behind this one go there.
            with self._lock:
                if self._queue is calls:
                    self._queue = self._thread = None
            while not calls.empty():
                if (left := calls.get()) is not None:
                    self._put(left)
            if connection is not None:
                with contextlib.suppress(Exception):
                    connection.close()

    def _keep(self, connection: Any, error: BaseException) -> bool:
        """Whether ``connection`` is still good after ``error``: only a disconnect gives it
        up (its transaction was already rolled back), and never an in-memory SQLite's one
        connection under ``StaticPool``, which is the database itself."""
        if isinstance(self.engine.pool, sa.StaticPool):
            return True
        dialect = self.engine.dialect
        if isinstance(error, sa.exc.DBAPIError):
            if error.connection_invalidated:
                return False
            error = error.orig if error.orig is not None else error
        try:
            dbapi_error = isinstance(error, dialect.loaded_dbapi.Error)
            if dbapi_error and dialect.is_disconnect(
                error,  # type: ignore[arg-type]
                connection.dbapi_connection,
                None,
            ):
                return False
            connection.rollback()  # a no-op when the call rolled back itself
        except Exception:
            return False  # a connection that cannot even roll back is no good
        return True

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


#: An ask waiting for its batch: the ask, the loop it was made on, and its answer's future.
_Waiting = tuple[I, asyncio.AbstractEventLoop, asyncio.Future[R]]


class GroupCommit(Generic[I, R]):
    """Asks from event loops, decided in batches on a :class:`StoreThread` by
    ``run(connection, asks) -> answers`` (one answer per ask, in order; see the module
    docstring). ``orphan(ask, answer)`` is called, on the ask's loop, for an answer whose
    asker was cancelled once its batch was in the store (a granted reservation to give
    back); an ask cancelled before its batch starts is left out of it."""

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
        self._waiting: list[_Waiting[I, R]] = []
        self._running = False  # a batch is queued or in the store
        # The batch in the store, for _failed (the thread's only: one batch at a time).
        self._taken: list[_Waiting[I, R]] | None = None

    @property
    def busy(self) -> bool:
        """Whether asks wait for an answer (a batch is queued or in the store)."""
        return self._running

    async def ask(self, item: I) -> R:
        """``item``'s answer, decided in the next batch."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        with self._lock:
            self._waiting.append((item, loop, future))
            start, self._running = not self._running, True
        if start:
            loop.call_soon(self.thread.submit, self._batch, self._failed)
        try:
            return await future
        except asyncio.CancelledError:
            # Answered, but cancelled before this task resumed: _answer found nobody gone,
            # so the answer (a granted reservation) is given back here.
            if (
                self.orphan is not None
                and future.done()
                and not future.cancelled()
                and future.exception() is None
            ):
                self._orphan(item, future.result())
            raise

    def _take(self) -> list[_Waiting[I, R]]:
        """The asks waiting now, less those whose asker was cancelled meanwhile."""
        with self._lock:
            batch, self._waiting = self._waiting, []
        return [w for w in batch if not w[2].done()]

    def _batch(self, connection: Any) -> None:
        """On the thread: decide what waits now, answer it, and start the next batch if
        more came meanwhile. If ``run`` raises, the thread calls :meth:`_failed`."""
        batch = self._take()
        if batch:
            self._taken = batch
            answers = self.run(connection, [item for item, _, _ in batch])
            self._taken = None
            self._send(batch, answers, None)
        self._next()

    def _failed(self, error: BaseException) -> None:
        """On the thread: the batch failed, or could not start (no connection): answer its
        asks with the error, and start the next batch if more came."""
        batch, self._taken = self._taken, None
        if batch is None:  # it never started: what waits now was to be its asks
            batch = self._take()
        self._send(batch, None, error)
        self._next()

    def _next(self) -> None:
        with self._lock:
            again = self._running = bool(self._waiting)
        if again:
            self.thread.submit(self._batch, self._failed)

    def _send(
        self,
        batch: list[_Waiting[I, R]],
        answers: Sequence[R] | None,
        error: BaseException | None,
    ) -> None:
        """Hand each ask's answer (or the error) back on the loop it was asked on."""
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[I, asyncio.Future[R], R | None]]] = {}
        for i, (item, loop, future) in enumerate(batch):
            answer = answers[i] if answers is not None else None
            by_loop.setdefault(loop, []).append((item, future, answer))
        for loop, entries in by_loop.items():
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits
                loop.call_soon_threadsafe(self._answer, entries, answers is not None, error)

    def _answer(
        self,
        entries: list[tuple[I, asyncio.Future[R], R | None]],
        answered: bool,
        error: BaseException | None,
    ) -> None:
        for item, future, answer in entries:
            if not answered:
                if not future.done():
                    future.set_exception(error or RuntimeError("no answer"))
            elif not future.done():
                future.set_result(answer)  # type: ignore[arg-type]
            else:
                self._orphan(item, answer)  # type: ignore[arg-type]

    def _orphan(self, item: I, answer: R) -> None:
        if self.orphan is None:
            return
        try:
            self.orphan(item, answer)
        except Exception:
            log.exception("handling an answer nobody waited for failed")
