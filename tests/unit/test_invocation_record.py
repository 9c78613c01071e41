"""The on-failure invocation records of a Kinesis event source mapping: AWS's documented shape is
read, and anything else is refused with the field it is about, never a traceback."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.streams import KINESIS_BASE, SHARD, STREAM_ARN, created, lambda_event, progress
from user_limits.operations.invocation_record import MalformedRecord, parse_invocation_record, payload_records

START = "49601189658422359378836298521827638475320189012309704722"
END = "49601189658422359378836298522902373528957594348623495186"


def documented(**batch: Any) -> dict[str, Any]:
    """The example invocation record of AWS's documentation (an SQS or SNS destination's)."""
    return {
        "requestContext": {
            "requestId": "c9b8fa9f-5a7f-xmpl-af9c-0c604cde93a5",
            "functionArn": "arn:aws:lambda:us-east-2:123456789012:function:myfunction",
            "condition": "RetryAttemptsExhausted",
            "approximateInvokeCount": 1,
        },
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "version": "1.0",
        "timestamp": "2019-11-14T00:38:06.021Z",
        "KinesisBatchInfo": {
            "shardId": "shardId-000000000001",
            "startSequenceNumber": START,
            "endSequenceNumber": END,
            "approximateArrivalOfFirstRecord": "2019-11-14T00:38:04.835Z",
            "approximateArrivalOfLastRecord": "2019-11-14T00:38:05.580Z",
            "batchSize": 500,
            "streamArn": "arn:aws:kinesis:us-east-2:123456789012:stream/mystream",
            **batch,
        },
    }


def test_the_documented_record_is_read_with_its_sequence_numbers_exact() -> None:
    record = parse_invocation_record(json.dumps(documented()))
    info = record.info
    assert (info.shard_id, info.start, info.end, info.batch_size) == ("shardId-000000000001", START, END, 500)
    assert info.stream_arn == "arn:aws:kinesis:us-east-2:123456789012:stream/mystream"
    assert (info.region, info.stream_name, info.condition) == ("us-east-2", "mystream", "RetryAttemptsExhausted")
    assert info.range == f"shardId-000000000001 {START} to {END}"
    assert record.payload is None


def test_only_the_batch_info_is_required() -> None:
    minimal = {"KinesisBatchInfo": documented()["KinesisBatchInfo"]}
    assert parse_invocation_record(json.dumps(minimal).encode()).info.condition is None


def test_sequence_numbers_are_compared_as_integers_not_as_text() -> None:
    # As text "9" > "10"; as numbers the range 9..10 is in order.
    assert parse_invocation_record(json.dumps(documented(startSequenceNumber="9", endSequenceNumber="10"))).info
    with pytest.raises(MalformedRecord, match="startSequenceNumber 10 is after endSequenceNumber 9"):
        parse_invocation_record(json.dumps(documented(startSequenceNumber="10", endSequenceNumber="9")))


BATCH = documented()["KinesisBatchInfo"]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"\xff\xfe", "not UTF-8"),
        (b"{not json", "not JSON"),
        (b"", "not JSON"),
        (b"[]", "expected a JSON object, got an array"),
        (b'"text"', "expected a JSON object, got a string"),
        (b"{}", "no KinesisBatchInfo"),
        (json.dumps({"DDBStreamBatchInfo": BATCH}), "DynamoDB stream"),
        (json.dumps({"KinesisBatchInfo": [1]}), "KinesisBatchInfo: expected an object, got an array"),
        (json.dumps(documented(shardId=None)), "KinesisBatchInfo.shardId: expected a shard id"),
        (json.dumps(documented(shardId="shard 0")), "KinesisBatchInfo.shardId"),
        (json.dumps(documented(startSequenceNumber=int(START))), "startSequenceNumber: expected a sequence number"),
        (json.dumps(documented(startSequenceNumber="1e5")), "startSequenceNumber: expected a sequence number"),
        (json.dumps(documented(startSequenceNumber="0012")), "startSequenceNumber: expected a sequence number"),
        (json.dumps(documented(endSequenceNumber="-1")), "endSequenceNumber: expected a sequence number"),
        (json.dumps(documented(endSequenceNumber="1" * 130)), "endSequenceNumber: expected a sequence number"),
        (json.dumps(documented(batchSize=0)), "batchSize: expected a positive integer"),
        (json.dumps(documented(batchSize=True)), "batchSize: expected a positive integer"),
        (json.dumps(documented(batchSize="5")), "batchSize: expected a positive integer"),
        (json.dumps(documented(streamArn="mystream")), "streamArn: expected a Kinesis stream ARN"),
        (json.dumps(documented(streamArn="arn:aws:sqs:us-east-2:123456789012:q")), "streamArn"),
        (json.dumps({**documented(), "payload": 5}), "payload: expected the invocation event"),
        (json.dumps({**documented(), "payload": "{cut"}), "payload is not JSON"),
    ],
)
def test_a_malformed_record_names_what_is_wrong(body: bytes | str, expected: str) -> None:
    with pytest.raises(MalformedRecord, match=expected.replace("(", r"\(")):
        parse_invocation_record(body)


@pytest.mark.parametrize("missing", ["shardId", "startSequenceNumber", "endSequenceNumber", "batchSize", "streamArn"])
def test_each_batch_field_is_required(missing: str) -> None:
    batch = {name: value for name, value in BATCH.items() if name != missing}
    with pytest.raises(MalformedRecord, match=f"KinesisBatchInfo.{missing}: missing"):
        parse_invocation_record(json.dumps({"KinesisBatchInfo": batch}))


EVENT = lambda_event([created("L1", 1), progress("L1", 2, "5", "0")], first_position=7)


@pytest.mark.parametrize("as_text", [True, False], ids=["payload as JSON text", "payload as an object"])
def test_an_s3_objects_payload_gives_its_records(as_text: bool) -> None:
    payload: object = json.dumps(EVENT) if as_text else EVENT
    record = parse_invocation_record(json.dumps({**documented(), "payload": payload}))
    records = payload_records(record)
    assert [r.sequence_number for r in records] == [str(KINESIS_BASE + 7), str(KINESIS_BASE + 8)]
    assert {(r.stream_arn, r.shard_id) for r in records} == {(STREAM_ARN, SHARD)}
    assert json.loads(records[0].data) == created("L1", 1)


def _with_record(**changes: Any) -> dict[str, Any]:
    raw = json.loads(json.dumps(EVENT["Records"][0]))
    for path, value in changes.items():
        target, name = (raw["kinesis"], path[2:]) if path.startswith("k_") else (raw, path)
        target[name] = value
    return {**documented(), "payload": {"Records": [raw]}}


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (documented(), "no payload"),
        ({**documented(), "payload": {}}, "non-empty Records list"),
        ({**documented(), "payload": json.dumps({"Records": []})}, "non-empty Records list"),
        ({**documented(), "payload": {"Records": ["x"]}}, r"payload.Records\[0\]: expected an object"),
        ({**documented(), "payload": {"Records": [{}]}}, r"payload.Records\[0\].kinesis: expected an object"),
        (_with_record(k_sequenceNumber=5), r"Records\[0\].kinesis.sequenceNumber: expected a sequence number"),
        (_with_record(k_data=None), r"kinesis.data: expected a base64 string"),
        (_with_record(k_partitionKey=3), r"kinesis.partitionKey: expected a string"),
        (_with_record(k_approximateArrivalTimestamp="soon"), "approximateArrivalTimestamp: expected a time"),
        (_with_record(k_approximateArrivalTimestamp=1e300), "approximateArrivalTimestamp: expected a time"),
        (_with_record(eventID=7), r"Records\[0\].eventID: expected a string"),
        (_with_record(eventSourceARN=["x"]), r"Records\[0\].eventSourceARN: expected a string"),
    ],
)
def test_a_payload_that_is_not_a_lambda_kinesis_event_is_refused(document: dict[str, Any], expected: str) -> None:
    with pytest.raises(MalformedRecord, match=expected):
        payload_records(parse_invocation_record(json.dumps(document)))
