"""Prometheus metrics, one registry per service so tests can run many.

Counting is a dict lookup and an add; nothing here does I/O.
"""

from __future__ import annotations

from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from twisted.web.resource import Resource
from twisted.web.server import Request


class Metrics:
    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        self.connections = Gauge("anonchat_connections", "Open STOMP connections", ["transport"], registry=registry)
        self.messages_in = Counter("anonchat_messages_in", "Chat messages accepted into the buffer", registry=registry)
        self.deliveries = Counter("anonchat_deliveries", "MESSAGE frames handed to connections", registry=registry)
        self.fanout_seconds = Histogram(
            "anonchat_fanout_seconds", "Time to fan out one feed batch", registry=registry,
            buckets=(0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0),
        )
        self.errors = Counter("anonchat_errors", "Errors by kind", ["kind"], registry=registry)
        self.closes = Counter("anonchat_closes", "Server-initiated closes by reason", ["reason"], registry=registry)
        self.backlog = Gauge("anonchat_buffer_backlog", "Messages not yet archived", registry=registry)
        self.flush_batch = Gauge("anonchat_flush_batch_size", "Messages in the last flushed batch", registry=registry)
        self.flush_lag = Gauge("anonchat_flush_lag_seconds", "Send-to-archive lag of the last batch", registry=registry)
        self.flushed = Counter("anonchat_flushed", "Messages written to the archive", registry=registry)

    def gauge_from(self, gauge: Gauge, read: Callable[[], float]) -> None:
        gauge.set_function(read)


class MetricsResource(Resource):
    isLeaf = True

    def __init__(self, metrics: Metrics, before_render: Callable[[], None] = lambda: None) -> None:
        super().__init__()
        self._metrics = metrics
        self._before_render = before_render

    def render_GET(self, request: Request) -> bytes:
        self._before_render()
        request.setHeader("Content-Type", CONTENT_TYPE_LATEST)
        return generate_latest(self._metrics.registry)
