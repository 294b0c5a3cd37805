"""What a chat request must pass before it goes upstream, and what it settles afterwards.

``admit`` checks the key may use the model, counts the request against its rate limits, and
reserves its worst-case cost in the store (keys or teams with a budget only). The chat
service's observer hook hands each finished request to ``finished``, which settles the
reservation to the real cost (or releases it on failure) off the request path. A request
that ends without reaching the observer (cancelled, or a bug) is settled by ``release`` when
its response is done, at its reservation, so a reservation never leaks and never undercounts.
A gateway that closes waits a while (``CLOSE_WAIT_S``) for the requests in flight and writes
what they settle before it lets the store go. A gateway killed mid-request settles nothing:
its reservations are held in the store with an expiry (``auth.reservation_ttl_s``), and every
gateway charges the expired ones it finds.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import OrderedDict
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request

from polyroute.auth.budget import (
    nano_per_token,
    prompt_tokens_upper,
    to_nano,
    to_usd,
)
from polyroute.auth.keys import KEY_SCOPE, KeyInfo, Limits
from polyroute.auth.limits import RateLimiter, refused
from polyroute.auth.metrics import KeyMetrics
from polyroute.catalog.pricing import priced_at
from polyroute.config import AuthConfig, Config, ModelConfig
from polyroute.errors import BudgetExceeded, InvalidRequest, PermissionDenied, ShuttingDown
from polyroute.gateway.protocol import ChatCompletionRequest
from polyroute.gateway.routing import RouterHub
from polyroute.gateway.windows import SharedWindows
from polyroute.providers.pool import ProviderPool
from polyroute.store import schema
from polyroute.store.keys import KeyStore
from polyroute.store.ledger import Ask, Charge, Hold
from polyroute.store.recorder import RequestRecord
from polyroute.store.thread import GroupCommit, StoreThread

log = logging.getLogger(__name__)

TICKET_SCOPE = "polyroute.ticket"
#: How long settlements wait to be written together: a reservation is held this much longer.
SETTLE_DELAY_S = 0.05
#: Failed settlement flushes in a row that are tried again (backing off, up to 5 s apart).
SETTLE_RETRIES = 10
#: Failed flushes in a row after which each request is settled in a transaction of its own,
#: so that one whose rows the store refuses cannot sink the others merged with it.
SETTLE_APART_AFTER = 3
#: How long closing waits for the requests in flight to finish and their settlements to be
#: written (the server's graceful shutdown gives them as long).
CLOSE_WAIT_S = 10.0
_OWNERS = 50_000  # recent trace → key, for feedback checks without a database read


@dataclass(slots=True)
class Ticket:
    """One admitted request: its key, the limits it counted against, and its reservation."""

    key: KeyInfo
    subjects: list[tuple[str, Limits]]
    charges: tuple[Charge, ...]
    reserved: int = 0
    trace_id: str = ""
    #: OpenAI's ``x-ratelimit-*`` headers for the key, as of this request's admission.
    headers: dict[str, str] = field(default_factory=dict)
    #: The shared (store) minutes this request was counted in, for its tokens afterwards.
    windows: list[tuple[str, int]] = field(default_factory=list)
    settled: bool = False


def _limited(limits: Limits) -> bool:
    return limits.rpm is not None or limits.tpm is not None or limits.parallel is not None


def _subjects(key: KeyInfo) -> list[tuple[str, Limits]]:
    """The subjects with a rate limit (the key first): one without any counts nothing."""
    out = []
    if _limited(key.limits):
        out.append((f"key:{key.id}", key.limits))
    if key.team_id is not None and key.team_limits is not None and _limited(key.team_limits):
        out.append((f"team:{key.team_id}", key.team_limits))
    return out


def _charges(key: KeyInfo) -> tuple[Charge, ...]:
    """The subjects whose budget this request must fit (none without a budget)."""
    out: list[Charge] = []
    if key.limits.budget_nusd is not None and not key.is_admin:
        out.append(Charge(schema.api_keys, key.id, key.limits.period))
    team = key.team_limits
    if key.team_id is not None and team is not None and team.budget_nusd is not None:
        out.append(Charge(schema.teams, key.team_id, team.period))
    return tuple(out)


class Admission:
    """Budgets and rate limits for the chat path (see the module docstring)."""

    def __init__(
        self,
        config: Config,
        keys: KeyStore,
        pool: ProviderPool,
        routers: RouterHub | None,
        *,
        windows: SharedWindows | None = None,
        metrics: KeyMetrics | None = None,
    ) -> None:
        self.config = config
        self.keys = keys
        self.pool = pool
        self.routers = routers
        self.limiter = RateLimiter()
        self.windows = windows  # RPM and TPM shared by replicas (the store or Redis)
        self.metrics = metrics
        auth = config.auth
        auth_config = auth if isinstance(auth, AuthConfig) else AuthConfig()
        self.default_max_tokens = auth_config.default_max_tokens
        self.reservation_ttl_s = auth_config.reservation_ttl_s
        # Settlements wait here a moment and go to the store together (they only add).
        self._holds: dict[str, Hold] = {}  # by request: what it reserved and what it cost
        self._expirer: asyncio.Task[None] | None = None
        self._window_tokens: dict[tuple[str, int], int] = {}
        self._watch: set[str] = set()  # keys with a soft alert that spent since the last flush
        self._alerted: set[str] = set()
        # Reservations and settlements run on a thread of their own, in order (the per-request
        # store work: asyncio.to_thread would cost more CPU than SQLite takes to run them).
        self._store = StoreThread(keys.engine, "polyroute-ledger")
        # Reservations asked for while one batch is in the store go together in the next.
        ttl = self.reservation_ttl_s
        self._reservations: GroupCommit[Ask, bool] = GroupCommit(
            self._store, lambda conn, asks: keys.reserve_many(asks, ttl, conn), self._orphaned
        )
        self._open: dict[str, Ticket] = {}
        self._owners: OrderedDict[str, str] = OrderedDict()
        # Each key's subjects and charges, worked out once per key read from the store.
        self._plans: dict[str, tuple[KeyInfo, list[tuple[str, Limits]], tuple[Charge, ...]]] = {}
        self._usage: list[dict[str, Any]] = []  # unbudgeted usage rows, written in batches
        self._flusher: asyncio.Task[None] | None = None
        self._failed_flushes = 0  # in a row
        # Closing: aclose writes what is pending, no flusher starts; closed: nobody will.
        self._closing = self._closed = False
        self._wake = asyncio.Event()  # set by aclose: a flusher waiting to flush returns

    # -- before the upstream ------------------------------------------------------------

    async def admit(
        self, request: Request, chat: ChatCompletionRequest, body: dict[str, Any], trace_id: str
    ) -> Ticket | None:
        """Admit a request or raise (403, 429); None when auth is off."""
        key: KeyInfo | None = request.scope.get(KEY_SCOPE)
        if key is None:
            return None
        if self._closing:
            raise ShuttingDown(
                "This gateway is shutting down and takes no new requests; send it again "
                "(another replica answers it, or this one once it has restarted)"
            )
        is_router = self.routers is not None and self.routers.handles(chat.model)
        if not key.may_use(chat.model, is_router):
            kind = "router" if is_router else "model"
            raise PermissionDenied(f"This key may not use the {kind} {chat.model!r}", param="model")
        subjects, charges = self._plan(key)
        # Check and count with no await in between: exact within this process.
        for subject, limits in subjects:
            self.limiter.check(subject, limits)
        for subject, limits in subjects:
            self.limiter.take(subject, limits)
        ticket = Ticket(key, subjects, charges, trace_id=trace_id)
        if key.limits.rpm is not None or key.limits.tpm is not None:
            ticket.headers = self.limiter.headers(subjects[0][0], key.limits)
        try:
            if self.windows is not None:
                await self._shared_limits(ticket, self.windows)
            if ticket.charges:
                await self._reserve(ticket, chat, body)
        except BaseException:
            for subject, limits in subjects:
                self.limiter.untake(subject, limits)
            raise
        self._open[trace_id] = ticket
        request.scope[TICKET_SCOPE] = ticket
        self._own(trace_id, key.id)
        return ticket

    def _plan(self, key: KeyInfo) -> tuple[list[tuple[str, Limits]], tuple[Charge, ...]]:
        """The key's rate-limited subjects and budget charges (the same lists for every
        request until the gate reads the key again)."""
        plan = self._plans.get(key.id)
        if plan is None or plan[0] is not key:
            if len(self._plans) >= _OWNERS:
                self._plans.clear()
            plan = self._plans[key.id] = (key, _subjects(key), _charges(key))
        return plan[1], plan[2]

    async def _shared_limits(self, ticket: Ticket, shared: SharedWindows) -> None:
        """RPM and TPM counted per calendar minute where every replica sees them."""
        minute = int(time.time() // 60)
        for subject, limits in ticket.subjects:
            if limits.rpm is None and limits.tpm is None:
                continue
            counted, requests, tokens = await shared.hit(subject, minute, limits.rpm, limits.tpm)
            if counted:
                ticket.windows.append((subject, minute))
                continue
            wait = 60 - time.time() % 60
            headers = {}
            if limits.rpm is not None:
                headers["x-ratelimit-limit-requests"] = str(limits.rpm)
                headers["x-ratelimit-remaining-requests"] = str(max(0, limits.rpm - requests))
                headers["x-ratelimit-reset-requests"] = f"{wait:.3f}s"
            if limits.tpm is not None:
                headers["x-ratelimit-limit-tokens"] = str(limits.tpm)
                headers["x-ratelimit-remaining-tokens"] = str(max(0, limits.tpm - tokens))
                headers["x-ratelimit-reset-tokens"] = f"{wait:.3f}s"
            what = (
                f"{limits.rpm} requests per minute"
                if limits.rpm is not None and requests >= limits.rpm
                else f"{limits.tpm} tokens per minute"
            )
            raise refused(
                f"Rate limit reached for {subject}: {what} (shared by every replica); try "
                f"again in {wait:.1f}s",
                wait,
                headers,
            )

    def _priced_model(self, name: str, prompt_tokens: int) -> ModelConfig:
        """The model whose prices bound this request (at most ``prompt_tokens`` long, which
        picks the price tier): itself, or a router's dearest."""
        if self.routers is not None and self.routers.handles(name):
            models = [priced_at(m, prompt_tokens) for m in self.config.models]
            priced = [m for m in models if m.input_price is not None and m.output_price is not None]
            if len(priced) < len(models):
                raise InvalidRequest(
                    f"{name!r} may choose a model whose price is not known, so a key with a "
                    "budget cannot use it: set input_price and output_price on every model",
                    param="model",
                )
            dearest = max(priced, key=lambda m: (m.input_price or 0, m.output_price or 0))
            top_out = max(m.output_price or 0 for m in priced)
            top_in = max(m.input_price or 0 for m in priced)
            windows = [m.context_window for m in priced]
            window = None if any(w is None for w in windows) else max(w or 0 for w in windows)
            return dearest.model_copy(
                update={"input_price": top_in, "output_price": top_out, "context_window": window}
            )
        return priced_at(self.pool.resolve(name).model, prompt_tokens)

    async def _reserve(
        self, ticket: Ticket, chat: ChatCompletionRequest, body: dict[str, Any]
    ) -> None:
        upper = prompt_tokens_upper(body)
        model = self._priced_model(chat.model, upper)
        prices = nano_per_token(model)
        if prices is None:
            raise InvalidRequest(
                f"The price of {model.name!r} is not known, so a key with a budget cannot use "
                "it: set its input_price and output_price",
                param="model",
            )
        per_in, per_out = prices
        choices = chat.n or 1
        prompt = upper * per_in
        asked = chat.max_completion_tokens or chat.max_tokens
        if asked is not None:
            out_tokens = asked
        elif model.context_window is not None:
            out_tokens = max(1, model.context_window - upper)
        else:
            out_tokens = self.default_max_tokens
        amount = prompt + out_tokens * per_out * choices
        if await self._reserve_batched(ticket, amount):
            ticket.reserved = amount
            if asked is None and model.context_window is None:
                body["max_tokens"] = out_tokens  # the bound the reservation assumed
            return
        if asked is not None:
            await self._refuse(ticket, amount)
        # No max_tokens: reserve what is left, and cap the answer to what that pays for.
        for _ in range(3):
            left = await asyncio.to_thread(self.keys.remaining, ticket.charges) or 0
            fits = (left - prompt) // (per_out * choices) if per_out else 1 << 20
            if fits < 1:
                await self._refuse(ticket, prompt + per_out * choices)
            amount = prompt + fits * per_out * choices
            if await self._reserve_batched(ticket, amount):
                ticket.reserved = amount
                if per_out:
                    body["max_tokens"] = int(fits)
                return
        await self._refuse(ticket, prompt + per_out * choices)

    async def _reserve_batched(self, ticket: Ticket, amount: int) -> bool:
        """One reservation, decided by the store in a transaction with others waiting now,
        and held for the ticket's request until settled (or expired)."""
        ask = Ask(ticket.trace_id, ticket.key.id, ticket.charges, amount)
        return await self._reservations.ask(ask)

    def _orphaned(self, ask: Ask, granted: bool) -> None:
        """The request went away while the store decided: give its reservation back."""
        if granted:
            self._credit(ask.charges, ask.amount, 0, ask.request_id)

    async def _refuse(self, ticket: Ticket, needed: int) -> None:
        left = await asyncio.to_thread(self.keys.remaining, ticket.charges) or 0
        err = BudgetExceeded(
            f"Budget exceeded: ${to_usd(left):.9f} left of this key's budget (or its team's); "
            f"this request may cost up to ${to_usd(needed):.9f} (set max_tokens lower, or raise "
            "the budget)"
        )
        err.headers = {"x-polyroute-budget-remaining-usd": f"{to_usd(left):.9f}"}
        raise err

    # -- after the upstream -------------------------------------------------------------

    def finished(self, record: RequestRecord) -> None:
        """The chat service's observer: settle this request's ticket (never raises)."""
        ticket = self._open.pop(record.id, None)
        if ticket is None or ticket.settled:
            return
        ticket.settled = True
        tokens = (record.input_tokens or 0) + (record.output_tokens or 0)
        for subject, _ in ticket.subjects:
            self.limiter.done(subject, tokens)
        if record.cost_usd is not None and record.cost_status != "unknown":
            cost = to_nano(record.cost_usd)
        elif record.status < 400 or record.status == 499:
            cost = ticket.reserved  # answered without a known cost: charge the worst case
        else:
            cost = 0  # refused or failed before any answer: release
        self._usage.append(
            {
                "request_id": record.id,
                "key_id": ticket.key.id,
                "team_id": ticket.key.team_id,
                "created_at": record.created_at,
                "model": record.model,
                "router": record.router,
                "status": record.status,
                "input_tokens": record.input_tokens,
                "output_tokens": record.output_tokens,
                "cost_nusd": cost,
            }
        )
        for window in ticket.windows:
            self._window_tokens[window] = self._window_tokens.get(window, 0) + tokens
        self._settle(ticket, cost)
        if self.metrics is not None:
            self.metrics.observe(ticket.key, cost)

    def _settle(self, ticket: Ticket, cost: int) -> None:
        self._credit(ticket.charges, ticket.reserved, cost, ticket.trace_id)
        if ticket.key.limits.soft_alert is not None and ticket.key.id not in self._alerted:
            self._watch.add(ticket.key.id)

    def _credit(
        self, charges: tuple[Charge, ...], reserved: int, cost: int, request_id: str
    ) -> None:
        """Queue a settlement: drop ``reserved`` from each subject's reservation, add ``cost``
        (in the store only if the request's hold did not expire meanwhile)."""
        if charges:
            self._holds[request_id] = Hold(charges, reserved, cost)
        if self._closed:
            log.error(
                "request %s settled after the gateway closed: its hold is charged at its "
                "reservation after auth.reservation_ttl_s",
                request_id,
            )
            return
        if self._closing:
            return  # aclose writes it
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush_soon())

    def _pending(self) -> bool:
        return bool(self._holds or self._usage or self._window_tokens or self._watch)

    async def _flush_soon(self) -> None:
        # Until nothing is pending: what arrived while a flush was in the store goes next
        # (a credit only starts a flusher when none is running). Closing, aclose takes over.
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                delay = min(5.0, SETTLE_DELAY_S * 2**self._failed_flushes)
                await asyncio.wait_for(self._wake.wait(), delay)
            if self._closing:
                return
            await self.flush()
            if not self._pending():
                return

    async def flush(self) -> None:
        """Write the pending settlements and usage rows (one transaction; after
        ``SETTLE_APART_AFTER`` failures in a row, one per request)."""
        holds, self._holds = self._holds, {}
        rows, self._usage = self._usage, []
        windows, self._window_tokens = self._window_tokens, {}
        if not holds and not rows and not windows:
            return
        failed_holds: dict[str, Hold] = {}
        failed_rows: list[dict[str, Any]] = []
        if holds or rows:
            if self._failed_flushes < SETTLE_APART_AFTER:
                try:
                    await self._store.call(lambda conn: self.keys.settle(holds, rows, conn))
                except Exception:
                    failed_holds, failed_rows = holds, rows
                    log.warning("settling %d requests failed", len(holds), exc_info=True)
            else:
                failed_holds, failed_rows = await self._settle_apart(holds, rows)
        if not failed_holds and not failed_rows:
            self._failed_flushes = 0
        else:
            # The transaction rolled back: put the work back for the next flush (a hold left
            # in the store would be charged its worst case once it expires, and the usage
            # rows would be lost). Past SETTLE_RETRIES failures in a row, give up loudly.
            self._failed_flushes += 1
            if self._failed_flushes <= SETTLE_RETRIES:
                log.warning(
                    "settling %d requests and %d usage rows failed (%d of %d tries); trying again",
                    len(failed_holds),
                    len(failed_rows),
                    self._failed_flushes,
                    SETTLE_RETRIES,
                )
                self._holds = {**failed_holds, **self._holds}
                self._usage[:0] = failed_rows
            else:
                self._failed_flushes = 0
                log.error(
                    "settling %d requests and %d usage rows failed %d times: their holds "
                    "will be charged at their reservation after auth.reservation_ttl_s",
                    len(failed_holds),
                    len(failed_rows),
                    SETTLE_RETRIES + 1,
                )
        if windows and self.windows is not None:
            try:
                await self.windows.add_tokens(windows)
            except Exception:
                log.exception("counting the tokens of %d shared minutes failed", len(windows))
        watch, self._watch = self._watch, set()
        if watch:
            try:
                crossed = await asyncio.to_thread(self.keys.over_soft_alert, sorted(watch))
            except Exception:
                log.exception("checking soft alerts failed")
                return
            for key in crossed:
                self._alerted.add(key.id)
                log.warning(
                    "key %s (%s) has spent %.0f%% or more of its %s budget of $%g",
                    key.id,
                    key.alias or "no alias",
                    100 * (key.limits.soft_alert or 0),
                    key.limits.period,
                    (key.limits.budget_nusd or 0) / 1e9,
                )

    async def _settle_apart(
        self, holds: dict[str, Hold], rows: list[dict[str, Any]]
    ) -> tuple[dict[str, Hold], list[dict[str, Any]]]:
        """Settle each request (its hold and its usage row) in a transaction of its own;
        the holds and rows of those that failed."""
        by_request: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            by_request.setdefault(row["request_id"], []).append(row)
        failed_holds: dict[str, Hold] = {}
        failed_rows: list[dict[str, Any]] = []
        for request_id in {**dict.fromkeys(holds), **dict.fromkeys(by_request)}:
            one = {request_id: holds[request_id]} if request_id in holds else {}
            its_rows = by_request.get(request_id, [])
            try:
                await self._store.call(functools.partial(self.keys.settle, one, its_rows))
            except Exception:
                log.warning("settling request %s failed", request_id, exc_info=True)
                failed_holds.update(one)
                failed_rows += its_rows
        return failed_holds, failed_rows

    def release(self, scope: MutableMapping[str, Any]) -> None:
        """A response is done and nothing settled it (the request was cancelled, or a bug):
        charge its reservation, as the upstream may have billed it; never less."""
        ticket: Ticket | None = scope.get(TICKET_SCOPE)
        if ticket is None or ticket.settled:
            return
        self._open.pop(ticket.trace_id, None)
        ticket.settled = True
        for subject, _ in ticket.subjects:
            self.limiter.done(subject, 0)
        if ticket.charges:
            self._settle(ticket, ticket.reserved)

    def start(self) -> None:
        """Charge expired holds now and then (every gateway does; each hold once)."""
        if self._expirer is None:
            self._expirer = asyncio.get_running_loop().create_task(self._expire_loop())

    async def _expire_loop(self) -> None:
        interval = min(60.0, self.reservation_ttl_s / 4)
        while True:
            try:
                charged = await asyncio.to_thread(self.keys.expire_holds)
                if charged:
                    log.warning(
                        "charged %d reservations held past auth.reservation_ttl_s (%gs): their "
                        "gateway ended before settling them",
                        charged,
                        self.reservation_ttl_s,
                    )
            except Exception:
                log.exception("charging expired reservations failed")
            await asyncio.sleep(interval)

    async def aclose(self, wait_s: float = CLOSE_WAIT_S) -> None:
        """Let the requests in flight finish (up to ``wait_s``), write their settlements
        and every one pending, then close. What is still held after that is charged at its
        reservation once ``auth.reservation_ttl_s`` passes (by any gateway's sweep)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        self._closing = True
        self._wake.set()
        if self._expirer is not None:
            self._expirer.cancel()
            await asyncio.gather(self._expirer, return_exceptions=True)
            self._expirer = None
        while (self._open or self._reservations.busy) and loop.time() < deadline:
            await asyncio.sleep(0.02)
        if self._flusher is not None:  # woken, it returns after the flush it is in, if any
            await asyncio.gather(self._flusher, return_exceptions=True)
        while True:
            await self.flush()
            if not (self._holds or self._usage) or loop.time() >= deadline:
                break
            await asyncio.sleep(min(1.0, SETTLE_DELAY_S * 2**self._failed_flushes))
        self._closed = True
        await self._store.aclose()
        if self.windows is not None:
            await self.windows.aclose()
        held = len(self._holds) + sum(1 for t in self._open.values() if t.reserved)
        if held:
            log.error(
                "closing with %d reservations not settled (%d requests still in flight after "
                "%gs): they are charged at their reservation after auth.reservation_ttl_s",
                held,
                len(self._open),
                wait_s,
            )

    # -- who made a trace ---------------------------------------------------------------

    def _own(self, trace_id: str, key_id: str) -> None:
        self._owners[trace_id] = key_id
        if len(self._owners) > _OWNERS:
            self._owners.popitem(last=False)

    async def authorize_feedback(self, request: Request, trace_id: str) -> None:
        """Feedback steers routers: only the key that made the trace (or the admin) may give it."""
        key: KeyInfo | None = request.scope.get(KEY_SCOPE)
        if key is None or key.is_admin:
            return
        if await self.owner(trace_id) != key.id:
            raise PermissionDenied(
                "Feedback is accepted only from the key that made the trace (or the admin key)",
                param="trace_id",
            )

    async def owner(self, trace_id: str) -> str | None:
        found = self._owners.get(trace_id)
        if found is not None:
            return found
        return await asyncio.to_thread(self.keys.owner, trace_id)
