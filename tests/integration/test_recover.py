"""``user-limits recover``: the batches a Kinesis event source mapping sent to its on-failure destination.

Against real servers: kinesis-local for the stream, and moto's server (the session's local DynamoDB,
which serves every AWS API) for the SQS queue and the S3 bucket. The messages and objects are
written as Lambda writes them (AWS's documented invocation record).

An aged-out range is made honestly with kinesis-local, which trims nothing: a batch whose
``startSequenceNumber`` lies before the shard's oldest record is exactly what retention leaves
behind (the records from the start on are no longer there, and the shard's oldest is later).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.servers.dynamodb_local import DynamoDBServer, set_dummy_credentials
from tests.servers.kinesis_local import KinesisLocalServer
from tests.streams import created, export, process, progress, record, reset
from user_limits.bootstrap import open_store
from user_limits.kinesis.shard_range import RangeUnavailable, read_range
from user_limits.operations.invocation_record import parse_invocation_record
from user_limits.testing.lambda_events import lambda_record

SHARD0 = "shardId-000000000000"
REGION = "us-east-1"

# A limit's life on the stream: the batch that Lambda gave up on is records 1 to 3.
EVENTS = [
    created("L1", 1, value="100.00"),
    progress("L1", 2, "10", "0"),
    progress("L1", 3, "5", "10"),
    created("L2", 4, value="50", user_id="u2"),
    progress("L1", 5, "1", "15"),
]


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dummy credentials and a region for every client of the test, the product's included."""
    set_dummy_credentials(monkeypatch)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.delenv("USER_LIMITS_STORE", raising=False)


@pytest.fixture
def moto_endpoint(dynamodb_server: DynamoDBServer, aws: None) -> str:
    return dynamodb_server.endpoint


@pytest.fixture
def sqs(moto_endpoint: str) -> Any:
    return boto3.client("sqs", endpoint_url=moto_endpoint, region_name=REGION)


@pytest.fixture
def queue(sqs: Any) -> Iterator[str]:
    url: str = sqs.create_queue(QueueName=f"failed-batches-{uuid.uuid4().hex[:12]}")["QueueUrl"]
    yield url
    sqs.delete_queue(QueueUrl=url)


@pytest.fixture
def s3(moto_endpoint: str) -> Any:
    return boto3.client("s3", endpoint_url=moto_endpoint, region_name=REGION)


@pytest.fixture
def bucket(s3: Any) -> Iterator[str]:
    name = f"failed-batches-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    yield name
    for key in keys(s3, name):
        s3.delete_object(Bucket=name, Key=key)
    s3.delete_bucket(Bucket=name)


class Stream:
    def __init__(self, kinesis: KinesisLocalServer, records: list[dict[str, Any]]) -> None:
        self.kinesis = kinesis
        self.name = kinesis.create_stream(1)
        self.arn: str = kinesis.client().describe_stream_summary(StreamName=self.name)["StreamDescriptionSummary"][
            "StreamARN"
        ]
        self.sequence_numbers = kinesis.put(self.name, [(r["aggregateId"], json.dumps(r).encode()) for r in records])


@pytest.fixture
def stream(kinesis_local: KinesisLocalServer, aws: None) -> Stream:
    return Stream(kinesis_local, EVENTS)


def on_failure_record(arn: str, start: str, end: str, batch_size: int, shard_id: str = SHARD0) -> dict[str, Any]:
    """What Lambda sends to an on-failure destination when a batch exhausts its retries."""
    return {
        "requestContext": {
            "requestId": str(uuid.uuid4()),
            "functionArn": "arn:aws:lambda:us-east-1:000000000000:function:user-limits-projector",
            "condition": "RetryAttemptsExhausted",
            "approximateInvokeCount": 21,
        },
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "version": "1.0",
        "timestamp": "2026-11-14T00:38:06.021Z",
        "KinesisBatchInfo": {
            "shardId": shard_id,
            "startSequenceNumber": start,
            "endSequenceNumber": end,
            "approximateArrivalOfFirstRecord": "2026-11-14T00:38:04.835Z",
            "approximateArrivalOfLastRecord": "2026-11-14T00:38:05.580Z",
            "batchSize": batch_size,
            "streamArn": arn,
        },
    }


