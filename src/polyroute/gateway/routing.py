"""Routers in the gateway: ``model="auto"`` (or a router's name) becomes a model per request.

The hub turns a chat request into a :class:`RouteRequest`, removes the models that cannot
serve it (constraints), asks the router, and returns the chosen model with its fallbacks.
Learned routers embed the prompt, which is CPU work: they run in a worker thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from polyroute.config import Config, ModelConfig
from polyroute.errors import ConfigError, NoEligibleModel
from polyroute.gateway.bindings import Coverage, bind, price_prior
from polyroute.gateway.breaker import CircuitBreaker
from polyroute.gateway.protocol import ChatCompletionRequest
from polyroute.routing.base import Candidate, Decision, Router, RouteRequest
from polyroute.routing.constraints import with_assumptions
from polyroute.routing.prompt import content_text, flatten_messages

#: Name that clients send to mean "the default router".
AUTO = "auto"
_DEFAULT_OUTPUT_TOKENS = 256

EligibleFn = Callable[[RouteRequest, Sequence[Candidate]], list[Candidate]]


def route_request(chat: ChatCompletionRequest, body: Mapping[str, Any]) -> RouteRequest:
    """What routing sees of a chat request: the text a router reads (the turn to answer,
    see :func:`~polyroute.routing.prompt.flatten_messages`), its size, and what it needs."""
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
        # The model reads the whole conversation, not only the turn the router reads.
        input_tokens=max(1, _text_length(messages) // 4),
        output_tokens=chat.max_completion_tokens or chat.max_tokens or _DEFAULT_OUTPUT_TOKENS,
        required_capabilities=frozenset(needs),
    )


def _text_length(messages: Sequence[Mapping[str, Any]]) -> int:
    """Characters of text the upstream will read: every message's content and tool calls."""
    total = 0
    for m in messages:
        total += len(content_text(m.get("content")))
        calls = m.get("tool_calls")
        if isinstance(calls, list):
            for call in calls:
                function = call.get("function") if isinstance(call, dict) else None
                if isinstance(function, dict):
                    total += len(str(function.get("name", ""))) + len(
                        str(function.get("arguments", ""))
                    )
    return total


class RouterHub:
    """The configured routers, and the candidates they choose among."""

    def __init__(
        self,
        config: Config,
        routers: Mapping[str, Router],
        eligible: EligibleFn,
        health: CircuitBreaker | None = None,
        coverage: Mapping[str, Coverage] | None = None,
    ) -> None:
        self.config = config
        self.routers = dict(routers)
        #: Per router, the served models it chooses among and how it scores them.
        self.coverage = dict(coverage or {})
        self.eligible = eligible
        #: The models' circuit breakers: an open one leaves its model out of the candidates.
        self.health = health or CircuitBreaker.from_config(config)
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
        bound = self.coverage.get(router.name)
        if bound is not None:
            names = bound.members
        else:
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
                        (n for n in (m.context_window, _loaded(m)) if n is not None), default=None
                    ),
                    # Neither known nor known to lack: unknown, and assumed when needed.
                    capabilities=frozenset(m.capabilities or ()),
                    lacks=frozenset(m.lacks) - frozenset(m.capabilities or ()),
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
            decision, context = await asyncio.to_thread(route, router, request, candidates)
        else:
            decision, context = route(router, request, candidates)
        return with_assumptions(decision, request, candidates), context


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


#: The router ``model="auto"`` gets when the config declares none.
DEFAULT_ROUTER = AUTO


def _loaded(model: ModelConfig) -> int | None:
    """The context a local model was loaded with (its ``n_ctx`` option), if it has one."""
    n_ctx = getattr(model.options, "n_ctx", None)
    return n_ctx if isinstance(n_ctx, int) else None


def build_router_hub(config: Config) -> RouterHub | None:
    """The routers the config declares, built through the routers registry and bound to the
    served models; with none declared, a default router for ``auto``. None without models."""
    from polyroute.kinds import router_class, router_options
    from polyroute.routing.constraints import eligible

    routers: dict[str, Router] = {}
    coverage: dict[str, Coverage] = {}
    for name, section in config.routers.items():
        cls = router_class(name, section)
        options = router_options(name, cls, section)
        models_option = section.get("models")
        try:
            routers[name] = cls.from_config(name, options)
        except TypeError as e:
            raise ConfigError(f"routers.{name}: {e}") from None
        try:
            coverage[name] = bind(routers[name], models_option, config)
        except ConfigError as e:
            raise ConfigError(
                e.message if e.message.startswith("routers.") else f"routers.{name}: {e.message}"
            ) from None
    if not routers:
        if not config.models:
            return None
        default = default_router(config)
        routers[default.name] = default
        coverage[default.name] = bind(default, None, config)
    return RouterHub(
        config,
        routers,
        lambda req, cands: eligible(req, cands).candidates,
        coverage=coverage,
    )


def default_router(config: Config) -> Router:
    """The router ``auto`` uses when the config declares none: a built-in learned router that
    can score every served model, else Thompson sampling started from a price-aware prior."""
    from polyroute.errors import PolyrouteError
    from polyroute.routing.online.thompson import ThompsonRouter
    from polyroute.routing.persist import BUILTIN_PREFIX, builtin_routers, load_router

    served = [m.name for m in config.models]
    for builtin in builtin_routers():
        try:
            learned = load_router(BUILTIN_PREFIX + builtin, name=DEFAULT_ROUTER)
            covered = bind(learned, None, config)
        except PolyrouteError:
            continue  # it knows none of these models
        if not covered.unscored and covered.scored and len(covered.members) == len(served):
            return learned
    bandit = ThompsonRouter(DEFAULT_ROUTER, seed=0)
    for model, mean in price_prior(config.models).items():
        bandit.set_prior(model, mean)
    return bandit
