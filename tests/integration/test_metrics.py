"""Prometheus metrics: ``/metrics`` of the read API (requests by route template and status, their
latency, the store's freshness) and the consumer's per-shard metrics, parsed back with
prometheus-client's own parser."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.test_api import ADMIN, SAMPLE_USER, SECRET, seed_sample
from tests.servers.kinesis_local import DUMMY_CREDENTIALS, KinesisLocalServer
from tests.servers.process import free_port
from tests.streams import created, encode, noise, progress
from user_limits.api.app import create_app
from user_limits.api.settings import Settings
from user_limits.bootstrap import open_store, processor
from user_limits.observability.metrics import ConsumerMetrics, MeteredProcessor
from user_limits.stores.base import LimitStore
from user_limits.stream.records import Counts, StreamRecord

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    """Every sample of a scrape: (name, sorted labels) -> value."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float | None:
    return found.get((name, tuple(sorted(labels.items()))))


@pytest.fixture
def memory_store() -> Iterator[LimitStore]:
    opened = open_store("memory://")
    yield opened
    opened.close()


def metered(memory_store: LimitStore) -> TestClient:
    return TestClient(
        create_app(Settings(jwt_secret=SECRET), memory_store, metrics=True), raise_server_exceptions=False
    )


def scrape(client: TestClient) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return samples(response.text)


def test_requests_are_counted_by_route_template_and_status(memory_store: LimitStore) -> None:
    seed_sample(memory_store)
    client = metered(memory_store)
    assert client.get(f"/api/user-limits/{SAMPLE_USER}", headers=ADMIN).status_code == 200
    assert client.get(f"/api/user-limits/{SAMPLE_USER}", headers=ADMIN).status_code == 200
    assert client.get("/api/user-limits/someone-else").status_code == 401
    assert client.get(f"/api/user-limits/{SAMPLE_USER}/no-such-limit", headers=ADMIN).status_code == 404
    assert client.get("/healthz").status_code == 200
    assert client.get("/no/such/path/../x").status_code == 404
    assert client.get("/web/app.js").status_code == 200
    found = scrape(client)
    requests = "user_limits_http_requests_total"
    listing = "/api/user-limits/{userId}"
    assert value(found, requests, method="GET", route=listing, status="200") == 2
    assert value(found, requests, method="GET", route=listing, status="401") == 1
    assert value(found, requests, method="GET", route=listing + "/{userLimitId}", status="404") == 1
    assert value(found, requests, method="GET", route="/healthz", status="200") == 1
    assert value(found, requests, method="GET", route="unmatched", status="404") == 1
    assert value(found, requests, method="GET", route="/web", status="200") == 1
    latency = "user_limits_http_request_duration_seconds_count"
    assert value(found, latency, method="GET", route=listing, status="200") == 2
    # User ids never become label values: a scanner cannot create series.
    assert not any(SAMPLE_USER in str(labels) or "someone-else" in str(labels) for _, labels in found)


def test_the_stores_freshness_is_its_as_of(memory_store: LimitStore) -> None:
    seed_sample(memory_store)
    as_of = memory_store.as_of()
    assert as_of is not None
    client = metered(memory_store)
    before = time.time()
    found = scrape(client)
    after = time.time()
    assert value(found, "user_limits_store_up") == 1
    assert value(found, "user_limits_store_as_of_seconds") == as_of / 1000
    age = value(found, "user_limits_store_as_of_age_seconds")
    assert age is not None and before - as_of / 1000 <= age <= after - as_of / 1000


def test_an_empty_store_has_no_freshness_yet(memory_store: LimitStore) -> None:
    found = scrape(metered(memory_store))
    assert value(found, "user_limits_store_up") == 1
    assert value(found, "user_limits_store_as_of_seconds") is None


class FailingAsOf:
    """A store whose freshness read fails (the fault injected); everything else is the real store."""

    def __init__(self, inner: LimitStore) -> None:
        self.inner = inner

    def as_of(self) -> int | None:
        raise ConnectionError("store down")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_failing_store_scrapes_as_down(memory_store: LimitStore) -> None:
    found = scrape(metered(FailingAsOf(memory_store)))  # type: ignore[arg-type]
    assert value(found, "user_limits_store_up") == 0
    assert value(found, "user_limits_store_as_of_age_seconds") is None


def test_no_metrics_unless_asked(memory_store: LimitStore) -> None:
    client = TestClient(create_app(Settings(jwt_secret=SECRET), memory_store), raise_server_exceptions=False)
    response = client.get("/metrics")
    assert response.status_code == 404
    assert response.json() == {"error": {"status": 404, "message": "Not Found"}}


def test_serve_answers_metrics(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/limits.db"
    seeded = open_store(url)
    seed_sample(seeded)
    seeded.close()
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "user_limits", "serve", "--store", url, "--port", str(port)],
        env={**os.environ, "USER_LIMITS_JWT_SECRET": SECRET, "USER_LIMITS_AUTH": "on"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            if process.poll() is not None:
                raise AssertionError(f"serve exited: {process.stderr.read().decode() if process.stderr else ''}")
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=1):
                    break
            except OSError:
                time.sleep(0.1)
        with urllib.request.urlopen(f"{base}/metrics", timeout=5) as answer:
            found = samples(answer.read().decode())
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert value(found, "user_limits_http_requests_total", method="GET", route="/healthz", status="200") == 1
    assert value(found, "user_limits_store_up") == 1
    assert value(found, "user_limits_store_as_of_seconds") is not None


