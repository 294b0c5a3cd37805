"""What a gateway observes each request with: metrics (unless switched off) and spans
(only when an OTLP endpoint is configured).

Tracing's module, and with it the OpenTelemetry SDK, is imported only when it is on.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from polyroute.config import Config
from polyroute.store.recorder import RequestRecord
from polyroute.telemetry.metrics import GatewayMetrics

if TYPE_CHECKING:
    from polyroute.telemetry.tracing import SpanObserver


class Telemetry:
    """The gateway's observers, built from ``config.telemetry``."""

    def __init__(self, config: Config) -> None:
        settings = config.telemetry
        self.metrics: GatewayMetrics | None = None
        self.spans: SpanObserver | None = None
        # The gateway's Observer type, spelled out: telemetry does not import the gateway.
        self.observers: list[Callable[[RequestRecord], None]] = []
        if settings.metrics:
            self.metrics = GatewayMetrics((m.name for m in config.models), config.routers.keys())
            self.observers.append(self.metrics.observe)
        if settings.otlp_endpoint is not None:
            from polyroute.telemetry.tracing import SpanObserver

            self.spans = SpanObserver.otlp(config)
            self.observers.append(self.spans)

    async def aclose(self) -> None:
        """Export the spans still queued (in a thread: it is network I/O); a worker of
        several takes its live gauges out of the shared totals."""
        if self.spans is not None:
            await asyncio.to_thread(self.spans.shutdown)
        if self.metrics is not None and self.metrics.multiprocess:
            from prometheus_client.multiprocess import mark_process_dead

            mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
