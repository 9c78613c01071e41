"""The DynamoDB store against a real local DynamoDB (moto's server mode, started by the suite):
the table, the single-table layout, conditional writes, retries, and partial failures through the
Lambda handler. The behaviour every store shares is in test_store_contract.py."""

from __future__ import annotations

import base64
import io
import json
import os
import random
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.servers.dynamodb_local import DynamoDBServer
from tests.streams import (
    KINESIS_BASE,
    created,
    encode,
    export,
    lambda_event,
    lambda_record,
    noise,
    process,
    progress,
    records,
)
from user_limits import aws_lambda
from user_limits.cli import main
from user_limits.domain.model import UserLimit
from user_limits.family import UserLimitFamily
from user_limits.inputs import read_records
from user_limits.kinesis.records import records_from_lambda_event
from user_limits.replay import replay
from user_limits.stores.base import LimitStore, StoreError
from user_limits.stores.dynamodb import plan as dynamodb_writes
from user_limits.stores.dynamodb import store as dynamodb_module
from user_limits.stores.dynamodb_store import DynamoDBStore, initialize, parse_url
from user_limits.stores.memory_store import MemoryStore
from user_limits.stream.batch import BatchProcessor
from user_limits.stream.engine import decode_batch, project
from user_limits.stream.records import Checkpoint, CommitError, Outcome, Snapshot, StreamRecord
from user_limits.testing import synthetic

pytestmark = pytest.mark.servers


@pytest.fixture
def dynamodb_store(dynamodb_store_url: str) -> Iterator[DynamoDBStore]:
    opened = DynamoDBStore(dynamodb_store_url)
    yield opened
    opened.close()


class Requests:
    """Counts the store's DynamoDB requests and injects faults into chosen ones."""

    def __init__(self, dynamodb_store: DynamoDBStore) -> None:
        self.names: list[str] = []
        self.faults: dict[tuple[str, int], Callable[[], None]] = {}
        self.events = dynamodb_store._client.meta.events
        self.events.register("before-call.dynamodb", self._before)

    def _before(self, model: Any, **_: Any) -> None:
        self.names.append(model.name)
        fault = self.faults.pop((model.name, self.names.count(model.name)), None)
        if fault is not None:
            fault()

    def fail(self, operation: str, nth: int, code: str = "InternalServerError", **response: Any) -> None:
        """Make the ``nth`` ``operation`` request from now on fail with ``code``."""

        def raise_error() -> None:
            raise ClientError({"Error": {"Code": code, "Message": "injected"}, **response}, operation)

        self.faults[(operation, self.names.count(operation) + nth)] = raise_error

    def close(self) -> None:
        self.events.unregister("before-call.dynamodb", self._before)


def project_batch(batch: list[StreamRecord], snapshot: Snapshot[UserLimit]) -> Outcome[UserLimit]:
    family = UserLimitFamily()
    return project(family, decode_batch(family, batch), snapshot)


def reference(batches: list[list[StreamRecord]]) -> MemoryStore:
    memory = MemoryStore()
    for batch in batches:
        process(memory, batch)
    return memory


def state(dynamodb_store: LimitStore) -> tuple[list[dict[str, object]], dict[str, int], list[object], list[str]]:
    letters = sorted(letter.id for letter in dynamodb_store.dead_letters())
    return export(dynamodb_store), dynamodb_store.stats().as_json(), list(dynamodb_store.parked_events()), letters


# -- the table


def test_init_creates_an_on_demand_table_once(dynamodb_server: DynamoDBServer, dynamodb_credentials: None) -> None:
    url = dynamodb_server.store_url()
    table = parse_url(url).table
    try:
        first, second = initialize(url), initialize(url)
        assert f"created DynamoDB table {table} (on-demand" in first
        assert f"DynamoDB table {table} already exists" in second
        dynamodb_store = DynamoDBStore(url)
        description = dynamodb_store._client.describe_table(TableName=table)["Table"]
        dynamodb_store.ping()
        dynamodb_store.close()
    finally:
        dynamodb_server.delete_table(table)
    assert description.get("BillingModeSummary", {}).get("BillingMode") == "PAY_PER_REQUEST"
    assert {(key["AttributeName"], key["KeyType"]) for key in description["KeySchema"]} == {
        ("PK", "HASH"),
        ("SK", "RANGE"),
    }