def send(sqs: Any, queue: str, body: dict[str, Any] | str) -> str:
    text = body if isinstance(body, str) else json.dumps(body)
    message_id: str = sqs.send_message(QueueUrl=queue, MessageBody=text)["MessageId"]
    return message_id


def bodies_in_queue(sqs: Any, queue: str) -> list[str]:
    """Every message visible now (kept messages are made visible again at the end of a run)."""
    found: dict[str, str] = {}
    while True:
        messages = sqs.receive_message(
            QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1, VisibilityTimeout=30
        ).get("Messages", [])
        fresh = [m for m in messages if m["MessageId"] not in found]
        if not fresh:
            break
        found.update((m["MessageId"], m["Body"]) for m in fresh)
    return sorted(found.values())


def keys(s3: Any, bucket: str) -> list[str]:
    return sorted(entry["Key"] for entry in s3.list_objects_v2(Bucket=bucket).get("Contents", []))


def limits(store_url: str) -> dict[str, tuple[str, str]]:
    store = open_store(store_url)
    try:
        return {row["userLimitId"]: (str(row["value"]), str(row["progress"])) for row in export(store)}
    finally:
        store.close()


def store_with_first_record(tmp_path: Path) -> str:
    """A store in which Lambda applied the batch before the failed one (record 0)."""
    url = f"sqlite:///{tmp_path}/store.db"
    store = open_store(url)
    process(store, [record(EVENTS[0])])
    store.close()
    return url


pytestmark = pytest.mark.servers


# -- from the stream, through SQS


def test_a_reported_batch_is_recovered_from_the_stream_and_its_message_deleted(
    run: Any, stream: Stream, sqs: Any, queue: str, moto_endpoint: str, tmp_path: Path
) -> None:
    url = store_with_first_record(tmp_path)
    seqs = stream.sequence_numbers
    send(sqs, queue, on_failure_record(stream.arn, seqs[1], seqs[3], 3))
    common = ("--queue", queue, "--endpoint", moto_endpoint, "--kinesis-endpoint", stream.kinesis.endpoint)

    done = run("recover", *common, "--store", url)

    assert done.code == 0, done
    assert done.err == ""
    # Records 1-3 exactly: L1's two progress changes and L2's creation; record 4 is not part of it.
    assert limits(url) == {"L1": ("100.00", "15"), "L2": ("50", "0")}
    assert bodies_in_queue(sqs, queue) == []
    line, summary = done.out.strip().splitlines()
    assert f"{SHARD0} {seqs[1]} to {seqs[3]} (batch of 3, RetryAttemptsExhausted)" in line
    assert "recovered, 3 records applied (applied 3, skipped 0" in line
    assert summary.startswith("recover: 1 found: recovered 1, kept 0; 3 records: applied 3, skipped 0")

    # The same batch reported again (or one Lambda partly applied) changes nothing more.
    send(sqs, queue, on_failure_record(stream.arn, seqs[0], seqs[3], 4))
    again = run("recover", *common, "--store", url)
    assert again.code == 0, again
    assert "4 records applied (applied 0, skipped 4," in again.out
    assert limits(url) == {"L1": ("100.00", "15"), "L2": ("50", "0")}


def test_a_dry_run_shows_the_range_and_changes_nothing(
    run: Any, stream: Stream, sqs: Any, queue: str, moto_endpoint: str, tmp_path: Path
) -> None:
    seqs = stream.sequence_numbers
    body = on_failure_record(stream.arn, seqs[1], seqs[3], 3)
    send(sqs, queue, body)
    send(sqs, queue, "not json")
    store = tmp_path / "store.db"

    done = run("recover", "--queue", queue, "--endpoint", moto_endpoint, "--store", f"sqlite:///{store}", "--dry-run")

    assert done.code == 1, done  # the malformed message cannot be recovered
    assert not store.exists()  # not even created
    assert bodies_in_queue(sqs, queue) == sorted([json.dumps(body), "not json"])  # visible again at once
    assert f"{SHARD0} {seqs[1]} to {seqs[3]} (batch of 3, RetryAttemptsExhausted): would fetch from {stream.arn}" in (
        done.out
    )
    assert "kept: not the on-failure record of a Kinesis batch: the record is not JSON" in done.out
    assert "recover --dry-run: 2 found: 1 to recover, 1 kept; nothing applied, deleted or moved" in done.out


