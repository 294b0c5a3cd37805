"""Telemetry: Prometheus metrics and OpenTelemetry spans, fed by the gateway's observers.

Nothing here is on the store's path: observers see each finished request once, cheaply,
and exporting happens elsewhere (a scrape of ``/metrics``, a background span exporter).
"""

from polyroute.telemetry.metrics import GatewayMetrics
from polyroute.telemetry.observers import Telemetry

__all__ = ["GatewayMetrics", "Telemetry"]
