"""Prometheus metrics, one registry per service so tests can run many.

The hot path only bumps plain integers on the objects that own them (the
room, the flusher, the sessions table); a collector reads them at scrape
time. Prometheus objects are touched only per batch or per close.
"""

from __future__ import annotations

from typing import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from twisted.web.resource import Resource
from twisted.web.server import Request

Sample = Callable[[], Iterable[Metric]]


class _Collector(Collector):
    def __init__(self, sample: Sample) -> None:
        self._sample = sample

    def collect(self) -> Iterable[Metric]:
        return self._sample()


class Metrics:
    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        self.deliveries = Counter("anonchat_deliveries", "MESSAGE frames handed to connections", registry=registry)
        self.fanout_seconds = Histogram(
            "anonchat_fanout_seconds", "Time to fan out one feed batch", registry=registry,
            buckets=(0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0),
        )
        self.closes = Counter("anonchat_closes", "Server-initiated closes and refusals by reason", ["reason"],
                              registry=registry)
        # process_resident_memory_bytes, process_open_fds, process_max_fds, CPU
        # time, start time: read from /proc at scrape time (none where no /proc)
        ProcessCollector(registry=registry)

    def add_sampler(self, sample: Sample) -> None:
        """``sample()`` yields metric families, read at every scrape."""
        self.registry.register(_Collector(sample))


def counter(name: str, documentation: str, value: float = 0.0, labels: dict[str, float] | None = None,
            label: str = "") -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation, labels=[label] if labels is not None else None)
    if labels is None:
        family.add_metric([], value)
    else:
        for key, amount in sorted(labels.items()):
            family.add_metric([key], amount)
    return family


def gauge(name: str, documentation: str, value: float | None = None, labels: dict[str, float] | None = None,
          label: str = "") -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=[label] if labels is not None else None)
    if labels is None:
        family.add_metric([], value or 0.0)
    else:
        for key, amount in sorted(labels.items()):
            family.add_metric([key], amount)
    return family


class MetricsResource(Resource):
    isLeaf = True

    def __init__(self, metrics: Metrics) -> None:
        super().__init__()
        self._metrics = metrics

    def render_GET(self, request: Request) -> bytes:
        request.setHeader("Content-Type", CONTENT_TYPE_LATEST)
        return generate_latest(self._metrics.registry)
