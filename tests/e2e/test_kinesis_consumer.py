"""The standalone consumer against a real kinesis-local: checkpoints, restarts, resharding, signals.

Faults (a failing commit, an expired iterator) are injected by wrapping the real store or client.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.servers.kinesis_local import DUMMY_CREDENTIALS, KinesisLocalServer
from tests.streams import created, export, kpl_bytes, kpl_message, progress
from user_limits.bootstrap import open_store, processor
from user_limits.kinesis.consumer import Consumer, ConsumerOptions, Tally
from user_limits.kinesis.shards import SHARD_END, Assignment, is_finished
from user_limits.replay import replay
from user_limits.stores.base import LimitStore
from user_limits.stream.records import StreamRecord

pytestmark = pytest.mark.servers
SHARD0 = "shardId-000000000000"


def envelope_bytes(value: dict[str, Any]) -> bytes:
    return json.dumps(value).encode()


def user_stream(users: int, events_per_user: int, first_seq: int = 1) -> list[tuple[str, bytes]]:
    """Each user: one limit created at ``first_seq`` (when 1), then progress changes; per-user order."""
    out = []
    for seq in range(first_seq, first_seq + events_per_user):
        for u in range(users):
            user, limit = f"user-{u}", f"limit-{u}"
            previous = str(Decimal("1.5") * (seq - 2))
            event = created(limit, seq, user) if seq == 1 else progress(limit, seq, "1.5", previous, user)
            out.append((user, envelope_bytes(event)))
    return out


class Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, dict[str, object]]] = []

    def __call__(self, event: str, **fields: object) -> None:
        self.lines.append((event, fields))

    def events(self, name: str) -> list[dict[str, object]]:
        return [fields for event, fields in self.lines if event == name]


def run_consumer(
    kinesis: KinesisLocalServer, sqlite_store: LimitStore, stream: str, client: Any = None, **options: Any
) -> tuple[Tally, Log]:
    log = Log()
    settings: dict[str, Any] = {
        "idle_time_between_reads": 0.05,
        "stop_after_idle": 0.5,
        "shard_sync_interval": 0.2,
        "max_records": 50,
    }
    settings.update(options)
    consumer = Consumer(
        client or kinesis.client(), processor(sqlite_store), sqlite_store, ConsumerOptions(stream, **settings), log=log
    )
    return consumer.run(), log


def replayed(tmp_path: Path, records: list[tuple[str, bytes]]) -> list[dict[str, object]]:
    reference = open_store(f"sqlite:///{tmp_path}/reference.db")
    replay(reference, [StreamRecord(data) for _, data in records])
    return export(reference)


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Any:
    opened = open_store(f"sqlite:///{tmp_path}/store.db")
    yield opened
    opened.close()


class FailingStore:
    """Delegates to a real store; the chosen apply_batch calls fail after projecting (mid-commit)."""

    def __init__(self, inner: LimitStore, fail_calls: set[int]) -> None:
        self.inner = inner
        self.fail_calls = fail_calls
        self.calls = 0

    def apply_batch(self, keys: Any, project: Callable[[Any], Any]) -> Any:
        self.calls += 1
        if self.calls not in self.fail_calls:
            return self.inner.apply_batch(keys, project)

        def project_then_fail(snapshot: Any) -> Any:
            project(snapshot)
            raise RuntimeError("injected commit failure")

        return self.inner.apply_batch(keys, project_then_fail)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_checkpoint_commits_with_the_outcome_and_a_failed_commit_is_reread(
    kinesis_local: KinesisLocalServer, sqlite_store: LimitStore, tmp_path: Path
) -> None:
    stream = kinesis_local.create_stream(1)
    records = user_stream(users=10, events_per_user=10)
    sequence_numbers = kinesis_local.put(stream, records)
    # The second batch fails inside the store's transaction: neither its limits nor its checkpoint land.
    failing = FailingStore(sqlite_store, fail_calls={2})
    done, log = run_consumer(kinesis_local, failing, stream, max_records=30)  # type: ignore[arg-type]

    failures = log.events("commit-failed")
    assert len(failures) == 1 and failures[0]["shard"] == SHARD0
    checkpoint = sqlite_store.checkpoint(stream, SHARD0)
    assert checkpoint is not None and checkpoint.sequence_number == sequence_numbers[-1]
    assert checkpoint.sub_sequence_number == 0
    # Every record applied exactly once: the failed batch was read again from the checkpoint.
    assert done.records == len(records)
    assert sqlite_store.stats().applied == len(records)
    assert export(sqlite_store) == replayed(tmp_path, records)


def test_a_restart_resumes_after_the_checkpoint(
    kinesis_local: KinesisLocalServer, sqlite_store: LimitStore, tmp_path: Path
) -> None:
    stream = kinesis_local.create_stream(2)
    first = user_stream(users=6, events_per_user=3)
    kinesis_local.put(stream, first)
    done, _ = run_consumer(kinesis_local, sqlite_store, stream)
    assert done.records == len(first)

    second = user_stream(users=6, events_per_user=3, first_seq=4)
    kinesis_local.put(stream, second)
    done, _ = run_consumer(kinesis_local, sqlite_store, stream)
    assert done.records == len(second)  # nothing before the checkpoints is read again
    assert sqlite_store.stats().applied == len(first) + len(second)
    assert export(sqlite_store) == replayed(tmp_path, first + second)


def test_latest_skips_what_is_already_on_the_stream(
    kinesis_local: KinesisLocalServer, sqlite_store: LimitStore
) -> None:
    stream = kinesis_local.create_stream(1)
    kinesis_local.put(stream, user_stream(users=3, events_per_user=2))
    done, _ = run_consumer(kinesis_local, sqlite_store, stream, initial_position="LATEST")
    assert done.records == 0
    assert sqlite_store.stats().applied == 0


class ExpiringClient:
    """The real client, whose chosen get_records call raises ExpiredIteratorException once."""

    def __init__(self, inner: Any, expire_call: int) -> None:
        self.inner = inner
        self.expire_call = expire_call
        self.get_records_calls = 0
        self.iterator_requests: list[dict[str, Any]] = []

    def get_records(self, **kwargs: Any) -> Any:
        self.get_records_calls += 1
        if self.get_records_calls == self.expire_call:
            raise ClientError(
                {"Error": {"Code": "ExpiredIteratorException", "Message": "Iterator expired"}}, "GetRecords"
            )
        return self.inner.get_records(**kwargs)

    def get_shard_iterator(self, **kwargs: Any) -> Any:
        self.iterator_requests.append(kwargs)
        return self.inner.get_shard_iterator(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_an_expired_iterator_is_renewed_from_the_checkpoint(
    kinesis_local: KinesisLocalServer, sqlite_store: LimitStore
) -> None:
    stream = kinesis_local.create_stream(1)
    records = user_stream(users=5, events_per_user=8)
    kinesis_local.put(stream, records)
    client = ExpiringClient(kinesis_local.client(), expire_call=3)
    done, log = run_consumer(kinesis_local, sqlite_store, stream, client=client, max_records=10)

    assert len(log.events("iterator-expired")) == 1
    first, renewed = client.iterator_requests[:2]
    assert first["ShardIteratorType"] == "TRIM_HORIZON"
    # Two batches of 10 were committed before the expiry: the renewal starts right after the 20th record.
    twentieth = kinesis_local.client().get_records(
        ShardIterator=kinesis_local.client().get_shard_iterator(
            StreamName=stream, ShardId=SHARD0, ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"],
        Limit=20,
    )["Records"][-1]["SequenceNumber"]
    assert renewed == {
        "StreamName": stream,
        "ShardId": SHARD0,
        "ShardIteratorType": "AFTER_SEQUENCE_NUMBER",
        "StartingSequenceNumber": twentieth,
    }
    assert done.records == len(records)
    assert sqlite_store.stats().applied == len(records)


def test_a_split_shard_is_finished_before_its_children_start(
    kinesis_local: KinesisLocalServer, sqlite_store: LimitStore, tmp_path: Path
) -> None:
    stream = kinesis_local.create_stream(1)
    before = user_stream(users=8, events_per_user=3)
    kinesis_local.put(stream, before)
    kinesis_local.client().split_shard(StreamName=stream, ShardToSplit=SHARD0, NewStartingHashKey=str(2**127))
    kinesis_local.wait_active(stream)
    # Later events of the same users land on the children; applied before their parent's, they
    # would be parked and the older parent events skipped as late: the export would differ.
    after = user_stream(users=8, events_per_user=3, first_seq=4)
    kinesis_local.put(stream, after)

    done, log = run_consumer(kinesis_local, sqlite_store, stream)

    order = [(event, fields.get("shard")) for event, fields in log.lines if event.startswith("shard-")]
    children = {shard for event, shard in order if event == "shard-started" and shard != SHARD0}
    assert len(children) == 2
    finished_at = order.index(("shard-finished", SHARD0))
    assert all(order.index(("shard-started", child)) > finished_at for child in children)
    marker = sqlite_store.checkpoint(stream, SHARD0)
    assert is_finished(marker) and marker is not None and marker.sub_sequence_number == SHARD_END
    assert done.records == len(before) + len(after)
    assert export(sqlite_store) == replayed(tmp_path, before + after)


def test_merged_shards_are_both_finished_before_their_child_starts(
    kinesis_local: KinesisLocalServer, sqlite_store: LimitStore, tmp_path: Path
) -> None:
    stream = kinesis_local.create_stream(2)
    before = user_stream(users=8, events_per_user=3)
    kinesis_local.put(stream, before)
    client = kinesis_local.client()
    client.merge_shards(StreamName=stream, ShardToMerge=SHARD0, AdjacentShardToMerge="shardId-000000000001")
    kinesis_local.wait_active(stream)
    after = user_stream(users=8, events_per_user=3, first_seq=4)
    kinesis_local.put(stream, after)

    done, log = run_consumer(kinesis_local, sqlite_store, stream)

    order = [(event, fields.get("shard")) for event, fields in log.lines if event.startswith("shard-")]
    child = "shardId-000000000002"
    started = order.index(("shard-started", child))
    assert order.index(("shard-finished", SHARD0)) < started
    assert order.index(("shard-finished", "shardId-000000000001")) < started
    assert done.records == len(before) + len(after)
    assert export(sqlite_store) == replayed(tmp_path, before + after)


def test_kpl_aggregated_records_are_expanded_with_sub_sequence_checkpoints(
    kinesis_local: KinesisLocalServer, sqlite_store: LimitStore
) -> None:
    from aws_kinesis_agg.aggregator import RecordAggregator

    stream = kinesis_local.create_stream(1)
    aggregator = RecordAggregator()
    for key, data in user_stream(users=3, events_per_user=1):
        assert aggregator.add_user_record(key, data) is None
    key, _, data = aggregator.clear_and_get().get_contents()
    [sequence_number] = kinesis_local.put(stream, [(key, data)])

    done, _ = run_consumer(kinesis_local, sqlite_store, stream)
    assert done.records == 3
    assert sqlite_store.stats().applied == 3
    assert {limit.user_id for limit in sqlite_store.all_limits()} == {"user-0", "user-1", "user-2"}
    checkpoint = sqlite_store.checkpoint(stream, SHARD0)
    assert checkpoint is not None and (checkpoint.sequence_number, checkpoint.sub_sequence_number) == (
        sequence_number,
        2,
    )


def test_an_aggregate_that_cannot_be_read_is_dead_lettered_and_the_shard_moves_on(
    kinesis_local: KinesisLocalServer, sqlite_store: LimitStore
) -> None:
    # A sub-record's explicit hash key index points outside its table: the de-aggregator raises.
    message = kpl_message([(0, envelope_bytes(created("limit-1", 1, "user-1")))])
    message.explicit_hash_key_table.append("12345")
    message.records[0].explicit_hash_key_index = 9
    aggregate = kpl_bytes(message)
    stream = kinesis_local.create_stream(1)
    _, bad, after = kinesis_local.put(
        stream,
        [
            ("user-0", envelope_bytes(created("limit-0", 1, "user-0"))),
            ("kpl", aggregate),
            ("user-2", envelope_bytes(created("limit-2", 1, "user-2"))),
        ],
    )

    done, _ = run_consumer(kinesis_local, sqlite_store, stream)
    assert done.records == 3
    assert {limit.user_limit_id for limit in sqlite_store.all_limits()} == {"limit-0", "limit-2"}
    [letter] = sqlite_store.dead_letters()
    assert letter.data == aggregate
    assert letter.reason.startswith("KPL aggregate that cannot be de-aggregated")
    assert (letter.sequence_number, letter.partition_key, letter.shard_id) == (bad, "kpl", SHARD0)
    assert letter.arrival_ms is not None
    checkpoint = sqlite_store.checkpoint(stream, SHARD0)
    assert checkpoint is not None and checkpoint.sequence_number == after

    # A restart reads nothing again and does not crash.
    again, _ = run_consumer(kinesis_local, sqlite_store, stream)
    assert again.records == 0
    assert sqlite_store.stats().dead_letters == 1


def test_workers_split_the_shards_between_them(
    kinesis_local: KinesisLocalServer, sqlite_store: LimitStore, tmp_path: Path
) -> None:
    stream = kinesis_local.create_stream(4)
    records = user_stream(users=12, events_per_user=2)
    kinesis_local.put(stream, records)
    first, log0 = run_consumer(kinesis_local, sqlite_store, stream, assignment=Assignment(0, 2))
    second, log1 = run_consumer(kinesis_local, sqlite_store, stream, assignment=Assignment(1, 2))
    shards0 = {fields["shard"] for fields in log0.events("shard-started")}
    shards1 = {fields["shard"] for fields in log1.events("shard-started")}
    assert shards0 == {SHARD0, "shardId-000000000002"}
    assert shards1 == {"shardId-000000000001", "shardId-000000000003"}
    assert first.records + second.records == len(records)
    assert export(sqlite_store) == replayed(tmp_path, records)


def test_sigterm_stops_after_the_batch_in_hand_and_exits_0(kinesis_local: KinesisLocalServer, tmp_path: Path) -> None:
    stream = kinesis_local.create_stream(1)
    # Creations only, one limit each: `applied` must equal the records up to the checkpoint.
    records = [(f"user-{n}", envelope_bytes(created(f"limit-{n}", 1, f"user-{n}"))) for n in range(300)]
    sequence_numbers = kinesis_local.put(stream, records)
    url = f"sqlite:///{tmp_path}/store.db"
    command = [sys.executable, "-m", "user_limits", "consume", "--stream", stream, "--store", url]
    command += ["--endpoint", kinesis_local.endpoint, "--batch-size", "3", "--poll-interval", "0.05"]
    consumer = subprocess.Popen(command, env={**os.environ, **DUMMY_CREDENTIALS}, stderr=subprocess.PIPE, text=True)
    try:
        sqlite_store = open_store(url)
        deadline = time.monotonic() + 30
        while sqlite_store.checkpoint(stream, SHARD0) is None and time.monotonic() < deadline:
            time.sleep(0.02)
        consumer.send_signal(signal.SIGTERM)
        _, stderr = consumer.communicate(timeout=20)
    finally:
        if consumer.poll() is None:
            consumer.kill()
    assert consumer.returncode == 0, stderr
    assert '"event":"stopped"' in stderr
    checkpoint = sqlite_store.checkpoint(stream, SHARD0)
    assert checkpoint is not None
    done = sequence_numbers.index(checkpoint.sequence_number) + 1
    assert sqlite_store.stats().applied == done
    sqlite_store.close()