def stream_records(shard: str, arrivals: list[int]) -> list[StreamRecord]:
    envelopes = [created("L1", 1), progress("L1", 2, "1", "1"), noise(3)]
    return [
        StreamRecord(encode(e), str(n), 0, "u1", arrival, None, shard)
        for n, (e, arrival) in enumerate(zip(envelopes, arrivals, strict=False))
    ]


def test_consumer_metrics_per_shard() -> None:
    now = 1_800_000_000.0
    metrics = ConsumerMetrics(clock=lambda: now)
    records = stream_records("shardId-000000000001", [1_799_999_990_000, 1_799_999_995_000])
    metrics.batch("shardId-000000000001", records, Counts(applied=2, ignored=1), 0.02)
    metrics.batch("shardId-000000000001", records[:1], Counts(skipped=1), 0.01)
    metrics.batch("shardId-000000000002", [], None, 0.5)
    found = samples(metrics.exposition().decode())
    one, two = "shardId-000000000001", "shardId-000000000002"
    recorded = "user_limits_consumer_records_total"
    assert value(found, recorded, shard=one, outcome="applied") == 2
    assert value(found, recorded, shard=one, outcome="ignored") == 1
    assert value(found, recorded, shard=one, outcome="skipped") == 1
    assert value(found, recorded, shard=one, outcome="deadLettered") == 0
    assert value(found, "user_limits_consumer_drifted_total", shard=one) == 0
    assert value(found, "user_limits_consumer_batch_duration_seconds_count", shard=one) == 2
    # The newest record of the shard's last batch was 10 s old when read.
    assert value(found, "user_limits_consumer_newest_record_age_seconds", shard=one) == 10.0
    assert value(found, "user_limits_consumer_failed_batches_total", shard=two) == 1
    assert value(found, recorded, shard=two, outcome="applied") is None


def test_the_consumer_counts_drift_per_shard_through_the_batch_path() -> None:
    metrics = ConsumerMetrics(clock=lambda: 1_800_000_000.0)
    metered = MeteredProcessor(processor(open_store("memory://")), metrics)
    shard = "shardId-000000000003"
    # stream_records' progress change says 0 remain of 100.00 - 2: it drifted.
    records = stream_records(shard, [1_799_999_990_000, 1_799_999_995_000])
    assert metered.process(records).counts.drifted == 1
    assert metered.process(records).counts.drifted == 0  # re-delivered: skipped, not counted again
    found = samples(metrics.exposition().decode())
    assert value(found, "user_limits_consumer_drifted_total", shard=shard) == 1
    assert value(found, "user_limits_consumer_records_total", shard=shard, outcome="applied") == 2


def test_the_consumer_metrics_server(tmp_path: Path) -> None:
    metrics = ConsumerMetrics()
    metrics.batch("shardId-000000000000", [], Counts(applied=3), 0.01)
    port = free_port()
    server = metrics.serve(port, "127.0.0.1")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            found = samples(answer.read().decode())
    finally:
        server.shutdown()
    assert value(found, "user_limits_consumer_records_total", shard="shardId-000000000000", outcome="applied") == 3


@pytest.mark.servers
def test_consume_serves_metrics_per_shard(kinesis_local: KinesisLocalServer, tmp_path: Path) -> None:
    stream = kinesis_local.create_stream(1)
    kinesis_local.put(stream, [(f"user-{n}", encode(created(f"limit-{n}", 1, f"user-{n}"))) for n in range(5)])
    kinesis_local.put(stream, [("user-0", encode(noise(2)))])
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "user_limits",
        "consume",
        "--stream",
        stream,
        "--store",
        f"sqlite:///{tmp_path}/s.db",
    ]
    command += ["--endpoint", kinesis_local.endpoint, "--poll-interval", "0.05", "--metrics-port", str(port)]
    consumer = subprocess.Popen(command, env={**os.environ, **DUMMY_CREDENTIALS}, stderr=subprocess.PIPE, text=True)
    shard = "shardId-000000000000"
    recorded = "user_limits_consumer_records_total"
    found: Samples = {}
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and consumer.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as answer:
                    found = samples(answer.read().decode())
            except OSError:
                pass
            if (value(found, recorded, shard=shard, outcome="applied") or 0) + (
                value(found, recorded, shard=shard, outcome="ignored") or 0
            ) >= 6:
                break
            time.sleep(0.1)
        consumer.send_signal(signal.SIGTERM)
        _, stderr = consumer.communicate(timeout=20)
    finally:
        if consumer.poll() is None:
            consumer.kill()
    assert consumer.returncode == 0, stderr
    assert value(found, recorded, shard=shard, outcome="applied") == 5
    assert value(found, recorded, shard=shard, outcome="ignored") == 1
    assert (value(found, "user_limits_consumer_batch_duration_seconds_count", shard=shard) or 0) >= 1
    assert value(found, "user_limits_consumer_newest_record_age_seconds", shard=shard) is not None


def test_consume_metrics_port_in_use_is_one_line(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        command = [sys.executable, "-m", "user_limits", "consume", "--stream", "s", "--metrics-port", str(port)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith(f"user-limits: error: --metrics-port {port}: cannot listen")
    assert len(done.stderr.splitlines()) == 1


def test_consumer_lease_metrics() -> None:
    metrics = ConsumerMetrics()
    metrics.leases_held(3)
    metrics.lease_taken_over()
    metrics.lease_taken_over()
    metrics.leases_held(4)
    found = samples(metrics.exposition().decode())
    assert value(found, "user_limits_consumer_leases_held") == 4
    assert value(found, "user_limits_consumer_lease_takeovers_total") == 2