def test_cli_init_then_stats(dynamodb_server: DynamoDBServer, dynamodb_credentials: None) -> None:
    url = dynamodb_server.store_url()
    command = [str(Path(sys.executable).with_name("user-limits"))]
    try:
        before = subprocess.run([*command, "stats", "--store", url], capture_output=True, text=True)
        init = subprocess.run([*command, "init", "--store", url], capture_output=True, text=True)
        after = subprocess.run([*command, "stats", "--store", url, "--json"], capture_output=True, text=True)
    finally:
        dynamodb_server.delete_table(parse_url(url).table)
    assert before.returncode == 2 and "Traceback" not in before.stderr
    assert f"run `user-limits init --store {url}`" in before.stderr
    assert init.returncode == 0 and "created DynamoDB table" in init.stdout, init.stderr
    assert after.returncode == 0, after.stderr
    assert '"applied": 0' in after.stdout


def test_opening_a_missing_table_says_to_run_init(dynamodb_server: DynamoDBServer, dynamodb_credentials: None) -> None:
    url = dynamodb_server.store_url()
    with pytest.raises(StoreError) as raised:
        DynamoDBStore(url)
    message = str(raised.value)
    assert "does not exist" in message and f"run `user-limits init --store {url}`" in message
    assert "\n" not in message


