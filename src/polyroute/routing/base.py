"""The router interface: given a request and the eligible models, pick one and say why.

The gateway calls :meth:`Router.route` once per ``model="auto"`` (or named-router) request,
after constraints have removed models that cannot serve it. Routers that do CPU work
(embeddings) set ``blocking = True`` and the gateway runs them in a worker thread so the
event loop never waits on them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from polyroute.errors import ConfigError
from polyroute.options import Options as OptionsModel


@dataclass(frozen=True, slots=True)
class Candidate:
    """A model the router may choose, with what routing needs to know about it."""

    name: str
    #: USD per million tokens; None when not known.
    input_price: float | None = None
    output_price: float | None = None
    context_window: int | None = None
    #: What the model is known to have, and known to lack; any other capability is unknown,
    #: and a request that needs it may still go to this model (the decision says so).
    capabilities: frozenset[str] = frozenset()
    lacks: frozenset[str] = frozenset()
    healthy: bool = True


@dataclass(frozen=True, slots=True)
class RouteRequest:
    """What the router sees of a request."""

    #: The prompt as text (chat messages flattened, roles kept as prefixes).
    prompt: str
    #: The OpenAI messages, for routers that want the structure.
    messages: Sequence[dict[str, Any]] = ()
    #: An estimate of the prompt's tokens (for cost and context-length checks).
    input_tokens: int = 0
    #: Expected output tokens, for cost estimates (max_tokens or a default).
    output_tokens: int = 256
    #: Capabilities the request needs (``tools``, ``json_mode``, ``vision``).
    required_capabilities: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Decision:
    """The chosen model, plus the evidence: what each candidate scored."""

    model: str
    router: str
    #: Predicted quality per candidate (in [0, 1]) where the router predicts it.
    scores: dict[str, float] = field(default_factory=dict)
    #: Estimated cost (USD) per candidate for this request, where known.
    costs: dict[str, float] = field(default_factory=dict)
    reason: str = ""
    #: Models in the order to try if the chosen one fails (fallbacks).
    fallbacks: tuple[str, ...] = ()
    #: Per candidate, the capabilities the request needs that it was assumed to have
    #: because nothing says whether it does (see polyroute.routing.constraints).
    assumed: dict[str, list[str]] = field(default_factory=dict)


def check_options(name: str, options: Mapping[str, Any], known: Iterable[str]) -> None:
    """Refuse config options a router does not take, naming them and the ones it does."""
    known = sorted(known)
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ConfigError(
            f"routers.{name}: unknown option(s) {', '.join(unknown)}; known: {', '.join(known)}"
        )


class Router(ABC):
    """Chooses one model per request."""

    kind: ClassVar[str]
    #: The options its config entry takes (``routers.NAME``, besides ``kind`` and ``models``),
    #: a :class:`polyroute.options.Options` model; the gateway validates them with it before
    #: :meth:`from_config`. None: the options go to :meth:`from_config` unchecked.
    Options: ClassVar[type[OptionsModel] | None] = None
    #: True when :meth:`route` does real CPU work and must run off the event loop.
    blocking: ClassVar[bool] = False

    def __init__(self, name: str) -> None:
        self.name = name

    @classmethod
    def from_config(cls, name: str, options: dict[str, Any]) -> Router:
        """Build the router named ``name`` from its config section (minus ``kind``).

        The default validates them with the kind's :attr:`Options` model, where it declares
        one (errors name ``routers.NAME.FIELD``, as when the config file loads), and passes
        the options that were set as keyword arguments, so the constructor's defaults hold
        for the rest; a ``ValueError`` from the constructor becomes a :class:`ConfigError`.
        Routers that load a trained artefact (``path: DIR``) override this.
        """
        kwargs = dict(options)
        if cls.Options is not None:
            from polyroute.options import parse_options

            parsed = parse_options(cls.Options, options, f"routers.{name}")
            kwargs = parsed.model_dump(exclude_unset=True, exclude={"models"})
        try:
            return cls(name, **kwargs)
        except ValueError as e:
            raise ConfigError(f"routers.{name}: {e}") from None

    @abstractmethod
    def route(self, request: RouteRequest, candidates: Sequence[Candidate]) -> Decision:
        """Pick one of ``candidates`` (never empty: the caller raises NoEligibleModel)."""

    def warm(self) -> None:
        """Load what :meth:`route` needs (models, weights) now, so no request waits for it.

        Called once at gateway start-up, in a worker thread. The default does nothing.
        """
        return None
