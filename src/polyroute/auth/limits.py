"""Rate limits per key and team: requests per minute, tokens per minute, requests in flight.

In memory the counters are exact within the process: the event loop runs one admission at a
time, and nothing awaits between the check and the count. RPM and TPM are sliding windows of
the last 60 s. The database backend (``auth.rate_limits: database``, in
:mod:`polyroute.gateway.admission`) shares RPM and TPM across replicas through one conditional
update per request on a per-minute row of ``rate_windows`` (a fixed window: exact per
calendar minute). ``parallel`` stays per process: a shared in-flight count would stay
taken forever by a replica that crashed mid-request.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field

from polyroute.auth.keys import Limits
from polyroute.errors import KeyRateLimited

WINDOW_S = 60.0


@dataclass(slots=True)
class _Counter:
    requests: deque[float] = field(default_factory=deque)
    tokens: deque[tuple[float, int]] = field(default_factory=deque)
    token_sum: int = 0
    in_flight: int = 0

    def trim(self, now: float) -> None:
        edge = now - WINDOW_S
        while self.requests and self.requests[0] <= edge:
            self.requests.popleft()
        while self.tokens and self.tokens[0][0] <= edge:
            self.token_sum -= self.tokens.popleft()[1]


def _headers(limits: Limits, c: _Counter, now: float) -> dict[str, str]:
    """OpenAI's ``x-ratelimit-*`` headers for this subject now."""
    out: dict[str, str] = {}
    if limits.rpm is not None:
        reset = (c.requests[0] + WINDOW_S - now) if c.requests else 0.0
        out["x-ratelimit-limit-requests"] = str(limits.rpm)
        out["x-ratelimit-remaining-requests"] = str(max(0, limits.rpm - len(c.requests)))
        out["x-ratelimit-reset-requests"] = f"{max(0.0, reset):.3f}s"
    if limits.tpm is not None:
        reset = (c.tokens[0][0] + WINDOW_S - now) if c.tokens else 0.0
        out["x-ratelimit-limit-tokens"] = str(limits.tpm)
        out["x-ratelimit-remaining-tokens"] = str(max(0, limits.tpm - c.token_sum))
        out["x-ratelimit-reset-tokens"] = f"{max(0.0, reset):.3f}s"
    return out


def refused(message: str, retry_after_s: float, headers: dict[str, str]) -> KeyRateLimited:
    err = KeyRateLimited(message)
    err.headers = {"retry-after": str(max(1, math.ceil(retry_after_s))), **headers}
    return err


class RateLimiter:
    """In-process counters for every subject (``key:<id>``, ``team:<id>``)."""

    def __init__(self) -> None:
        self._counters: dict[str, _Counter] = {}

    def _counter(self, subject: str) -> _Counter:
        c = self._counters.get(subject)
        if c is None:
            c = self._counters[subject] = _Counter()
        return c

    def check(self, subject: str, limits: Limits, now: float | None = None) -> None:
        """Raise :class:`KeyRateLimited` if one more request would pass a limit."""
        now = time.monotonic() if now is None else now
        c = self._counter(subject)
        c.trim(now)
        if limits.rpm is not None and len(c.requests) >= limits.rpm:
            wait = c.requests[0] + WINDOW_S - now
            raise refused(
                f"Rate limit reached for {subject}: {limits.rpm} requests per minute; "
                f"try again in {wait:.1f}s",
                wait,
                _headers(limits, c, now),
            )
        if limits.tpm is not None and c.token_sum >= limits.tpm:
            wait = c.tokens[0][0] + WINDOW_S - now
            raise refused(
                f"Rate limit reached for {subject}: {limits.tpm} tokens per minute; "
                f"try again in {wait:.1f}s",
                wait,
                _headers(limits, c, now),
            )
        if limits.parallel is not None and c.in_flight >= limits.parallel:
            raise refused(
                f"Rate limit reached for {subject}: {limits.parallel} requests in flight at "
                "once; try again when one finishes",
                1.0,
                _headers(limits, c, now),
            )

    def take(self, subject: str, limits: Limits, now: float | None = None) -> None:
        """Count a request that passed :meth:`check` (call it with no await in between)."""
        now = time.monotonic() if now is None else now
        c = self._counter(subject)
        if limits.rpm is not None:
            c.requests.append(now)
        c.in_flight += 1

    def untake(self, subject: str, limits: Limits) -> None:
        """Undo :meth:`take` for a request refused after all (its budget): it never ran."""
        c = self._counter(subject)
        if limits.rpm is not None and c.requests:
            c.requests.pop()
        c.in_flight = max(0, c.in_flight - 1)

    def done(self, subject: str, tokens: int, now: float | None = None) -> None:
        """A request finished: it is no longer in flight, and its tokens count for TPM."""
        now = time.monotonic() if now is None else now
        c = self._counter(subject)
        c.in_flight = max(0, c.in_flight - 1)
        if tokens > 0:
            c.tokens.append((now, tokens))
            c.token_sum += tokens

    def headers(self, subject: str, limits: Limits) -> dict[str, str]:
        now = time.monotonic()
        c = self._counter(subject)
        c.trim(now)
        return _headers(limits, c, now)
