"""The invocation records Lambda writes to a Kinesis event source mapping's on-failure destination.

When a batch exhausts its retries or its maximum record age, Lambda sends a JSON document naming it
(the shape of AWS's documentation):

    {"requestContext": {"requestId", "functionArn", "condition", "approximateInvokeCount"},
     "responseContext": {"statusCode", "executedVersion", "functionError"},
     "version": "1.0", "timestamp": "...",
     "KinesisBatchInfo": {"shardId", "startSequenceNumber", "endSequenceNumber",
                          "approximateArrivalOfFirstRecord", "approximateArrivalOfLastRecord",
                          "batchSize", "streamArn"}}

To an SQS queue (or SNS topic) it sends only that; the records stay in the stream. To an S3 bucket
it adds ``payload``, the whole invocation event: AWS's documentation and its event libraries give it
as a JSON string of ``{"Records": [...]}``; the same event as a JSON object is accepted too.

Only ``KinesisBatchInfo`` (and ``payload``) are needed; the rest is shown when present and never
required. Everything else about a record is checked here, field by field, so that a bad one is
reported by name and never reaches the batch path: sequence numbers are decimal strings of up to
129 digits (the API's pattern), compared as Python ints, never as floats or 64-bit integers.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import msgspec

from user_limits.kinesis.records import records_from_lambda_event
from user_limits.stream.records import StreamRecord

# Kinesis's own patterns: SequenceNumber 0|([1-9]\d{0,128}), ShardId [a-zA-Z0-9_.-]+ (1 to 128).
_SEQUENCE = re.compile(r"0|[1-9][0-9]{0,128}")
_SHARD_ID = re.compile(r"[A-Za-z0-9_.-]{1,128}")
_STREAM_ARN = re.compile(r"arn:aws[A-Za-z-]*:kinesis:([a-z0-9-]{1,64}):([0-9]{12}):stream/([A-Za-z0-9_.-]{1,128})")
# Past any real arrival time in seconds, far below where int(seconds * 1000) stops being exact.
_MAX_ARRIVAL_SECONDS = 1e12


class MalformedRecord(ValueError):
    """Not an invocation record of a Kinesis batch, or not one that can be recovered; says why."""


@dataclass(frozen=True, slots=True)
class BatchInfo:
    """Which records a failed invocation held: a range of one shard, both ends included."""

    shard_id: str
    start: str
    end: str
    batch_size: int
    stream_arn: str
    condition: str | None = None

    @property
    def region(self) -> str:
        match = _STREAM_ARN.fullmatch(self.stream_arn)
        assert match is not None  # checked when parsed
        return match.group(1)

    @property
    def stream_name(self) -> str:
        return self.stream_arn.rpartition("/")[2]

    @property
    def range(self) -> str:
        return f"{self.shard_id} {self.start} to {self.end}"


@dataclass(frozen=True, slots=True)
class InvocationRecord:
    info: BatchInfo
    # The invocation event ({"Records": [...]}); only in an S3 destination's objects.
    payload: dict[str, Any] | None = None


def parse_invocation_record(data: bytes | str) -> InvocationRecord:
    """The record in ``data`` (an SQS message body or an S3 object); MalformedRecord if it is not one."""
    document = _json(data, "the record")
    if not isinstance(document, dict):
        raise MalformedRecord(f"expected a JSON object, got {_kind(document)}")
    batch = document.get("KinesisBatchInfo")
    if batch is None:
        if "DDBStreamBatchInfo" in document:
            raise MalformedRecord("a DynamoDB stream's invocation record (DDBStreamBatchInfo), not a Kinesis one")
        raise MalformedRecord("no KinesisBatchInfo: not the on-failure record of a Kinesis event source mapping")
    if not isinstance(batch, dict):
        raise MalformedRecord(f"KinesisBatchInfo: expected an object, got {_kind(batch)}")
    info = BatchInfo(
        shard_id=_text(batch, "shardId", _SHARD_ID, "a shard id such as shardId-000000000000"),
        start=_sequence(batch, "startSequenceNumber"),
        end=_sequence(batch, "endSequenceNumber"),
        batch_size=_batch_size(batch),
        stream_arn=_text(batch, "streamArn", _STREAM_ARN, "a Kinesis stream ARN"),
        condition=_condition(document),
    )
    if int(info.start) > int(info.end):
        raise MalformedRecord(
            f"KinesisBatchInfo: startSequenceNumber {info.start} is after endSequenceNumber {info.end}"
        )
    return InvocationRecord(info, _payload(document))


def payload_records(record: InvocationRecord) -> list[StreamRecord]:
    """The user records of an S3 object's invocation event, KPL records expanded; MalformedRecord if
    it has none or they are not Lambda Kinesis records."""
    if record.payload is None:
        raise MalformedRecord("no payload: the records are not in this object (recover it from the stream)")
    raw_records = record.payload.get("Records")
    if not isinstance(raw_records, list) or not raw_records:
        raise MalformedRecord("payload: expected an invocation event with a non-empty Records list")
    for n, raw in enumerate(raw_records):
        _check_lambda_record(raw, f"payload.Records[{n}]")
    records, _ = records_from_lambda_event(record.payload)
    return records


def _json(data: bytes | str, what: str) -> Any:
    try:
        raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        raw.decode("utf-8")  # checked here: msgspec's error for bad UTF-8 differs between versions
    except UnicodeError:
        raise MalformedRecord(f"{what} is not UTF-8 text") from None
    try:
        return msgspec.json.decode(raw)
    except (msgspec.DecodeError, ValueError):
        raise MalformedRecord(f"{what} is not JSON") from None


def _kind(value: object) -> str:
    if value is None:
        return "null"
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}.get(type(value), "a number")


def _field(container: dict[str, Any], name: str, where: str = "KinesisBatchInfo") -> Any:
    if name not in container:
        raise MalformedRecord(f"{where}.{name}: missing")
    return container[name]


def _text(container: dict[str, Any], name: str, pattern: re.Pattern[str], expected: str) -> str:
    value = _field(container, name)
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise MalformedRecord(f"KinesisBatchInfo.{name}: expected {expected}, got {_shown_value(value)}")
    return value


def _sequence(container: dict[str, Any], name: str, where: str = "KinesisBatchInfo") -> str:
    value = _field(container, name, where)
    if not isinstance(value, str) or not _SEQUENCE.fullmatch(value):
        raise MalformedRecord(f"{where}.{name}: expected a sequence number (decimal digits), got {_shown_value(value)}")
    return value


def _batch_size(container: dict[str, Any]) -> int:
    value = _field(container, "batchSize")
    if type(value) is not int or value < 1:
        raise MalformedRecord(f"KinesisBatchInfo.batchSize: expected a positive integer, got {_shown_value(value)}")
    return value


def _condition(document: dict[str, Any]) -> str | None:
    context = document.get("requestContext")
    condition = context.get("condition") if isinstance(context, dict) else None
    return condition if isinstance(condition, str) else None


def _payload(document: dict[str, Any]) -> dict[str, Any] | None:
    if "payload" not in document:
        return None
    payload = document["payload"]
    if isinstance(payload, str):
        payload = _json(payload, "payload")
    if not isinstance(payload, dict):
        raise MalformedRecord(
            f"payload: expected the invocation event (an object or its JSON text), got {_kind(payload)}"
        )
    return payload


def _check_lambda_record(raw: object, where: str) -> None:
    """What ``records_from_lambda_event`` reads of a record, so that it cannot fail on it."""
    if not isinstance(raw, dict):
        raise MalformedRecord(f"{where}: expected an object, got {_kind(raw)}")
    kinesis = raw.get("kinesis")
    if not isinstance(kinesis, dict):
        raise MalformedRecord(f"{where}.kinesis: expected an object, got {_kind(kinesis)}")
    _sequence(kinesis, "sequenceNumber", f"{where}.kinesis")
    if not isinstance(kinesis.get("data"), str):
        raise MalformedRecord(f"{where}.kinesis.data: expected a base64 string, got {_kind(kinesis.get('data'))}")
    if not isinstance(kinesis.get("partitionKey", ""), str):
        raise MalformedRecord(f"{where}.kinesis.partitionKey: expected a string, got {_kind(kinesis['partitionKey'])}")
    arrival = kinesis.get("approximateArrivalTimestamp")
    if arrival is not None and (
        type(arrival) not in (int, float) or not math.isfinite(arrival) or abs(arrival) > _MAX_ARRIVAL_SECONDS
    ):
        raise MalformedRecord(
            f"{where}.kinesis.approximateArrivalTimestamp: expected a time in seconds, got {_shown_value(arrival)}"
        )
    for name in ("eventID", "eventSourceARN"):
        if not isinstance(raw.get(name, ""), str):
            raise MalformedRecord(f"{where}.{name}: expected a string, got {_kind(raw[name])}")


def _shown_value(value: object) -> str:
    """A short rendering of a bad value, for the message (the CLI escapes what is not printable)."""
    text = repr(value) if isinstance(value, str) else msgspec.json.encode(value).decode()
    return text if len(text) <= 80 else text[:77] + "..."