def test_the_url_names_table_region_and_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    location = parse_url("dynamodb://limits?region=eu-north-1&endpoint=http://127.0.0.1:8000")
    assert (location.table, location.region, location.endpoint) == ("limits", "eu-north-1", "http://127.0.0.1:8000")
    with pytest.raises(StoreError, match="no AWS region"):
        parse_url("dynamodb://limits")
    with pytest.raises(StoreError, match="bad DynamoDB table name"):
        parse_url("dynamodb://a!?region=eu-north-1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    assert parse_url("dynamodb://limits").region == "eu-west-1"
    monkeypatch.setenv("AWS_REGION", "us-west-2")
    assert (parse_url("dynamodb://limits").region, parse_url("dynamodb://limits").endpoint) == ("us-west-2", None)


@pytest.mark.parametrize(
    "url",
    [
        "dynamodb://limits?region=eu-west-1&endpoint=http://[::1",
        "dynamodb://limits?region=eu-west-1&endpoint=ftp://x",
        "dynamodb://limits?region=eu-west-1&endpoint=http://",
        "dynamodb://limits?region=eu-west-1&endpoint=http://127.0.0.1:99999",
        "dynamodb://limits?region=eu-west-1&endpoint=http://a%20b",
        "dynamodb://limits?region=../x",
        "dynamodb://limits?region=eu_west_1",
        "dynamodb://[::1?region=eu-west-1",
    ],
)
def test_a_bad_endpoint_region_or_url_is_one_line_and_exit_2(
    url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    monkeypatch.setattr(sys, "argv", ["user-limits", "stats", "--store", url])
    with pytest.raises(SystemExit) as done:
        main()
    err = capsys.readouterr().err
    assert done.value.code == 2
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err

    def no_request(*args: Any) -> str:
        raise AssertionError("a request was made")

    monkeypatch.setattr(dynamodb_module, "describe", no_request)
    with pytest.raises(StoreError):
        DynamoDBStore(url)  # refused before its first request


# -- the layout


def test_a_users_limits_are_one_partition_read_with_one_query(dynamodb_store: DynamoDBStore) -> None:
    process(
        dynamodb_store, records([created("L2", 1, value="9800.00"), created("L1", 2), created("L3", 1, user_id="u2")])
    )
    items = dynamodb_store._client.query(
        TableName=dynamodb_store.table,
        KeyConditionExpression="PK = :pk",
        ExpressionAttributeValues={":pk": {"S": "USER#u1"}},
    )["Items"]
    assert [item["SK"]["S"] for item in items] == ["LIMIT#L1", "LIMIT#L2"]
    assert items[1]["value"] == {"S": "9800.00"}  # a string: a number would lose the scale

    requests = Requests(dynamodb_store)
    limits = dynamodb_store.user_limits("u1")
    requests.close()
    assert [limit.user_limit_id for limit in limits] == ["L1", "L2"]
    assert requests.names == ["Query"]


def test_a_batch_reads_limits_and_parked_events_together(dynamodb_store: DynamoDBStore) -> None:
    process(dynamodb_store, records([progress("L1", 5, "5", "0")]))  # parked
    requests = Requests(dynamodb_store)
    process(dynamodb_store, records([created("L1", 1), progress("L2", 2, "1", "0", user_id="u2")], 10))
    requests.close()
    # One BatchGetItem for both limits and their parked items, one for the owner entries of those
    # not found (is the limit in another user's partition?); one transaction; the asOf maximum.
    assert requests.names == ["BatchGetItem", "BatchGetItem", "TransactWriteItems", "UpdateItem"]
    assert [event.key for event in dynamodb_store.parked_events()] == ["L2"]
    limit = dynamodb_store.user_limit("u1", "L1")
    assert limit is not None and (limit.last_sequence_number, str(limit.progress)) == (5, "5")

    requests = Requests(dynamodb_store)
    process(dynamodb_store, records([progress("L1", 6, "1", "5")], 20))  # the usual case: existing limits
    requests.close()
    assert requests.names == ["BatchGetItem", "TransactWriteItems", "UpdateItem"]


# -- conditional writes


LIMIT_STREAM = [created("L1", 1), *(progress("L1", n, "1", str(n - 2)) for n in range(2, 6))]


@pytest.mark.parametrize(("theirs", "ours"), [(3, 5), (5, 3)], ids=["they-are-behind", "they-are-ahead"])
def test_a_writer_whose_snapshot_went_stale_ends_as_a_serial_writer(
    dynamodb_store_url: str, dynamodb_store: DynamoDBStore, theirs: int, ours: int
) -> None:
    other = records(LIMIT_STREAM[:theirs])
    mine = records([*LIMIT_STREAM[:ours], created("L2", 1, user_id="u2")], 100)
    other_store = DynamoDBStore(dynamodb_store_url)
    snapshots: list[Snapshot[UserLimit]] = []

    def interleaved(snapshot: Snapshot[UserLimit]) -> Outcome[UserLimit]:
        if not snapshots:
            process(other_store, other)  # the other writer commits while we hold our snapshot
        snapshots.append(snapshot)
        return project_batch(mine, snapshot)

    dynamodb_store.apply_batch({"L1": "u1", "L2": "u2"}, interleaved)
    other_store.close()

    assert len(snapshots) == 2  # L1 was read and projected again
    serial = reference([other, mine])
    assert state(dynamodb_store) == state(serial)  # limits, parked, dead letters and every counter
    limit = dynamodb_store.user_limit("u1", "L1")
    assert limit is not None and limit.last_sequence_number == max(theirs, ours)


def test_an_outcome_from_an_outdated_snapshot_is_never_written(dynamodb_store: DynamoDBStore) -> None:
    process(dynamodb_store, records(LIMIT_STREAM))
    before = state(dynamodb_store)
    stale = project_batch(records(LIMIT_STREAM[:3]), Snapshot())  # as if L1 did not exist

    with pytest.raises(CommitError) as raised:
        dynamodb_store.apply_batch({"L1": "u1"}, lambda snapshot: stale)

    assert raised.value.first_uncommitted == 0
    assert state(dynamodb_store) == before


def test_checkpoints_of_any_length_only_move_forward(dynamodb_store: DynamoDBStore) -> None:
    def commit(sequence: str, sub: int = 0) -> Checkpoint | None:
        marker = Checkpoint("stream", "shardId-000000000001", sequence, sub)
        dynamodb_store.apply_batch({}, lambda snapshot: Outcome(checkpoint=marker))
        return dynamodb_store.checkpoint("stream", "shardId-000000000001")

    long = "49590338271490256608559692538361571095921575989136588898"  # 56 digits
    assert commit("9") == Checkpoint("stream", "shardId-000000000001", "9", 0)
    assert commit("10") is not None and commit("9") == Checkpoint("stream", "shardId-000000000001", "10", 0)
    assert commit(long, 2) == Checkpoint("stream", "shardId-000000000001", long, 2)
    assert commit(long, 1) == commit("1" + "0" * 30) == Checkpoint("stream", "shardId-000000000001", long, 2)
    longer = "1" + "0" * 56  # 57 digits: larger, though it sorts first as text
    assert commit(longer) == Checkpoint("stream", "shardId-000000000001", longer, 0)


# -- failures and retries


def test_a_batch_failing_in_its_first_write_commits_nothing_and_its_retry_counts_once(
    dynamodb_store: DynamoDBStore,
) -> None:
    batch = records([created("L1", 1), progress("L1", 2, "1", "0"), progress("L1", 2, "1", "0"), b"{poison"])
    requests = Requests(dynamodb_store)
    requests.fail("TransactWriteItems", 1)
    failed = BatchProcessor(UserLimitFamily(), dynamodb_store).process(batch)
    requests.close()
    assert failed.first_uncommitted == 0 and isinstance(failed.error, ClientError)
    assert state(dynamodb_store) == state(MemoryStore())

    process(dynamodb_store, batch)  # Lambda's retry
    assert state(dynamodb_store) == state(reference([batch]))
    process(dynamodb_store, batch)  # delivered once more: nothing applied twice
    assert state(dynamodb_store) == state(reference([batch, batch]))


def test_unprocessed_keys_and_transaction_conflicts_are_retried(dynamodb_store: DynamoDBStore) -> None:
    batch = records([created("L1", 1), created("L2", 2), progress("L1", 3, "1", "0")])
    client = dynamodb_store._client
    hits: list[str] = []

    def nothing_processed(parsed: dict[str, Any], **_: Any) -> None:
        if not hits:  # the first read: DynamoDB processed none of the keys
            hits.append("unprocessed")
            parsed["UnprocessedKeys"] = {dynamodb_store.table: {"Keys": requested[0], "ConsistentRead": True}}
            parsed["Responses"] = {dynamodb_store.table: []}

    requested: list[Any] = []

    def remember(params: dict[str, Any], **_: Any) -> None:
        requested.append(params["RequestItems"][dynamodb_store.table]["Keys"])

    client.meta.events.register("before-parameter-build.dynamodb.BatchGetItem", remember)
    client.meta.events.register("after-call.dynamodb.BatchGetItem", nothing_processed)
    requests = Requests(dynamodb_store)
    requests.fail(
        "TransactWriteItems",
        1,
        "TransactionCanceledException",
        CancellationReasons=[{"Code": "TransactionConflict"}, {"Code": "None"}, {"Code": "None"}],
    )
    try:
        process(dynamodb_store, batch)
    finally:
        requests.close()
        client.meta.events.unregister("before-parameter-build.dynamodb.BatchGetItem", remember)
        client.meta.events.unregister("after-call.dynamodb.BatchGetItem", nothing_processed)
    assert hits == ["unprocessed"]
    # The read again, then the owner entries of the new limits; the transaction again.
    assert requests.names.count("BatchGetItem") == 3 and requests.names.count("TransactWriteItems") == 2
    assert state(dynamodb_store) == state(reference([batch]))


def test_when_only_the_as_of_write_fails_every_record_is_committed(dynamodb_store: DynamoDBStore) -> None:
    # Two copies of a poison record without coordinates: one dead letter, counted twice as every store does.
    batch = [
        *records([created("L1", 1), progress("L1", 2, "1", "0"), noise(3)]),
        StreamRecord(b"{}"),
        StreamRecord(b"{}"),
    ]
    requests = Requests(dynamodb_store)
    requests.fail("UpdateItem", 1)
    with pytest.raises(CommitError) as raised:
        dynamodb_store.apply_batch({"L1": "u1"}, lambda snapshot: project_batch(batch, snapshot))
    requests.close()
    assert raised.value.first_uncommitted == len(batch)  # nothing to re-deliver
    assert raised.value.committed == project_batch(batch, Snapshot()).counts  # all of it
    assert state(dynamodb_store) == state(reference([batch]))
    assert dynamodb_store.as_of() is None
    process(dynamodb_store, records([progress("L1", 3, "1", "1")], 10))  # the next batch moves it on
    assert dynamodb_store.as_of() == 1_700_000_003_000


def lambda_events(stream: list[synthetic.SyntheticRecord], size: int) -> list[dict[str, Any]]:
    all_records = [lambda_record(r.data, n, partition_key=r.partition_key) for n, r in enumerate(stream)]
    return [{"Records": all_records[start : start + size]} for start in range(0, len(all_records), size)]


@pytest.mark.parametrize("failing_transaction", [2, 4])
def test_a_partial_failure_is_reported_and_redelivery_equals_a_clean_run(
    dynamodb_store_url: str, monkeypatch: pytest.MonkeyPatch, failing_transaction: int
) -> None:
    # Few actions a transaction, so that one small batch takes several.
    monkeypatch.setattr(dynamodb_module, "TRANSACTION_ACTIONS", 6)
    stream = synthetic.generate(180, users=12, seed=3, orphan_rate=0.05, poison_rate=0.03, duplicate_rate=0.05)
    events = lambda_events(stream, 60)
    batches = [records_from_lambda_event(event)[0] for event in events]
    clean = reference(batches)

    monkeypatch.setenv("USER_LIMITS_STORE", dynamodb_store_url)
    aws_lambda.reset()
    try:
        dynamodb_store = aws_lambda.processor().store
        assert isinstance(dynamodb_store, DynamoDBStore)
        requests = Requests(dynamodb_store)
        assert aws_lambda.handler(events[0]) == {"batchItemFailures": []}
        requests.fail("TransactWriteItems", failing_transaction)
        response = aws_lambda.handler(events[1])
        applied_before_redelivery = dynamodb_store.stats().applied

        failures = response["batchItemFailures"]
        sequence_numbers = [record["kinesis"]["sequenceNumber"] for record in events[1]["Records"]]
        assert len(failures) == 1
        first_failed = sequence_numbers.index(failures[0]["itemIdentifier"])
        assert first_failed > 0  # part of the batch is committed ...
        assert applied_before_redelivery < reference(batches[:2]).stats().applied  # ... and part is not

        # Lambda re-delivers the batch from the reported record on.
        retry = {"Records": events[1]["Records"][first_failed:]}
        assert aws_lambda.handler(retry) == {"batchItemFailures": []}
        assert aws_lambda.handler(events[2]) == {"batchItemFailures": []}
        requests.close()
        final = dynamodb_store
        assert export(final) == export(clean)
        assert final.stats().applied == clean.stats().applied
        assert (final.stats().waiting, final.stats().dead_letters) == (
            clean.stats().waiting,
            clean.stats().dead_letters,
        )
        assert final.parked_events() == clean.parked_events()
        assert sorted(letter.id for letter in final.dead_letters()) == sorted(
            letter.id for letter in clean.dead_letters()
        )
    finally:
        aws_lambda.reset()


def test_records_larger_than_an_item_are_kept_whole_in_chunks(dynamodb_store: DynamoDBStore) -> None:
    # A Kinesis record holds up to 1 MiB, a DynamoDB item 400 KB: big records are compressed and,
    # when still too big (random bytes do not compress), split into chunk items.
    orphan = encode(progress("L1", 5, "1", "0", note=os.urandom(400_000).hex()))
    poison = b"\xff" + os.urandom(1_000_000)
    process(dynamodb_store, records([orphan, poison]))
    assert [event.data for event in dynamodb_store.parked_events()] == [orphan]
    assert [letter.data for letter in dynamodb_store.dead_letters()] == [poison]
    assert chunk_items(dynamodb_store) == {"parked": 2, "limits": 0, "dead letters": 4}

    process(dynamodb_store, records([created("L1", 1)], 10))  # drains the orphan: its chunks go too
    limit = dynamodb_store.user_limit("u1", "L1")
    assert limit is not None and str(limit.progress) == "1"
    assert dynamodb_store.parked_events() == [] and chunk_items(dynamodb_store) == {
        "parked": 0,
        "limits": 0,
        "dead letters": 4,
    }


def all_keys(dynamodb_store: DynamoDBStore) -> list[tuple[str, str]]:
    pages = dynamodb_store._client.get_paginator("scan").paginate(
        TableName=dynamodb_store.table, ProjectionExpression="PK, SK"
    )
    return [(item["PK"]["S"], item["SK"]["S"]) for page in pages for item in page["Items"]]


def chunk_items(dynamodb_store: DynamoDBStore) -> dict[str, int]:
    keys = all_keys(dynamodb_store)
    return {
        "parked": sum(pk.startswith("PARKED#") and sk.startswith("CHUNK#") for pk, sk in keys),
        "limits": sum(pk.startswith("USER#") and sk.startswith("CHUNK#LIMIT#") for pk, sk in keys),
        "dead letters": sum(pk == "DEADLETTERCHUNK" for pk, _ in keys),
    }


# -- the shared sample


def test_the_shared_sample_gives_the_expected_outcome(
    dynamodb_store: DynamoDBStore, shared_sample: list[dict[str, object]]
) -> None:
    from tests.conftest import SHARED_SAMPLE

    sample = read_records(SHARED_SAMPLE)
    counts = replay(dynamodb_store, sample)
    limits = export(dynamodb_store)
    assert [(limit["type"], limit["progress"]) for limit in limits] == [("DEPOSIT", "0")] * 3
    assert (counts.applied, counts.ignored, counts.parked) == (9, 6, 2)
    assert dynamodb_store.stats().as_json() == {
        "applied": 9, "skipped": 0, "ignored": 6, "parked": 2, "deadLettered": 0, "drifted": 2
    }  # fmt: skip
    assert limits == export(reference([sample]))
    resets = {
        event["payload"]["userLimitId"]: event["payload"]["nextResetTime"]  # type: ignore[index]
        for event in shared_sample
        if event["type"] == "USER_LIMIT_RESET"
    }
    assert all(limit["nextResetTime"] == resets[limit["userLimitId"]] for limit in limits)


# -- what the Lambda handler logs is what was committed


@pytest.fixture
def lambda_on(dynamodb_store_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[DynamoDBStore]:
    """The Lambda handler on this test's table; its log line goes to a buffer, its metrics (EMF,
    printed) to stdout."""
    monkeypatch.setenv("USER_LIMITS_STORE", dynamodb_store_url)
    monkeypatch.setattr(aws_lambda.logger.registered_handler, "stream", io.StringIO())
    aws_lambda.reset()
    dynamodb_store = aws_lambda.processor().store
    assert isinstance(dynamodb_store, DynamoDBStore)
    yield dynamodb_store
    aws_lambda.reset()


def batch_log(capsys: pytest.CaptureFixture[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The handler's one log line about the batch, and its one EMF metrics blob."""
    stream = aws_lambda.logger.registered_handler.stream
    assert isinstance(stream, io.StringIO)
    [line] = [json.loads(text) for text in stream.getvalue().splitlines() if '"records"' in text]
    [blob] = [json.loads(text) for text in capsys.readouterr().out.splitlines() if '"_aws"' in text]
    # EMF gives each metric as a list of the values added in the flush: one each here.
    metrics = {name: value[0] if isinstance(value, list) else value for name, value in blob.items()}
    return line, metrics


COUNT_NAMES = ("applied", "skipped", "ignored", "parked", "deadLettered")


def test_when_only_the_as_of_write_fails_the_log_and_metrics_say_what_was_committed(
    lambda_on: DynamoDBStore, capsys: pytest.CaptureFixture[str]
) -> None:
    event = lambda_event([created("L1", 1), progress("L1", 2, "1", "0"), progress("L2", 3, "1", "0")])
    requests = Requests(lambda_on)
    requests.fail("UpdateItem", 1)  # the asOf maximum, after every limit is committed
    response = aws_lambda.handler(event)
    requests.close()

    assert response == {"batchItemFailures": []}  # nothing to re-deliver
    line, metrics = batch_log(capsys)
    assert lambda_on.stats().applied == 2
    assert line["message"] == "batch committed, a later write failed"
    assert {name: line[name] for name in COUNT_NAMES} == {
        "applied": 2,
        "skipped": 0,
        "ignored": 0,
        "parked": 1,
        "deadLettered": 0,
    }
    assert "injected" in line["error"]
    assert {name: metrics[name] for name in COUNT_NAMES} == {name: line[name] for name in COUNT_NAMES}
    assert metrics["batchFailed"] == 0


def test_after_a_failure_part_way_the_log_and_metrics_count_what_the_store_applied(
    lambda_on: DynamoDBStore, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dynamodb_module, "TRANSACTION_ACTIONS", 4)  # a few limits a transaction
    stream = [
        event for n in range(8) for event in (created(f"L{n}", 2 * n + 1), progress(f"L{n}", 2 * n + 2, "1", "0"))
    ]
    requests = Requests(lambda_on)
    requests.fail("TransactWriteItems", 3)
    response = aws_lambda.handler(lambda_event(stream))
    requests.close()

    line, metrics = batch_log(capsys)
    applied = lambda_on.stats().applied
    assert 0 < applied < len(stream)  # part of the batch is committed
    assert len(response["batchItemFailures"]) == 1
    assert line["message"] == "batch partly committed"
    assert line["applied"] == metrics["applied"] == applied
    # Each limit's creation and progress change commit together, and each change drifts (0 remain,
    # says the builder; 99 do): drifted counts exactly the committed changes.
    assert line["drifted"] == metrics["drifted"] == lambda_on.stats().drifted == applied // 2
    assert metrics["batchFailed"] == 1


# -- whatever a batch holds, it fits in DynamoDB's limits


class Transactions:
    """Every TransactWriteItems the store sends, as sent."""

    def __init__(self, dynamodb_store: DynamoDBStore) -> None:
        self.sent: list[list[dict[str, Any]]] = []
        self.events = dynamodb_store._client.meta.events
        self.events.register("provide-client-params.dynamodb.TransactWriteItems", self._record)

    def _record(self, params: dict[str, Any], **_: Any) -> None:
        self.sent.append(params["TransactItems"])

    def close(self) -> None:
        self.events.unregister("provide-client-params.dynamodb.TransactWriteItems", self._record)


def item_bytes(item: dict[str, Any]) -> int:
    """An item's size as DynamoDB counts it: names and values (binary values as raw bytes)."""
    size = 0
    for name, value in item.items():
        ((kind, inner),) = value.items()
        size += len(name) + (len(inner) if kind == "B" else len(str(inner).encode()))
    return size


def check_limits(sent: list[list[dict[str, Any]]]) -> None:
    for actions in sent:
        assert len(actions) <= 100
        touched = []
        total = 0
        for action in actions:
            ((kind, body),) = action.items()
            touched.append(
                (body.get("Item") or body["Key"])["PK"]["S"] + "|" + (body.get("Item") or body["Key"])["SK"]["S"]
            )
            for name in ("UpdateExpression", "ConditionExpression"):
                assert len(body.get(name, "").encode()) <= 4096
            if kind == "Put":
                assert item_bytes(body["Item"]) <= 400 * 1024
                total += item_bytes(body["Item"])
            total += sum(item_bytes({k: v}) for k, v in body.get("ExpressionAttributeValues", {}).items())
        assert len(touched) == len(set(touched)), "an item twice in one transaction"
        assert total <= 4 * 1024 * 1024


def test_every_transaction_keeps_within_dynamodb_limits(dynamodb_store: DynamoDBStore) -> None:
    brand = base64.b64encode(random.Random(3).randbytes(120_000)).decode()
    orphans = [progress("L0", n + 2, "1", str(n), note="x" * 700) for n in range(700)]
    limits = [created(f"L{n}", n, user_id=f"u{n % 7}", brandId=brand if n % 50 == 0 else "b") for n in range(1, 300)]
    sent = Transactions(dynamodb_store)
    process(dynamodb_store, records([*orphans, *limits]))
    process(
        dynamodb_store,
        records([created("L0", 1), *(progress(f"L{n}", 1000 + n, "1", "0", f"u{n % 7}") for n in range(1, 300))], 1000),
    )
    sent.close()
    check_limits(sent.sent)
    assert len(sent.sent) > 5
    limit = dynamodb_store.user_limit("u1", "L0")
    assert limit is not None and str(limit.progress) == "700"
    assert dynamodb_store.parked_events() == [] and chunk_items(dynamodb_store)["parked"] == 0


def test_big_texts_of_a_limit_live_in_chunks_that_follow_it(dynamodb_store: DynamoDBStore) -> None:
    brand = base64.b64encode(random.Random(5).randbytes(340_000)).decode()  # does not compress below 32 KB
    process(dynamodb_store, records([created("L1", 1, brandId=brand)]))
    assert chunk_items(dynamodb_store)["limits"] == 2
    process(dynamodb_store, records([progress("L1", 2, "1", "0")], 1))  # the same texts: the same chunks
    assert chunk_items(dynamodb_store)["limits"] == 2
    process(dynamodb_store, records([created("L1", 3, user_id="u2", brandId=brand[1:])], 2))  # moved, other texts
    assert [pk for pk, sk in all_keys(dynamodb_store) if sk.startswith("CHUNK#LIMIT#")] == ["USER#u2", "USER#u2"]
    process(dynamodb_store, records([created("L1", 4, user_id="u2")], 3))  # small again: no chunks left
    assert chunk_items(dynamodb_store)["limits"] == 0
    limit = dynamodb_store.user_limit("u2", "L1")
    assert limit is not None and limit.brand_id == "brand-1"


def test_events_beyond_what_a_parked_item_holds_are_dead_lettered(
    dynamodb_store: DynamoDBStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A parked item holds thousands of events; make it hold a few dozen.
    monkeypatch.setattr(dynamodb_writes, "PARKED_INLINE", 3_000)
    monkeypatch.setattr(dynamodb_writes, "PARKED_ITEM", 5_000)
    orphans = [progress("L1", n + 2, "1", str(n)) for n in range(150)]
    result = process(dynamodb_store, records(orphans[:100]))
    process(dynamodb_store, records(orphans[100:], 100))
    parked, letters = dynamodb_store.parked_events(), dynamodb_store.dead_letters()
    assert 0 < len(parked) < 150 and len(parked) + len(letters) == 150
    assert result.counts.parked + result.counts.dead_lettered == 100
    assert all("is full" in letter.reason for letter in letters)
    assert sorted([*(event.data for event in parked), *(letter.data for letter in letters)]) == sorted(
        encode(orphan) for orphan in orphans
    )
    process(dynamodb_store, records([created("L1", 1)], 200))
    limit = dynamodb_store.user_limit("u1", "L1")
    assert limit is not None and limit.last_sequence_number == parked[-1].position


# -- the layout and its migration


def legacy_value(data: bytes) -> bytes:
    """A parked event as layout 1 stored it in its item: raw."""
    return b"r" + data


def test_init_moves_parked_events_of_layout_1_where_any_creation_finds_them(
    dynamodb_store: DynamoDBStore, dynamodb_store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    process(dynamodb_store, records([created("L3", 1)]))
    client, table = dynamodb_store._client, dynamodb_store.table
    client.delete_item(TableName=table, Key={"PK": {"S": "META"}, "SK": {"S": "LAYOUT"}})  # as layout 1 had it
    stuck = encode(progress("L1", 5, "7", "0", user_id="u2"))  # parked under the user of the event
    big = encode(progress("L2", 7, "1", "0", note=os.urandom(40_000).hex()))
    client.put_item(
        TableName=table, Item={"PK": {"S": "USER#u2"}, "SK": {"S": "PARKED#L1"}, "E5": {"B": legacy_value(stuck)}}
    )
    client.put_item(
        TableName=table,
        Item={"PK": {"S": "USER#u1"}, "SK": {"S": "PARKED#L2"}, "E7": {"B": b"cr" + (1).to_bytes(4, "big")}},
    )
    client.put_item(TableName=table, Item={"PK": {"S": "USER#u1"}, "SK": {"S": "CHUNK#PARKED#L2#7#0"}, "d": {"B": big}})

    with pytest.raises(StoreError, match=r"layout 1, older than this version .*run `user-limits init"):
        DynamoDBStore(dynamodb_store_url)
    cut_short = DynamoDBStore(dynamodb_store_url, check_layout=False)
    requests = Requests(cut_short)
    with monkeypatch.context() as patch:
        patch.setattr(dynamodb_module, "TRANSACTION_ACTIONS", 2)  # one action a transaction
        requests.fail("TransactWriteItems", 3)
        with pytest.raises(CommitError):
            cut_short.migrate()
    requests.close()
    cut_short.close()
    assert len(dynamodb_store.parked_events()) == 1  # one limit's events moved, the other's not yet
    assert "moved" in initialize(dynamodb_store_url)  # goes on where it stopped
    assert "moved" not in initialize(dynamodb_store_url)

    migrated = DynamoDBStore(dynamodb_store_url)
    try:
        assert [(event.key, event.position, event.data) for event in migrated.parked_events()] == [
            ("L1", 5, stuck),
            ("L2", 7, big),
        ]
        assert not [key for key in all_keys(migrated) if key[1].startswith(("PARKED#", "CHUNK#PARKED#"))]
        process(migrated, records([created("L1", 1, user_id="u1"), created("L2", 2)], 10))
        l1, l2 = migrated.user_limit("u1", "L1"), migrated.user_limit("u1", "L2")
        assert l1 is not None and (str(l1.progress), l1.last_sequence_number) == ("7", 5)
        assert l2 is not None and l2.last_sequence_number == 7
        assert migrated.parked_events() == [] and export(migrated)[2]["userLimitId"] == "L3"
    finally:
        migrated.close()


def test_a_table_made_without_init_opens_at_this_layout_and_says_so(
    dynamodb_store: DynamoDBStore, dynamodb_store_url: str
) -> None:
    """A table created by a template (SAM, Terraform) has no layout item and nothing in it: the
    projector opens it, writes the layout before its first batch, and the read API opens it after."""
    layout = {"PK": {"S": "META"}, "SK": {"S": "LAYOUT"}}
    dynamodb_store._client.delete_item(TableName=dynamodb_store.table, Key=layout)  # as CloudFormation leaves the table
    projector = DynamoDBStore(dynamodb_store_url)
    try:
        assert "Item" in dynamodb_store._client.get_item(
            TableName=dynamodb_store.table, Key=layout, ConsistentRead=True
        )
        process(projector, records([created("L1", 1)]))
    finally:
        projector.close()
    reader = DynamoDBStore(dynamodb_store_url)
    try:
        assert [limit.user_limit_id for limit in reader.all_limits()] == ["L1"]
    finally:
        reader.close()


def test_a_table_of_a_newer_layout_says_to_upgrade(dynamodb_store: DynamoDBStore, dynamodb_store_url: str) -> None:
    dynamodb_store._client.put_item(
        TableName=dynamodb_store.table, Item={"PK": {"S": "META"}, "SK": {"S": "LAYOUT"}, "version": {"N": "99"}}
    )
    with pytest.raises(StoreError, match=r"layout 99, newer than this version of user-limits .*upgrade user-limits"):
        DynamoDBStore(dynamodb_store_url)


def test_dead_letters_of_layout_1_are_read_as_they_were(dynamodb_store: DynamoDBStore) -> None:
    big = b"\xff" + os.urandom(40_000)  # layout 1 kept it in a chunk named by the dead letter's id
    letter_id = f"arn|shard|{KINESIS_BASE}|0"
    client, table = dynamodb_store._client, dynamodb_store.table
    client.put_item(
        TableName=table,
        Item={
            "PK": {"S": "DEADLETTER"},
            "SK": {"S": letter_id},
            "reason": {"S": "not UTF-8: invalid start byte at byte 0"},
            "data": {"B": b"cr" + (1).to_bytes(4, "big")},
            "storedAt": {"N": "1"},
            "batchIndex": {"N": "0"},
            "sequenceNumber": {"S": str(KINESIS_BASE)},
            "partitionKey": {"S": "u1"},
        },
    )
    client.put_item(
        TableName=table, Item={"PK": {"S": "DEADLETTERCHUNK"}, "SK": {"S": f"{letter_id}#0"}, "d": {"B": big}}
    )
    [letter] = dynamodb_store.dead_letters()
    assert (letter.reason, letter.data, letter.sequence_number, letter.partition_key) == (
        "not UTF-8: invalid start byte at byte 0",
        big,
        str(KINESIS_BASE),
        "u1",
    )