def test_a_range_aged_out_of_the_streams_retention_keeps_its_message_and_names_the_range(
    run: Any, stream: Stream, sqs: Any, queue: str, moto_endpoint: str, tmp_path: Path
) -> None:
    seqs = stream.sequence_numbers
    # The batch began before the shard's oldest record: those records are gone.
    before = str(int(seqs[0]) - 1)
    body = on_failure_record(stream.arn, before, seqs[1], 3)
    send(sqs, queue, body)
    url = f"sqlite:///{tmp_path}/store.db"

    done = run(
        "recover", "--queue", queue, "--endpoint", moto_endpoint,
        "--kinesis-endpoint", stream.kinesis.endpoint, "--store", url,
    )  # fmt: skip

    assert done.code == 1, done
    assert bodies_in_queue(sqs, queue) == [json.dumps(body)]
    assert limits(url) == {}  # nothing of the range applied, not even what is left of it
    assert (
        f"{SHARD0} {before} to {seqs[1]} (batch of 3, RetryAttemptsExhausted): kept, aged out of the stream's "
        f"retention: the shard's oldest record is now {seqs[0]}"
    ) in done.out
    assert "recover: 1 found: recovered 0, kept 1 (1 aged out); 0 records" in done.out


def test_a_start_that_is_no_record_of_the_shard_is_kept_and_not_called_aged_out(
    run: Any, stream: Stream, sqs: Any, queue: str, moto_endpoint: str, tmp_path: Path
) -> None:
    seqs = stream.sequence_numbers
    between = str(int(seqs[2]) - 1)  # older records are there, but none at this number
    send(sqs, queue, on_failure_record(stream.arn, between, seqs[3], 2))

    done = run(
        "recover", "--queue", queue, "--endpoint", moto_endpoint,
        "--kinesis-endpoint", stream.kinesis.endpoint, "--store", f"sqlite:///{tmp_path}/s.db",
    )  # fmt: skip

    assert done.code == 1, done
    assert "aged out" not in done.out
    assert f"kept: the shard has no record at startSequenceNumber {between}, though it holds older ones" in done.out
    assert len(bodies_in_queue(sqs, queue)) == 1


def test_malformed_messages_and_a_missing_stream_are_kept_and_the_rest_recovered(
    run: Any, stream: Stream, sqs: Any, queue: str, moto_endpoint: str, tmp_path: Path
) -> None:
    seqs = stream.sequence_numbers
    good = on_failure_record(stream.arn, seqs[0], seqs[4], 5)
    missing_field = on_failure_record(stream.arn, seqs[0], seqs[1], 2)
    del missing_field["KinesisBatchInfo"]["endSequenceNumber"]
    no_stream = on_failure_record(stream.arn.replace(stream.name, "no-such-stream"), seqs[0], seqs[1], 2)
    bad = ["{cut short", json.dumps(missing_field), json.dumps(no_stream), "\x1b[31m"]
    for body in [*bad[:2], json.dumps(good), *bad[2:]]:
        send(sqs, queue, body)
    url = f"sqlite:///{tmp_path}/store.db"

    done = run(
        "recover", "--queue", queue, "--endpoint", moto_endpoint,
        "--kinesis-endpoint", stream.kinesis.endpoint, "--store", url,
    )  # fmt: skip

    assert done.code == 1, done
    assert "Traceback" not in done.err
    assert bodies_in_queue(sqs, queue) == sorted(bad)
    assert limits(url) == {"L1": ("100.00", "16"), "L2": ("50", "0")}
    assert "kept: not the on-failure record of a Kinesis batch: the record is not JSON" in done.out
    assert "kept: not the on-failure record of a Kinesis batch: KinesisBatchInfo.endSequenceNumber: missing" in done.out
    assert f"kept: stream {no_stream['KinesisBatchInfo']['streamArn']} not found" in done.out
    assert "\x1b" not in done.out  # a message's text never reaches the terminal as it is
    assert "recover: 5 found: recovered 1, kept 4; 5 records: applied 5," in done.out


