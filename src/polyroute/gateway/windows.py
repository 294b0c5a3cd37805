"""RPM and TPM counted per calendar minute where every replica sees them: the store or Redis.

``auth.rate_limits: database`` counts in the store's ``rate_windows`` table, one conditional
update per request (:meth:`~polyroute.store.ledger.Ledger.hit_window`). ``auth.rate_limits:
redis`` counts in Redis (``auth.redis_url``), one hash per subject and minute, checked and
counted by a Lua script: Redis runs a script alone, so no replica's count comes between
another's check and its count, and the limit is exact across replicas. A request's tokens
are added when it finishes, with the settlements; a minute's hash expires after two minutes.
Both are the shared half: the in-process limiter (:mod:`polyroute.auth.limits`) still counts
each replica's own sliding window and its requests in flight.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Protocol

from polyroute.errors import ConfigError, PolyrouteError
from polyroute.store.ledger import Ledger

if TYPE_CHECKING:
    from polyroute.config import AuthConfig

#: (counted, requests in the minute before this one, tokens used in the minute).
Hit = tuple[bool, int, int]


class SharedWindows(Protocol):
    """Per-minute counters every replica shares."""

    async def hit(self, subject: str, minute: int, rpm: int | None, tpm: int | None) -> Hit:
        """Count one request in ``subject``'s minute if it has room under ``rpm`` requests
        and ``tpm`` tokens; never counts one that has not."""
        ...

    async def add_tokens(self, tokens: dict[tuple[str, int], int]) -> None:
        """Add finished requests' tokens to their minutes."""
        ...

    async def aclose(self) -> None: ...


class StoreWindows:
    """The counters in the store's database (blocking calls, run on a worker thread)."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def _hit(self, subject: str, minute: int, rpm: int | None, tpm: int | None) -> Hit:
        if self.ledger.hit_window(subject, minute, rpm, tpm) is not None:
            return (True, 0, 0)
        return (False, *self.ledger.window_usage(subject, minute))

    async def hit(self, subject: str, minute: int, rpm: int | None, tpm: int | None) -> Hit:
        return await asyncio.to_thread(self._hit, subject, minute, rpm, tpm)

    async def add_tokens(self, tokens: dict[tuple[str, int], int]) -> None:
        if tokens:
            await asyncio.to_thread(self.ledger.add_window_tokens, tokens)

    async def aclose(self) -> None:
        return None


# KEYS[1]: the minute's hash. ARGV: rpm, tpm (-1: no limit), seconds to keep the hash.
_HIT = """
local requests = tonumber(redis.call('HGET', KEYS[1], 'requests') or '0')
local tokens = tonumber(redis.call('HGET', KEYS[1], 'tokens') or '0')
local rpm, tpm = tonumber(ARGV[1]), tonumber(ARGV[2])
if (rpm >= 0 and requests >= rpm) or (tpm >= 0 and tokens >= tpm) then
  return {0, requests, tokens}
end
redis.call('HINCRBY', KEYS[1], 'requests', 1)
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
return {1, requests, tokens}
"""
KEEP_S = 120


class RedisWindows:
    """The counters in Redis (see the module docstring); one connection pool per process."""

    def __init__(self, url: str, prefix: str = "polyroute:rate:") -> None:
        try:
            import redis.asyncio as redis
        except ModuleNotFoundError:
            raise ConfigError(
                "auth.rate_limits: redis needs the redis package: pip install 'polyroute[redis]'"
            ) from None
        self.url = url
        self.prefix = prefix
        self._redis: Any = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._script = self._redis.register_script(_HIT)
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        # Hits asked for while a pipeline is out go together in the next one: a round trip
        # and redis-py's work per command cost more CPU than Redis takes to run the script.
        self._asks: list[tuple[str, list[int], asyncio.Future[Hit]]] = []
        self._sending = False

    def _key(self, subject: str, minute: int) -> str:
        return f"{self.prefix}{subject}:{minute}"

    def _unreachable(self, e: BaseException) -> PolyrouteError:
        where = self.url.rsplit("@", 1)[-1]  # no password in the message
        return PolyrouteError(
            f"Rate limits cannot be checked: Redis at {where} did not answer ({type(e).__name__})"
        )

    async def hit(self, subject: str, minute: int, rpm: int | None, tpm: int | None) -> Hit:
        args = [-1 if rpm is None else rpm, -1 if tpm is None else tpm, KEEP_S]
        future: asyncio.Future[Hit] = asyncio.get_running_loop().create_future()
        self._asks.append((self._key(subject, minute), args, future))
        if not self._sending:
            self._sending = True
            asyncio.get_running_loop().create_task(self._send())
        return await future

    async def _send(self) -> None:
        """Run the waiting hits in pipelines until none waits; each script still runs alone
        in Redis, so each hit is decided on its own, as if sent by itself."""
        try:
            while self._asks:
                asks, self._asks = self._asks, []
                try:
                    async with self._redis.pipeline(transaction=False) as pipe:
                        for key, args, _ in asks:
                            await self._script(keys=[key], args=args, client=pipe)
                        results = await pipe.execute()
                except self._errors as e:
                    error = self._unreachable(e)
                    for _, _, f in asks:
                        if not f.done():
                            f.set_exception(error)
                    continue
                for (_, _, f), (counted, requests, tokens) in zip(asks, results, strict=True):
                    if not f.done():
                        f.set_result((bool(counted), int(requests), int(tokens)))
        finally:
            self._sending = False

    async def add_tokens(self, tokens: dict[tuple[str, int], int]) -> None:
        if not tokens:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for (subject, minute), n in tokens.items():
                key = self._key(subject, minute)
                pipe.hincrby(key, "tokens", n)
                pipe.expire(key, KEEP_S)
            await pipe.execute()

    async def aclose(self) -> None:
        await self._redis.aclose()


def shared_windows(auth: AuthConfig, ledger: Ledger) -> SharedWindows | None:
    """The shared counters ``auth.rate_limits`` names; None for ``memory``."""
    if auth.rate_limits == "database":
        return StoreWindows(ledger)
    if auth.rate_limits == "redis":
        assert auth.redis_url is not None  # the config requires it
        return RedisWindows(auth.redis_url)
    return None
