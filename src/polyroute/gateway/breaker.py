"""A circuit breaker per model: stop sending requests to a model that keeps failing.

Closed (normal) → open after ``failures`` consecutive upstream failures: the model is
skipped, by direct requests' failover and by the routers' eligibility alike, for
``open_s`` seconds → half-open: one request at a time is let through as a probe; its
success closes the breaker, its failure opens it again for another ``open_s``. Both come
from ``breaker: {failures, cooldown_s}`` in the config, globally or per model (a flaky
cheap model may deserve a quick trip, a sole provider a patient one).

Only upstream failures count (5xx, timeouts, refused keys, truncated answers); a request
the upstream rejects as invalid says nothing about the model's health. Event-loop use only.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

from polyroute.config import Config


@dataclass(slots=True)
class _State:
    failures: int = 0
    open_until: float = 0.0
    probing: bool = False


class CircuitBreaker:
    """Per-model breakers. ``healthy`` is what routing asks; ``allow`` what an attempt asks."""

    def __init__(
        self,
        failures: int = 3,
        open_s: float = 30.0,
        per_model: Mapping[str, tuple[int, float]] | None = None,
    ) -> None:
        #: The thresholds of every model not in ``per_model``: (failures, open seconds).
        self.failures = failures
        self.open_s = open_s
        self._per_model = dict(per_model or {})
        self._states: dict[str, _State] = {}

    @classmethod
    def from_config(cls, config: Config) -> CircuitBreaker:
        """Breakers with the config's global thresholds and each model's own."""
        per_model = {
            m.name: (m.breaker.failures, m.breaker.cooldown_s)
            for m in config.models
            if m.breaker is not None
        }
        return cls(config.breaker.failures, config.breaker.cooldown_s, per_model)

    def thresholds(self, model: str) -> tuple[int, float]:
        """``model``'s (failures that open it, seconds it stays open)."""
        return self._per_model.get(model, (self.failures, self.open_s))

    def _tripped(self, model: str) -> _State | None:
        """``model``'s state when it has failed often enough to be open or half-open."""
        s = self._states.get(model)
        if s is None:  # the common case: never failed, or recovered
            return None
        return s if s.failures >= self.thresholds(model)[0] else None

    def state(self, model: str) -> str:
        """``closed``, ``open`` or ``half_open`` (for /health and tests)."""
        s = self._tripped(model)
        if s is None:
            return "closed"
        return "open" if time.monotonic() < s.open_until else "half_open"

    def healthy(self, model: str) -> bool:
        """Whether ``model`` may be chosen now (closed, or half-open with no probe running)."""
        s = self._tripped(model)
        if s is None:
            return True
        return time.monotonic() >= s.open_until and not s.probing

    def allow(self, model: str) -> bool:
        """Whether to send a request to ``model`` now; a half-open one takes it as its probe."""
        s = self._tripped(model)
        if s is None:
            return True
        if time.monotonic() < s.open_until or s.probing:
            return False
        s.probing = True
        return True

    def retry_after(self, model: str) -> float:
        """Seconds until ``model``'s breaker lets a probe through (0 when it is not open)."""
        s = self._tripped(model)
        if s is None:
            return 0.0
        return max(0.0, s.open_until - time.monotonic())

    def failed(self, model: str) -> None:
        s = self._states.setdefault(model, _State())
        s.failures += 1
        s.probing = False
        failures, open_s = self.thresholds(model)
        if s.failures >= failures:
            s.open_until = time.monotonic() + open_s

    def succeeded(self, model: str) -> None:
        self._states.pop(model, None)

    def released(self, model: str) -> None:
        """An allowed request ended without saying anything of the model's health (e.g. the
        client left, or rejected its own request): a probe it held may be taken again."""
        s = self._states.get(model)
        if s is not None:
            s.probing = False
