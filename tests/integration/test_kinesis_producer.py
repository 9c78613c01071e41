"""The producer against a real kinesis-local: batching, per-key order, retries of failed entries only."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.servers.kinesis_local import DUMMY_CREDENTIALS, KinesisLocalServer
from tests.streams import created, progress
from user_limits.inputs import InputError
from user_limits.kinesis.producer import MAX_REQUEST_BYTES, Entry, Producer, partition_key, plan, read_entries
from user_limits.kinesis.records import KPL_MAGIC

pytestmark = pytest.mark.servers


class RecordingClient:
    """The real client, recording each PutRecords call; chosen entries of chosen calls fail."""

    def __init__(self, inner: Any, fail: dict[int, set[bytes]] | None = None) -> None:
        self.inner = inner
        self.fail = fail or {}
        self.calls: list[list[dict[str, Any]]] = []

    def put_records(self, StreamName: str, Records: list[dict[str, Any]]) -> Any:
        self.calls.append(Records)
        failing = self.fail.get(len(self.calls), set())
        sent = [entry for entry in Records if entry["Data"] not in failing]
        results = iter(self.inner.put_records(StreamName=StreamName, Records=sent)["Records"] if sent else [])
        failure = {"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "Rate exceeded"}
        out = [failure if entry["Data"] in failing else next(results) for entry in Records]
        return {"FailedRecordCount": sum("ErrorCode" in r for r in out), "Records": out}


def stream_contents(kinesis: KinesisLocalServer, stream: str) -> list[Entry]:
    """Every record on the stream, shard by shard in order."""
    client = kinesis.client()
    out = []
    for shard in client.list_shards(StreamName=stream)["Shards"]:
        iterator = client.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while True:
            response = client.get_records(ShardIterator=iterator, Limit=10_000)
            out += [Entry(r["Data"], r["PartitionKey"]) for r in response["Records"]]
            if not response["Records"]:
                break
            iterator = response["NextShardIterator"]
    return out


def no_sleep(seconds: float) -> None:
    pass


def test_calls_hold_at_most_500_records(kinesis_local: KinesisLocalServer) -> None:
    stream = kinesis_local.create_stream(2)
    entries = [Entry(json.dumps(created(f"L{n}", 1, f"u{n}")).encode(), f"u{n}") for n in range(1200)]
    client = RecordingClient(kinesis_local.client())
    counts = Producer(client, stream).put(entries)  # type: ignore[arg-type]
    assert [len(call) for call in client.calls] == [500, 500, 200]
    assert (counts.put, counts.retried, counts.failed) == (1200, 0, 0)
    assert sorted(stream_contents(kinesis_local, stream)) == sorted(entries)


def test_calls_hold_at_most_5_mib() -> None:
    # Planned only: kinesis-local takes seconds to store megabytes, and the limit is the planner's.
    entries = [Entry(bytes([65 + n % 26]) * 200_000, f"k{n}") for n in range(60)]  # 12 MB in all
    calls = list(plan(entries))
    assert [len(call) for call in calls] == [26, 26, 8]
    assert all(sum(entry.size for entry in call) <= MAX_REQUEST_BYTES for call in calls)
    assert [entry for call in calls for entry in call] == entries


def test_only_failed_entries_are_retried_and_each_key_keeps_its_order(kinesis_local: KinesisLocalServer) -> None:
    stream = kinesis_local.create_stream(2)
    # Three users, four events each, interleaved as upstream would send them.
    entries = [
        Entry(json.dumps(progress(f"L{u}", seq, "1", "0", f"u{u}")).encode(), f"u{u}")
        for seq in range(1, 5)
        for u in range(3)
    ]
    first_of_u1 = entries[1].data
    client = RecordingClient(kinesis_local.client(), fail={1: {first_of_u1}})
    counts = Producer(client, stream, sleep=no_sleep).put(entries)  # type: ignore[arg-type]

    # One key per call, so a retry cannot land behind the same key's next record.
    assert all(len({e["PartitionKey"] for e in call}) == len(call) for call in client.calls)
    assert [e["Data"] for e in client.calls[1]] == [first_of_u1]  # the retry: the failed entry only
    assert (counts.put, counts.retried, counts.failed) == (12, 1, 0)
    on_stream = stream_contents(kinesis_local, stream)
    assert sorted(on_stream) == sorted(entries)
    for user in ("u0", "u1", "u2"):
        assert [e.data for e in on_stream if e.partition_key == user] == [
            e.data for e in entries if e.partition_key == user
        ]


def test_entries_failing_every_attempt_are_counted_failed(kinesis_local: KinesisLocalServer) -> None:
    stream = kinesis_local.create_stream(1)
    entries = [Entry(b"a", "k1"), Entry(b"b", "k2")]
    client = RecordingClient(kinesis_local.client(), fail={1: {b"b"}, 2: {b"b"}, 3: {b"b"}})
    counts = Producer(client, stream, max_attempts=3, sleep=no_sleep).put(entries)  # type: ignore[arg-type]
    assert (counts.put, counts.retried, counts.failed) == (1, 2, 1)
    assert [[e["Data"] for e in call] for call in client.calls] == [[b"a", b"b"], [b"b"], [b"b"]]


def test_partition_keys() -> None:
    envelope = json.dumps(created("L1", 1, "user-7")).encode()
    assert partition_key(envelope) == "user-7"
    assert partition_key(b"\xff\xfe not json") == hashlib.sha256(b"\xff\xfe not json").hexdigest()
    assert partition_key(b'{"aggregateId": ""}') == hashlib.sha256(b'{"aggregateId": ""}').hexdigest()


def test_a_lambda_event_is_put_as_it_is_aggregated_records_included(tmp_path: Path) -> None:
    from aws_kinesis_agg.aggregator import RecordAggregator

    aggregator = RecordAggregator()
    aggregator.add_user_record("u1", json.dumps(created("L1", 1, "u1")).encode())
    aggregator.add_user_record("u2", json.dumps(created("L2", 1, "u2")).encode())
    key, _, aggregated = aggregator.clear_and_get().get_contents()
    plain = json.dumps(created("L3", 1, "u3")).encode()
    event = {
        "Records": [
            {"kinesis": {"data": base64.b64encode(data).decode(), "partitionKey": pk, "sequenceNumber": str(n)}}
            for n, (pk, data) in enumerate([(key, aggregated), ("given-key", plain)])
        ]
    }
    path = tmp_path / "event.json"
    path.write_text(json.dumps(event))
    entries = read_entries(path)
    assert entries == [Entry(aggregated, key), Entry(plain, "given-key")]
    assert entries[0].data.startswith(KPL_MAGIC)


def test_json_lines_and_bad_input(tmp_path: Path) -> None:
    lines = tmp_path / "events.jsonl"
    lines.write_text("\n".join(json.dumps(created(f"L{n}", 1, f"u{n}")) for n in range(3)) + "\n")
    assert [entry.partition_key for entry in read_entries(lines)] == ["u0", "u1", "u2"]
    bad = tmp_path / "bad.json"
    bad.write_text("[{")
    with pytest.raises(InputError, match=r"bad\.json: malformed JSON"):
        read_entries(bad)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "user_limits", *args],
        env={**os.environ, **DUMMY_CREDENTIALS},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_prints_the_counts_and_rejects_bad_input_in_one_line(
    kinesis_local: KinesisLocalServer, tmp_path: Path
) -> None:
    stream = kinesis_local.create_stream(2)
    sample = Path(__file__).resolve().parents[2] / "src" / "user_limits" / "data" / "sample_events.json"
    done = run_cli("produce", str(sample), "--stream", stream, "--endpoint", kinesis_local.endpoint)
    count = len(json.loads(sample.read_text()))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{stream}: put {count}, retried 0, failed 0"
    assert len(stream_contents(kinesis_local, stream)) == count

    missing = run_cli(
        "produce", str(tmp_path / "missing.json"), "--stream", stream, "--endpoint", kinesis_local.endpoint
    )
    assert missing.returncode == 2
    assert missing.stderr.count("\n") == 1 and "missing.json: cannot read" in missing.stderr


def test_files_are_put_in_chunks_as_they_are_read_each_key_in_order(
    kinesis_local: KinesisLocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from user_limits.kinesis import producer as kinesis_producer

    for name, value in DUMMY_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    stream = kinesis_local.create_stream(2)
    events = [progress(f"L{u}", seq, "1", "0", f"u{u}") for seq in range(1, 6) for u in range(3)]
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(json.dumps(event) for event in events) + "\n")
    monkeypatch.setattr(kinesis_producer, "CHUNK_RECORDS", 4)  # 15 records: four chunks
    chunked = list(kinesis_producer.chunks(iter(read_entries(path)), 4))
    assert [len(chunk) for chunk in chunked] == [4, 4, 4, 3]
    counts = kinesis_producer.produce([path], stream, kinesis_local.endpoint)
    assert (counts.put, counts.retried, counts.failed) == (15, 0, 0)
    on_stream = stream_contents(kinesis_local, stream)
    for user in ("u0", "u1", "u2"):
        assert [json.loads(e.data)["sequenceNumber"] for e in on_stream if e.partition_key == user] == [1, 2, 3, 4, 5]


def test_a_malformed_line_mid_way_stops_the_put_there(
    kinesis_local: KinesisLocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from user_limits.kinesis import producer as kinesis_producer

    for name, value in DUMMY_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    stream = kinesis_local.create_stream(1)
    lines = [json.dumps(created(f"L{n}", 1, f"u{n}")) for n in range(5)]
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join([*lines[:4], "{cut short", lines[4]]) + "\n")
    monkeypatch.setattr(kinesis_producer, "CHUNK_RECORDS", 2)
    with pytest.raises(InputError) as caught:
        kinesis_producer.produce([path], stream, kinesis_local.endpoint)
    message = str(caught.value)
    assert message.startswith(f"{path}: line 5: malformed JSON")
    assert "4 records of it were put before it; putting the file again is safe" in message
    assert len(stream_contents(kinesis_local, stream)) == 4
