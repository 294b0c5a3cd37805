"""Who may reach which route: the Host allow-list, keys, CORS and the dashboard's headers.

The gate runs ahead of everything else (the chat fast path included), once per request:

- the ``Host`` header must be on the allow-list (loopback names when bound to loopback), so a
  web page that rebinds its own DNS name to 127.0.0.1 cannot reach the gateway;
- with auth on, every route but ``/health/live`` needs a key (``Authorization: Bearer`` or
  ``x-api-key``): ``/admin/*`` the admin key, ``/ui`` the admin key or one with the
  ``dashboard`` permission (a browser sends it as a cookie set by ``/ui?key=...``),
  ``/metrics`` its own token, the admin key, or a loopback client;
- CORS headers only for the configured origins; security headers on ``/ui``.

A key is looked up once and then trusted for ``auth.cache_ttl_s`` seconds (≤ 5), so a
revocation reaches every replica within that time without a database read per request;
requests that miss together (as every request in flight does when an entry expires under
load) share one read.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import os
import time
from pathlib import Path

from starlette.responses import Response
from starlette.types import Message, Scope, Send

from polyroute.auth import secrets
from polyroute.auth.keys import ADMIN, DASHBOARD, KEY_SCOPE, KeyInfo
from polyroute.config import AuthConfig, Config
from polyroute.errors import (
    AuthenticationFailed,
    ConfigError,
    HostNotAllowed,
    PermissionDenied,
    PolyrouteError,
)
from polyroute.gateway.errors import error_response
from polyroute.store.keys import KeyStore

log = logging.getLogger(__name__)

ADMIN_KEY_ENV = "POLYROUTE_ADMIN_KEY"
COOKIE = "polyroute_key"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "[::1]")
_CACHE_MAX = 100_000
_OPEN = frozenset({"/health/live"})
#: Aggregates over everyone's traffic: the admin's only.
_ADMIN_UI = ("/ui/api/summary", "/ui/api/timeseries", "/ui/api/model-mix", "/ui/api/feedback",
             "/ui/api/routers", "/ui/api/leaderboard", "/ui/api/keys")  # fmt: skip
_UI_HEADERS = [
    (b"content-security-policy",
     b"default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; "
     b"form-action 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
]  # fmt: skip


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def admin_secret(auth: AuthConfig) -> str | None:
    """The admin key: ``POLYROUTE_ADMIN_KEY``, else the file the config names."""
    value = os.environ.get(ADMIN_KEY_ENV)
    if value:
        return value.strip()
    if auth.admin_key_file:
        path = Path(auth.admin_key_file).expanduser()
        try:
            text = path.read_text().strip()
        except OSError as e:
            raise ConfigError(
                f"auth.admin_key_file {path}: cannot be read ({e.strerror})"
            ) from None
        if len(text) < 16:
            raise ConfigError(f"auth.admin_key_file {path}: the key must be 16 characters or more")
        return text
    return None


def _header(scope: Scope, name: bytes) -> str | None:
    for k, v in scope["headers"]:
        if k == name:
            return str(v.decode("latin-1"))
    return None


def _presented(scope: Scope, cookie_ok: bool) -> str | None:
    value = _header(scope, b"authorization")
    if value is not None:
        kind, _, token = value.partition(" ")
        if kind.lower() == "bearer" and token.strip():
            return token.strip()
        return None
    value = _header(scope, b"x-api-key")
    if value:
        return value.strip()
    if cookie_ok:
        cookies = _header(scope, b"cookie") or ""
        for part in cookies.split(";"):
            name, _, v = part.strip().partition("=")
            if name == COOKIE and v:
                return v
    return None


class Gate:
    """The checks ahead of every route (see the module docstring)."""

    def __init__(self, config: Config, keys: KeyStore) -> None:
        self.config = config
        self.keys = keys
        server = config.server
        bound_loopback = is_loopback(server.host)
        auth = config.auth
        self.auth: AuthConfig = auth if isinstance(auth, AuthConfig) else AuthConfig()
        self.admin = admin_secret(self.auth) if auth != "none" else None
        if auth == "none":
            log.warning(
                "auth: none - anyone who can reach %s:%d may use this gateway and its upstream "
                "keys, and read every stored prompt",
                server.host,
                server.port,
            )
        elif self.admin is None and not bound_loopback:
            raise ConfigError(
                f"server.host {server.host} is not a loopback address, and no admin key is "
                f"configured: set {ADMIN_KEY_ENV} (or auth.admin_key_file) and create keys with "
                "`polyroute keys create`, or write `auth: none` in the config to serve without "
                "keys"
            )
        self.enabled = self.admin is not None
        hosts = server.allowed_hosts
        if hosts is None and bound_loopback:
            hosts = list(LOOPBACK_NAMES)
        self.hosts = frozenset(h.lower() for h in hosts) if hosts is not None else None
        self.cors = frozenset(server.cors_origins)
        token_env = self.auth.metrics_token_env
        self.metrics_token = os.environ.get(token_env) if token_env else None
        self.ttl = self.auth.cache_ttl_s
        self._cache: dict[str, tuple[KeyInfo | None, float]] = {}
        self._loading: dict[str, asyncio.Future[KeyInfo | None]] = {}

    # -- the Host header ----------------------------------------------------------------

    def _host_ok(self, scope: Scope) -> bool:
        if self.hosts is None:
            return True
        host = (_header(scope, b"host") or "").lower()
        if host.startswith("["):
            name = host[: host.find("]") + 1]
        else:
            name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
        return name in self.hosts

    # -- keys ---------------------------------------------------------------------------

    async def key_for(self, secret: str) -> KeyInfo | None:
        """The usable key this secret belongs to, or None (unknown, revoked, expired)."""
        if self.admin is not None and hmac.compare_digest(secret, self.admin):
            return ADMIN
        cached = self._cache.get(secret)
        if cached is not None and cached[1] > time.monotonic():
            key = cached[0]
        else:
            # One read per secret however many requests miss together: when an entry
            # expires under load, every request in flight with that key misses at once.
            loading = self._loading.get(secret)
            if loading is None:
                loading = asyncio.ensure_future(self._load_into_cache(secret))
                self._loading[secret] = loading
            key = await asyncio.shield(loading)  # one waiter cancelled: the read goes on
        if key is None or key.why_unusable() is not None:
            return None
        return key

    async def _load_into_cache(self, secret: str) -> KeyInfo | None:
        try:
            key = await self._load(secret)
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            self._cache[secret] = (key, time.monotonic() + self.ttl)
            return key
        finally:
            del self._loading[secret]

    async def _load(self, secret: str) -> KeyInfo | None:
        key_id = secrets.key_id_of(secret)
        if key_id is None:
            return None
        stored = await asyncio.to_thread(self.keys.lookup, key_id)
        if stored is None or not secrets.matches(stored.salt, stored.secret_hash, secret):
            return None
        return stored.info

    async def _authenticate(self, scope: Scope, path: str) -> KeyInfo:
        ui = path == "/ui" or path.startswith("/ui/")
        secret = _presented(scope, cookie_ok=ui)
        if secret is None:
            raise AuthenticationFailed(
                "You didn't provide an API key: send it as 'Authorization: Bearer KEY' "
                "(or 'x-api-key: KEY'); keys come from `polyroute keys create`"
            )
        key = await self.key_for(secret)
        if key is None:
            raise AuthenticationFailed(
                "Incorrect API key provided (unknown, revoked or expired): check the key, or "
                "ask the gateway's admin for a new one"
            )
        return key

    # -- the gate -----------------------------------------------------------------------

    async def check(self, scope: Scope) -> Response | None:
        """None when the request may go on (its key, if any, left in the scope); else the
        response that refuses it."""
        try:
            return await self._check(scope)
        except PolyrouteError as e:
            return error_response(e)

    async def _check(self, scope: Scope) -> Response | None:
        if not self._host_ok(scope):
            raise HostNotAllowed(
                "This Host is not allowed: list it in server.allowed_hosts (the default, when "
                "bound to loopback, is localhost, 127.0.0.1 and ::1)"
            )
        path: str = scope["path"]
        if self.cors and scope["method"] == "OPTIONS":
            origin = _header(scope, b"origin")
            if origin is not None and (origin in self.cors or "*" in self.cors):
                return Response(status_code=204, headers=self._cors_headers(origin, True))
        if not self.enabled:
            if path.startswith("/admin/"):
                raise PermissionDenied(
                    f"The admin API is off while auth is off: set {ADMIN_KEY_ENV} (or "
                    "auth.admin_key_file), or use `polyroute keys` on this machine"
                )
            return None
        if path in _OPEN:
            return None
        if path == "/metrics":
            return await self._metrics(scope)
        if path in ("/ui", "/ui/") and scope["method"] == "GET":
            login = self._ui_login(scope)
            if login is not None:
                return login
        key = await self._authenticate(scope, path)
        scope[KEY_SCOPE] = key
        if path.startswith("/admin"):
            if not key.is_admin:
                raise PermissionDenied("The admin API needs the admin key")
        elif path == "/ui" or path.startswith("/ui/"):
            if DASHBOARD not in key.permissions:
                raise PermissionDenied(
                    "The dashboard needs the admin key, or a key with the 'dashboard' "
                    "permission (polyroute keys update KEY --permissions dashboard)"
                )
            if not key.is_admin and path.startswith(_ADMIN_UI):
                raise PermissionDenied(
                    "Totals over every key's traffic are the admin's; this key sees its own traces"
                )
        return None

    async def _metrics(self, scope: Scope) -> Response | None:
        secret = _presented(scope, cookie_ok=False)
        if secret is not None:
            if self.metrics_token is not None and hmac.compare_digest(secret, self.metrics_token):
                return None
            if self.admin is not None and hmac.compare_digest(secret, self.admin):
                return None
            raise AuthenticationFailed("Incorrect token for /metrics")
        client = scope.get("client")
        if client is not None and is_loopback(str(client[0])):
            return None
        raise AuthenticationFailed(
            "/metrics needs its token (auth.metrics_token_env) or the admin key from a "
            "non-loopback client"
        )

    def _ui_login(self, scope: Scope) -> Response | None:
        """``/ui?key=...``: keep the key in an HttpOnly, same-site cookie, and drop it from
        the address bar (browsers cannot send headers when they open a page)."""
        query = scope.get("query_string", b"").decode("latin-1")
        for part in query.split("&"):
            name, _, value = part.partition("=")
            if name == "key" and value:
                from urllib.parse import unquote

                cookie = (
                    f"{COOKIE}={unquote(value)}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=86400"
                )
                return Response(status_code=303, headers={"location": "/ui", "set-cookie": cookie})
        return None

    # -- response headers ---------------------------------------------------------------

    def _cors_headers(self, origin: str, preflight: bool) -> dict[str, str]:
        headers = {"access-control-allow-origin": origin, "vary": "Origin"}
        if preflight:
            headers.update(
                {
                    "access-control-allow-methods": "GET, POST, PATCH, DELETE",
                    "access-control-allow-headers": "authorization, content-type, x-api-key",
                    "access-control-max-age": "600",
                }
            )
        return headers

    def wrap_send(self, scope: Scope, send: Send) -> Send:
        """``send``, adding security headers on ``/ui`` and CORS headers for allowed origins."""
        path: str = scope["path"]
        extra: list[tuple[bytes, bytes]] = []
        if path == "/ui" or path.startswith("/ui/"):
            extra += _UI_HEADERS
        if self.cors:
            origin = _header(scope, b"origin")
            if origin is not None and (origin in self.cors or "*" in self.cors):
                extra += [
                    (k.encode(), v.encode()) for k, v in self._cors_headers(origin, False).items()
                ]
        if not extra:
            return send

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        return sending
