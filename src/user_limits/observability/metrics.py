"""Prometheus metrics of the long-running processes: the read API (``serve``) and the consumer.

Each process keeps its own ``CollectorRegistry`` (no global state, so tests and several apps in
one process do not mix). ``prometheus_client`` is the optional extra ``metrics``; nothing here is
imported by the Lambda handler, which reports through CloudWatch EMF instead.

- ``ApiMetrics``: requests by method, route template (``/api/user-limits/{userId}``, never the
  path itself: user ids stay out of the labels) and status; their latency; and the store's
  freshness, read from ``asOf`` at each scrape.
- ``ConsumerMetrics``: per shard, the batch outcome counts, the batch duration and the age of the
  newest record read (the consumer's lag); in a fleet, the leases held and the lease takeovers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from user_limits.stream.batch import BatchProcessor, BatchResult
from user_limits.stream.records import Checkpoint, Counts, StreamRecord

__all__ = ["CONTENT_TYPE_LATEST", "ApiMetrics", "ConsumerMetrics", "MeteredProcessor", "exposition"]

E = TypeVar("E")
S = TypeVar("S")

# Seconds: the API answers in milliseconds; the top buckets catch a store that stalls.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
OUTCOMES = ("applied", "skipped", "ignored", "parked", "deadLettered")


def exposition(registry: CollectorRegistry) -> bytes:
    """The registry in the Prometheus text format (``CONTENT_TYPE_LATEST``)."""
    return generate_latest(registry)


class _Freshness(Collector):
    """The store's ``asOf`` and its age, read when scraped; ``user_limits_store_up`` 0 if it fails."""

    def __init__(self, as_of: Callable[[], int | None], clock: Callable[[], float]) -> None:
        self.as_of = as_of
        self.clock = clock

    def collect(self) -> Iterable[GaugeMetricFamily]:
        up = GaugeMetricFamily("user_limits_store_up", "1 if the store answered the last scrape, else 0.")
        try:
            as_of = self.as_of()
        except Exception:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        if as_of is None:  # nothing applied yet: no freshness to report
            return
        yield GaugeMetricFamily(
            "user_limits_store_as_of_seconds",
            "Event time of the newest event applied (asOf), Unix seconds.",
            value=as_of / 1000,
        )
        yield GaugeMetricFamily(
            "user_limits_store_as_of_age_seconds",
            "Seconds since the newest event applied (now - asOf): how stale the figures served are.",
            value=max(0.0, self.clock() - as_of / 1000),
        )


class ApiMetrics:
    """The read API's metrics; ``observe`` once per request, ``exposition()`` per scrape."""

    def __init__(
        self,
        as_of: Callable[[], int | None] | None = None,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = registry or CollectorRegistry()
        self.requests = Counter(
            "user_limits_http_requests",
            "HTTP requests answered, by method, route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "user_limits_http_request_duration_seconds",
            "Time to answer an HTTP request, by method, route template and status.",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        if as_of is not None:
            self.registry.register(_Freshness(as_of, clock))

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        labels = (method, route, str(status))
        self.requests.labels(*labels).inc()
        self.latency.labels(*labels).observe(seconds)

    def exposition(self) -> bytes:
        return exposition(self.registry)


class ConsumerMetrics:
    """The standalone consumer's metrics, per shard; ``batch`` once per committed batch."""

    def __init__(self, registry: CollectorRegistry | None = None, clock: Callable[[], float] = time.time) -> None:
        self.registry = registry or CollectorRegistry()
        self.clock = clock
        self.records = Counter(
            "user_limits_consumer_records",
            "Records committed, by shard and outcome (applied, skipped, ignored, parked, deadLettered).",
            ["shard", "outcome"],
            registry=self.registry,
        )
        self.drifted = Counter(
            "user_limits_consumer_drifted",
            "Events whose producer figures disagree with the read model, by shard.",
            ["shard"],
            registry=self.registry,
        )
        self.batch_duration = Histogram(
            "user_limits_consumer_batch_duration_seconds",
            "Time to decode, project and commit one batch, by shard.",
            ["shard"],
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.newest_age = Gauge(
            "user_limits_consumer_newest_record_age_seconds",
            "Age of the newest record of the shard's last batch, at the time it was read (the consumer's lag).",
            ["shard"],
            registry=self.registry,
        )
        self.failed = Counter(
            "user_limits_consumer_failed_batches",
            "Batches the store did not commit (retried from the first uncommitted record), by shard.",
            ["shard"],
            registry=self.registry,
        )
        self.held = Gauge(
            "user_limits_consumer_leases_held",
            "Shard leases this consumer holds (consume --lease).",
            registry=self.registry,
        )
        self.takeovers = Counter(
            "user_limits_consumer_lease_takeovers",
            "Leases this consumer took over from another consumer (expired or stolen; consume --lease).",
            registry=self.registry,
        )

    def batch(self, shard: str, records: Sequence[StreamRecord], counts: Counts | None, seconds: float) -> None:
        """One batch of ``shard``: its counts when committed (None when it failed), its duration."""
        self.batch_duration.labels(shard).observe(seconds)
        arrivals = [record.arrival_ms for record in records if record.arrival_ms is not None]
        if arrivals:
            self.newest_age.labels(shard).set(max(0.0, self.clock() - max(arrivals) / 1000))
        if counts is None:
            self.failed.labels(shard).inc()
            return
        values = counts.as_json()
        for outcome in OUTCOMES:
            self.records.labels(shard, outcome).inc(values.get(outcome, 0))
        self.drifted.labels(shard).inc(values.get("drifted", 0))

    def leases_held(self, count: int) -> None:
        self.held.set(count)

    def lease_taken_over(self) -> None:
        self.takeovers.inc()

    def exposition(self) -> bytes:
        return exposition(self.registry)

    def serve(self, port: int, host: str = "127.0.0.1") -> Any:
        """Expose ``/metrics`` on ``host:port`` from a daemon thread; returns the server."""
        server, _ = start_http_server(port, addr=host, registry=self.registry)
        return server


class MeteredProcessor(BatchProcessor[E, S]):
    """A batch processor that reports each batch of one shard to ``ConsumerMetrics``."""

    def __init__(self, inner: BatchProcessor[E, S], metrics: ConsumerMetrics) -> None:
        super().__init__(inner.family, inner.store)
        self.metrics = metrics

    def process(self, records: Sequence[StreamRecord], checkpoint: Checkpoint | None = None) -> BatchResult:
        started = time.perf_counter()
        result = super().process(records, checkpoint)
        shard = records[0].shard_id if records else None
        if shard is not None:
            committed = result.counts if result.error is None else None
            self.metrics.batch(shard, records, committed, time.perf_counter() - started)
        return result