def test_the_range_is_read_across_pages_and_an_expired_iterator_exactly_once(stream: Stream) -> None:
    seqs = stream.sequence_numbers
    info = parse_invocation_record(json.dumps(on_failure_record(stream.arn, seqs[1], seqs[4], 4))).info
    real = stream.kinesis.client()
    calls = {"get_records": 0}

    class ExpiringOnce:
        """The real client, except that its second GetRecords answers ExpiredIteratorException."""

        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

        def get_records(self, **args: Any) -> Any:
            calls["get_records"] += 1
            if calls["get_records"] == 2:
                raise ClientError({"Error": {"Code": "ExpiredIteratorException", "Message": "x"}}, "GetRecords")
            return real.get_records(**args)

    pages = list(read_range(ExpiringOnce(), info, page_records=2))

    assert [[r["SequenceNumber"] for r in page] for page in pages] == [seqs[1:3], seqs[3:5]]


def test_a_range_past_the_shards_last_record_applies_what_is_there_and_says_so(stream: Stream) -> None:
    seqs = stream.sequence_numbers
    beyond = str(int(seqs[4]) + 1)
    info = parse_invocation_record(json.dumps(on_failure_record(stream.arn, seqs[3], beyond, 3))).info
    pages = []
    with pytest.raises(RangeUnavailable, match=f"records end at {seqs[4]}, before endSequenceNumber {beyond}"):
        for page in read_range(stream.kinesis.client(), info):
            pages.append([r["SequenceNumber"] for r in page])
    assert pages == [seqs[3:5]]


# -- from S3, records included


def s3_object(records: list[tuple[dict[str, Any], int]], payload_as_text: bool = True) -> bytes:
    """An S3 on-failure object: the invocation record plus the whole invocation event as ``payload``.

    The stream is named but never read: its records may be long past its retention."""
    arn = "arn:aws:kinesis:eu-west-1:123456789012:stream/limit-events"
    event = {
        "Records": [
            lambda_record(
                json.dumps(envelope).encode(), envelope["aggregateId"], sequence, 1_795_161_600.5, SHARD0, arn
            )
            for envelope, sequence in records
        ]
    }
    first, last = str(records[0][1]), str(records[-1][1])
    document = on_failure_record(arn, first, last, len(records))
    document["payload"] = json.dumps(event) if payload_as_text else event
    return json.dumps(document).encode()


BASE = 49_680_735_533_056_895_581_394_147_522_929_223_170_640_549_330_225_725_442


