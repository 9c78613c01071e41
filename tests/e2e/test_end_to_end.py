"""Done when: a messy stream produced into a 4-shard kinesis-local stream and consumed into each
store gives the export (and the `applied` counter) of a replay of the same records into SQLite,
also when the consumer is killed -9 mid-stream and restarted, and with two consumers at once.

Everything runs through the console commands (``python -m user_limits``), as a user would.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.servers.kinesis_local import DUMMY_CREDENTIALS, KinesisLocalServer
from user_limits.bootstrap import open_store
from user_limits.testing.synthetic import SyntheticRecord, generate

pytestmark = pytest.mark.servers
STORES = ["sqlite", "postgres", "dynamodb"]  # not memory: the consumer is another process
RECORDS = 2500


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "user_limits", *args],
        env={**os.environ, **DUMMY_CREDENTIALS},
        capture_output=True,
        text=True,
        timeout=180,
    )
    if check:
        assert done.returncode == 0, f"{args[0]} failed ({done.returncode}): {done.stderr[-3000:]}"
    return done


def consumer(stream: str, endpoint: str, store: str, *extra: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "user_limits", "consume", "--stream", stream, "--endpoint", endpoint]
    command += ["--store", store, "--poll-interval", "0.1", "--shard-refresh", "1", *extra]
    return subprocess.Popen(
        command, env={**os.environ, **DUMMY_CREDENTIALS}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )


def consume_until_idle(stream: str, endpoint: str, store: str, *extra: str) -> None:
    process = consumer(stream, endpoint, store, "--stop-when-idle", "1", *extra)
    _, stderr = process.communicate(timeout=240)
    assert process.returncode == 0, stderr[-3000:]


def result(store: str) -> tuple[list[dict[str, object]], dict[str, int]]:
    export = json.loads(cli("export", "--store", store).stdout)
    stats = json.loads(cli("stats", "--store", store, "--json").stdout)
    stats.pop("parkedOldestAgeMs")  # grows by the clock: two stores' differ by when they are asked
    return export, stats


@dataclass
class Produced:
    stream: str
    endpoint: str
    export: list[dict[str, object]]
    stats: dict[str, int]


def produce(kinesis: KinesisLocalServer, folder: Path, records: int) -> Produced:
    """A messy stream on a new 4-shard stream, and the outcome of replaying the same file into SQLite.

    The file is a Lambda Kinesis event: the only input format that holds poison records (truncated
    JSON, bad UTF-8) as they are.
    """
    messy = generate(
        records, users=records // 10, seed=11, duplicate_rate=0.04, late_rate=0.03, orphan_rate=0.01, poison_rate=0.01
    )
    messy += [SyntheticRecord(f"poison-{n}", b"\xff\xfe not utf-8 " + bytes([n])) for n in range(5)]
    event = {
        "Records": [
            {
                "eventID": f"shardId-000000000000:{n}",
                "kinesis": {
                    "data": base64.b64encode(record.data).decode(),
                    "partitionKey": record.partition_key,
                    "sequenceNumber": str(n),
                },
            }
            for n, record in enumerate(messy, 1)
        ]
    }
    path = folder / f"messy-{records}.json"
    path.write_text(json.dumps(event))
    stream = kinesis.create_stream(4)
    put = cli("produce", str(path), "--stream", stream, "--endpoint", kinesis.endpoint)
    assert put.stdout.strip() == f"{stream}: put {len(messy)}, retried 0, failed 0"

    reference = f"sqlite:///{folder}/reference-{records}.db"
    cli("replay", str(path), "--store", reference)
    export, stats = result(reference)
    # The stream is as messy as promised.
    assert stats["skipped"] > 0 and stats["ignored"] > 0 and stats["parked"] > 0 and stats["deadLettered"] > 0
    return Produced(stream, kinesis.endpoint, export, stats)


@pytest.fixture(scope="module")
def produced(kinesis_local: KinesisLocalServer, tmp_path_factory: pytest.TempPathFactory) -> Produced:
    return produce(kinesis_local, tmp_path_factory.mktemp("end-to-end"), RECORDS)


def same_outcome(store: str, produced: Produced) -> None:
    export, stats = result(store)
    assert len(export) == len(produced.export), (stats, produced.stats)
    assert export == produced.export
    counted = {name: stats[name] for name in ("applied", "parked", "deadLettered")}
    assert counted == {name: produced.stats[name] for name in counted}, (stats, produced.stats)


@pytest.mark.parametrize("store_url", STORES, indirect=True)
def test_consumed_stream_matches_a_replay(store_url: str, produced: Produced) -> None:
    cli("init", "--store", store_url)
    consume_until_idle(produced.stream, produced.endpoint, store_url)
    same_outcome(store_url, produced)


@pytest.mark.parametrize("store_url", STORES, indirect=True)
def test_kill_9_mid_stream_and_restart(store_url: str, produced: Produced) -> None:
    cli("init", "--store", store_url)
    store = open_store(store_url)
    total = produced.stats["applied"]
    killed_at = []
    try:
        for fraction in (0.2, 0.5, 0.8):
            process = consumer(produced.stream, produced.endpoint, store_url, "--batch-size", "25")
            deadline = time.monotonic() + 120
            while store.stats().applied < fraction * total and process.poll() is None:
                assert time.monotonic() < deadline, "the consumer made no progress"
                time.sleep(0.02)
            process.send_signal(signal.SIGKILL)
            process.communicate(timeout=30)
            killed_at.append(store.stats().applied)
    finally:
        store.close()
    assert killed_at == sorted(killed_at) and killed_at[0] < total, killed_at  # killed mid-stream
    consume_until_idle(produced.stream, produced.endpoint, store_url)
    same_outcome(store_url, produced)


@pytest.mark.parametrize("store_url", STORES, indirect=True)
def test_two_consumers_at_once_on_one_store(store_url: str, produced: Produced) -> None:
    cli("init", "--store", store_url)
    # Fully overlapping (both read every shard): the store's transactional, sequence-conditional
    # writes must make the second one's work a no-op.
    first = consumer(produced.stream, produced.endpoint, store_url, "--stop-when-idle", "1", "--batch-size", "50")
    second = consumer(produced.stream, produced.endpoint, store_url, "--stop-when-idle", "1", "--batch-size", "70")
    for process in (first, second):
        _, stderr = process.communicate(timeout=240)
        assert process.returncode == 0, stderr[-3000:]
    same_outcome(store_url, produced)
