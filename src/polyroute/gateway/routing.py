"""Routers in the gateway: ``model="auto"`` (or a router's name) becomes a model per request.

The hub turns a chat request into a :class:`RouteRequest`, removes the models that cannot
serve it (constraints), asks the router, and returns the chosen model with its fallbacks.
Learned routers embed the prompt, which is CPU work: they run in a worker thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from polyroute.config import Config
from polyroute.errors import ConfigError, NoEligibleModel
from polyroute.gateway.breaker import CircuitBreaker
from polyroute.gateway.protocol import ChatCompletionRequest
from polyroute.routing.base import Candidate, Decision, Router, RouteRequest
from polyroute.routing.prompt import flatten_messages

#: Name that clients send to mean "the default router".
AUTO = "auto"
_DEFAULT_OUTPUT_TOKENS = 256

EligibleFn = Callable[[RouteRequest, Sequence[Candidate]], list[Candidate]]


def route_request(chat: ChatCompletionRequest, body: Mapping[str, Any]) -> RouteRequest:
    messages = [m for m in body["messages"] if isinstance(m, dict)]
    prompt = flatten_messages(messages)
    needs: set[str] = set()
    if chat.tools:
        needs.add("tools")
    if chat.response_format and chat.response_format.get("type") in ("json_object", "json_schema"):
        needs.add("json_mode")
    if any(
        isinstance(m.get("content"), list)
        and any(isinstance(p, dict) and p.get("type") == "image_url" for p in m["content"])
        for m in messages
    ):
        needs.add("vision")
    return RouteRequest(
        prompt=prompt,
        messages=messages,
        # ~4 characters a token: good enough for context checks and cost estimates, and free.
        input_tokens=max(1, len(prompt) // 4),
        output_tokens=chat.max_completion_tokens or chat.max_tokens or _DEFAULT_OUTPUT_TOKENS,
        required_capabilities=frozenset(needs),
    )


class RouterHub:
    """The configured routers, and the candidates they choose among."""

    def __init__(
        self,
        config: Config,
        routers: Mapping[str, Router],
        eligible: EligibleFn,
        health: CircuitBreaker | None = None,
    ) -> None:
        self.config = config
        self.routers = dict(routers)
        self.eligible = eligible
        #: The models' circuit breakers: an open one leaves its model out of the candidates.
        self.health = health or CircuitBreaker()
        from polyroute.routing.online import OnlineRouter

        #: The routers that learn from feedback.
        self.online: dict[str, OnlineRouter] = {
            n: r for n, r in self.routers.items() if isinstance(r, OnlineRouter)
        }
        self.default = config.default_router or (next(iter(self.routers)) if self.routers else None)
        if self.default is not None and self.default not in self.routers:
            raise ConfigError(
                f"default_router {self.default!r} is not one of the routers: "
                f"{', '.join(self.routers)}"
            )

    def handles(self, model: str) -> bool:
        return model in self.routers or (model == AUTO and self.default is not None)

    def candidates(self, router: Router) -> list[Candidate]:
        names = getattr(router, "models", None) or [m.name for m in self.config.models]
        out = []
        for name in names:
            m = self.config.model(name)
            if m is None:
                continue  # a router trained on a model this config does not serve
            out.append(
                Candidate(
                    name=m.name,
                    input_price=m.input_price,
                    output_price=m.output_price,
                    # A local model serves no more than the context it was loaded with.
                    context_window=min(
                        (n for n in (m.context_window, m.n_ctx) if n is not None), default=None
                    ),
                    capabilities=frozenset(m.capabilities),
                    healthy=self.health.healthy(m.name),
                )
            )
        return out

    def warm(self) -> None:
        """Load every router's models now (blocking: run it in a thread at start-up)."""
        for router in self.routers.values():
            router.warm()

    async def decide_with_context(self, model: str, request: RouteRequest) -> tuple[Decision, Any]:
        """The decision, and what an online router wants back with feedback (else None)."""
        name = self.default if model == AUTO else model
        assert name is not None
        router = self.routers[name]
        candidates = self.eligible(request, self.candidates(router))
        if not candidates:
            raise NoEligibleModel(f"router {name!r} has no model that can serve this request")
        route = _route_online if name in self.online else _route
        if router.blocking:
            return await asyncio.to_thread(route, router, request, candidates)
        return route(router, request, candidates)


def _route(
    router: Router, request: RouteRequest, candidates: Sequence[Candidate]
) -> tuple[Decision, Any]:
    return router.route(request, candidates), None


def _route_online(
    router: Router, request: RouteRequest, candidates: Sequence[Candidate]
) -> tuple[Decision, Any]:
    # The context (LinUCB: the prompt's embedding) is computed once, for routing now and
    # for learning when the feedback comes.
    from polyroute.routing.online import OnlineRouter

    assert isinstance(router, OnlineRouter)
    context = router.context(request)
    return router.route_with_context(request, candidates, context), context


def build_router_hub(config: Config) -> RouterHub | None:
    """The routers the config declares, built through the routers registry; None if none."""
    if not config.routers:
        return None
    from polyroute.routing.constraints import eligible
    from polyroute.routing.registry import ROUTERS

    routers: dict[str, Router] = {}
    for name, section in config.routers.items():
        options = dict(section)
        kind = options.pop("kind", None)
        if not isinstance(kind, str):
            raise ConfigError(
                f"routers.{name}.kind is required; known kinds: {', '.join(ROUTERS.names())}"
            )
        try:
            cls = ROUTERS.get(kind)
        except KeyError as e:
            raise ConfigError(f"routers.{name}.kind: {e.args[0]}") from None
        try:
            routers[name] = cls.from_config(name, options)
        except TypeError as e:
            raise ConfigError(f"routers.{name}: {e}") from None
    return RouterHub(config, routers, lambda req, cands: eligible(req, cands).candidates)