def test_s3_objects_are_recovered_from_their_payload_and_moved_under_recovered(
    run: Any, s3: Any, bucket: str, moto_endpoint: str, tmp_path: Path
) -> None:
    first = "aws/lambda/8f0e/shardId-000000000000/2026/11/14/2026-11-14T00.38.06-a"
    second = "aws/lambda/8f0e/shardId-000000000000/2026/11/14/2026-11-14T00.39.06-b"
    broken = "aws/lambda/8f0e/shardId-000000000000/2026/11/14/2026-11-14T00.40.06-c"
    done_before = "recovered/aws/lambda/8f0e/shardId-000000000000/2026/11/13/old"
    first_body = s3_object([(EVENTS[0], BASE), (EVENTS[1], BASE + 10)])
    s3.put_object(Bucket=bucket, Key=first, Body=first_body)
    objects = [(EVENTS[2], BASE + 20), (EVENTS[3], BASE + 30), (reset("L1", 6, 1_800_000_000_000), BASE + 40)]
    s3.put_object(Bucket=bucket, Key=second, Body=s3_object(objects, payload_as_text=False))
    s3.put_object(Bucket=bucket, Key=broken, Body=b'{"KinesisBatchInfo": {}}')
    s3.put_object(Bucket=bucket, Key=done_before, Body=b"already recovered: never read again")
    url = f"sqlite:///{tmp_path}/store.db"
    common = ("--bucket", f"s3://{bucket}", "--endpoint", moto_endpoint, "--store", url)

    done = run("recover", *common)

    assert done.code == 1, done  # the broken object is kept
    assert limits(url) == {"L1": ("100.00", "0"), "L2": ("50", "0")}  # reset last
    assert keys(s3, bucket) == sorted([broken, done_before, "recovered/" + first, "recovered/" + second])
    assert s3.get_object(Bucket=bucket, Key="recovered/" + first)["Body"].read() == first_body
    assert f"object {first}: {SHARD0} {BASE} to {BASE + 10} (batch of 2, RetryAttemptsExhausted): recovered, " in (
        done.out
    )
    assert f"moved to recovered/{first}" in done.out
    assert f"object {broken}: kept: not the on-failure record of a Kinesis batch: KinesisBatchInfo.shardId" in done.out
    assert "recover: 3 found: recovered 2, kept 1; 5 records: applied 5," in done.out

    # Only what was kept is looked at again.
    again = run("recover", *common)
    assert again.code == 1
    assert "recover: 1 found: recovered 0, kept 1;" in again.out


def test_an_s3_dry_run_changes_nothing(run: Any, s3: Any, bucket: str, moto_endpoint: str, tmp_path: Path) -> None:
    key = "aws/lambda/8f0e/shardId-000000000000/2026/11/14/x"
    s3.put_object(Bucket=bucket, Key=key, Body=s3_object([(EVENTS[0], BASE)]))
    store = tmp_path / "store.db"

    done = run(
        "recover", "--bucket", f"s3://{bucket}/aws/lambda/", "--endpoint", moto_endpoint,
        "--store", f"sqlite:///{store}", "--dry-run",
    )  # fmt: skip

    assert done.code == 0, done
    assert not store.exists()
    assert keys(s3, bucket) == [key]
    assert (
        f"object {key}: {SHARD0} {BASE} to {BASE} (batch of 1, RetryAttemptsExhausted): would apply the 1 records"
        in (done.out)
    )
    assert "recover --dry-run: 1 found: 1 to recover, 0 kept" in done.out


def test_a_queue_that_does_not_exist_is_one_line_and_exit_2(run: Any, moto_endpoint: str, tmp_path: Path) -> None:
    done = run(
        "recover", "--queue", f"{moto_endpoint}/123456789012/no-such-queue", "--endpoint", moto_endpoint,
        "--store", f"sqlite:///{tmp_path}/s.db",
    )  # fmt: skip
    assert done.code == 2
    assert done.err.startswith("user-limits: error: --queue ") and "cannot receive" in done.err
    assert len(done.err.splitlines()) == 1


def test_a_store_that_fails_keeps_the_message(stream: Stream, sqs: Any, queue: str, tmp_path: Path) -> None:
    from user_limits.operations.recover import Recovery, Report, recover_queue

    seqs = stream.sequence_numbers
    body = json.dumps(on_failure_record(stream.arn, seqs[0], seqs[2], 3))
    send(sqs, queue, body)
    store = open_store(f"sqlite:///{tmp_path}/store.db")

    class Down:
        """The real store, except that it cannot commit."""

        def __getattr__(self, name: str) -> Any:
            return getattr(store, name)

        def apply_batch(self, *args: Any) -> Any:
            raise ConnectionError("the store is down")

    reports: list[Report] = []
    recovery = Recovery(Down(), reports.append, stream.kinesis.endpoint)
    recover_queue(recovery, sqs, queue)

    assert [(r.outcome, r.records) for r in reports] == [("kept", 0)]
    assert reports[0].detail.startswith("the store failed: ConnectionError: the store is down (the first 0 records")
    assert bodies_in_queue(sqs, queue) == [body]
    assert export(store) == []
    store.close()
