"""A circuit breaker per model: stop sending requests to a model that keeps failing.

Closed (normal) → open after ``failures`` consecutive upstream failures: the model is
skipped, by direct requests' failover and by the routers' eligibility alike, for
``open_s`` seconds → half-open: one request at a time is let through as a probe; its
success closes the breaker, its failure opens it again for another ``open_s``.

Only upstream failures count (5xx, timeouts, refused keys, truncated answers); a request
the upstream rejects as invalid says nothing about the model's health. Event-loop use only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(slots=True)
class _State:
    failures: int = 0
    open_until: float = 0.0
    probing: bool = False


class CircuitBreaker:
    """Per-model breakers. ``healthy`` is what routing asks; ``allow`` what an attempt asks."""

    def __init__(self, failures: int = 3, open_s: float = 30.0) -> None:
        self.failures = failures
        self.open_s = open_s
        self._states: dict[str, _State] = {}

    def state(self, model: str) -> str:
        """``closed``, ``open`` or ``half_open`` (for /health and tests)."""
        s = self._states.get(model)
        if s is None or s.failures < self.failures:
            return "closed"
        return "open" if time.monotonic() < s.open_until else "half_open"

    def healthy(self, model: str) -> bool:
        """Whether ``model`` may be chosen now (closed, or half-open with no probe running)."""
        s = self._states.get(model)
        if s is None or s.failures < self.failures:
            return True
        return time.monotonic() >= s.open_until and not s.probing

    def allow(self, model: str) -> bool:
        """Whether to send a request to ``model`` now; a half-open one takes it as its probe."""
        s = self._states.get(model)
        if s is None or s.failures < self.failures:
            return True
        if time.monotonic() < s.open_until or s.probing:
            return False
        s.probing = True
        return True

    def retry_after(self, model: str) -> float:
        """Seconds until ``model``'s breaker lets a probe through (0 when it is not open)."""
        s = self._states.get(model)
        if s is None or s.failures < self.failures:
            return 0.0
        return max(0.0, s.open_until - time.monotonic())

    def failed(self, model: str) -> None:
        s = self._states.setdefault(model, _State())
        s.failures += 1
        s.probing = False
        if s.failures >= self.failures:
            s.open_until = time.monotonic() + self.open_s

    def succeeded(self, model: str) -> None:
        self._states.pop(model, None)

    def released(self, model: str) -> None:
        """An allowed request ended without saying anything of the model's health (e.g. the
        client left, or rejected its own request): a probe it held may be taken again."""
        s = self._states.get(model)
        if s is not None:
            s.probing = False
