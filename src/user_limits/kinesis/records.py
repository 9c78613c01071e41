r"""Kinesis records as :class:`StreamRecord`\ s: the one place that reads what Kinesis delivers.

Two shapes come in: a Lambda Kinesis event (base64 data; Lambda's ``eventID`` is
``shardId-000000000000:<sequence number>``: the shard comes from it) and a GetRecords response (the
standalone consumer). Both take the same KPL path: a record in the Kinesis Producer Library's
aggregated format is expanded by :func:`expand_aggregate`, whoever read it.

Whatever arrives gets an outcome. A Lambda record of a shape AWS never sends (no ``kinesis``, data
that is not a string, an arrival time that is not a finite number...) and a KPL aggregate that
cannot be de-aggregated each become one :class:`RejectedRecord`, dead-lettered with the
coordinates it has; the records around it are not affected.

Hot module: every Lambda record passes through :func:`records_from_lambda_event`, whose fast path
is written for speed: one msgspec conversion of the event's records, base64 included, then a few
cheap tests a record (``bench/handler_bench.py`` measures it; ``tests/unit/test_lambda_records.py``
holds it to the careful path's results).
"""

from __future__ import annotations

import base64
from binascii import Error as BinasciiError
from binascii import a2b_base64 as _a2b_base64
from collections.abc import Iterable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Annotated, Any

import msgspec

from user_limits.stream.records import RejectedRecord, StreamRecord

if TYPE_CHECKING:
    from mypy_boto3_kinesis.type_defs import RecordTypeDef

# The reasons a RejectedRecord's dead letter starts with; a redrive knows such records by them
# (user_limits.operations.redrive) and rejects them again rather than decode them.
UNREADABLE_AGGREGATE = "KPL aggregate that cannot be de-aggregated"
RECORD_OF_NO_AWS_SHAPE = "Lambda record of a shape AWS never sends"
EVENT_OF_NO_AWS_SHAPE = "Lambda event of a shape AWS never sends"
TRANSPORT_REASONS = (UNREADABLE_AGGREGATE, RECORD_OF_NO_AWS_SHAPE, EVENT_OF_NO_AWS_SHAPE)

# Records written by the Kinesis Producer Library in its aggregated format start with these bytes.
KPL_MAGIC = b"\xf3\x89\x9a\xc2"

# An arrival time in seconds whose milliseconds fit the stores' signed 64-bit columns, with room
# to spare for float rounding.
MAX_ARRIVAL_S = 9e15

_b64decode = base64.b64decode
# StreamRecord's generated __new__ is a Python function; building the tuple directly skips it.
_new_record = tuple.__new__
# Sorted keys: a re-delivered copy of a malformed record is the same bytes, so the same dead letter.
_encode_json = msgspec.json.Encoder(order="deterministic").encode


class MalformedEvent(ValueError):
    """A Lambda event of a shape AWS never sends (raised only when asked to be strict)."""


class _Kinesis(msgspec.Struct, gc=False, rename="camel"):
    """The ``kinesis`` object of a Lambda record, as AWS sends it (the other fields are skipped)."""

    sequence_number: str
    # Base64, decoded by msgspec in C: several times faster than binascii on Python 3.11, and never
    # more lenient than its strict mode (what msgspec refuses takes the careful path, which decides).
    data: bytes
    partition_key: str
    approximate_arrival_timestamp: Annotated[float, msgspec.Meta(ge=0.0, lt=MAX_ARRIVAL_S)]


class _LambdaRecord(msgspec.Struct, gc=False, rename={"event_id": "eventID", "event_source_arn": "eventSourceARN"}):
    kinesis: _Kinesis
    event_id: str
    event_source_arn: str


_as_lambda_records = partial(msgspec.convert, type=list[_LambdaRecord])


def records_from_lambda_event(event: object, strict: bool = False) -> tuple[list[StreamRecord], list[str]]:
    """The user records of a Lambda Kinesis event and, index for index, the Kinesis sequence number of the
    Lambda record each came from: the identifier Lambda expects in ``batchItemFailures``. A record
    without a sound sequence number gets that of the record before it, or "" for the first one
    (Lambda then retries from an earlier record, or the whole batch: nothing is lost).

    A malformed record is a :class:`RejectedRecord`; with ``strict`` it raises MalformedEvent instead
    (an operator's file is refused with the reason rather than half-replayed).
    """
    if not isinstance(event, Mapping):  # Lambda passes any JSON it is invoked with
        return _rejected_event(event, "the event is not an object", strict)
    raw_records = event.get("Records")
    if raw_records is None:
        return [], []
    if type(raw_records) is not list:
        return _rejected_event(event, "`Records` is not a list", strict)
    # The fast path: one C call reads every record of an event as Lambda sends it, base64 included.
    # If one record is of another shape, every record of the event takes the careful path.
    try:
        usual: list[_LambdaRecord | None] = _as_lambda_records(raw_records)
    except Exception:  # whatever msgspec raises: the careful path decides, record by record
        usual = [None] * len(raw_records)
    records: list[StreamRecord] = []
    parents: list[str] = []
    add, add_parent = records.append, parents.append
    for index, lambda_record in enumerate(usual):
        record: StreamRecord | None = None
        if lambda_record is not None:
            kinesis = lambda_record.kinesis
            sequence_number, partition_key = kinesis.sequence_number, kinesis.partition_key
            event_id, stream_arn = lambda_record.event_id, lambda_record.event_source_arn
            # Each test costs every record, so few and cheap ones. ASCII cannot hold a lone
            # surrogate (JSON allows "\ud800"), which no store can encode; "" is no identity: it
            # would merge dead letters. Other text takes the careful path. How long text may be is
            # for the stores to handle.
            if (
                sequence_number
                and sequence_number.isascii()
                and partition_key.isascii()
                and event_id.isascii()
                and stream_arn.isascii()
            ):
                arrival_ms = int(kinesis.approximate_arrival_timestamp * 1000)
                shard_id = event_id.partition(":")[0] or None
                fields = (kinesis.data, sequence_number, None, partition_key, arrival_ms, stream_arn, shard_id)
                record = _new_record(StreamRecord, fields)
                parent = sequence_number
        if record is None:
            record = _careful(raw_records[index])
            parent = record.sequence_number or (parents[-1] if parents else "")
            if type(record) is RejectedRecord:
                if strict:
                    raise MalformedEvent(f"record {index + 1}: {record.reason}")
                add(record)
                add_parent(parent)
                continue
        if record.data.startswith(KPL_MAGIC):
            expanded = expand_aggregate(record)
            records.extend(expanded)
            parents.extend([parent] * len(expanded))
        else:
            add(record)
            add_parent(parent)
    return records, parents


def records_from_get_records(
    records: Iterable[RecordTypeDef], stream_arn: str | None, shard_id: str
) -> list[StreamRecord]:
    """GetRecords records as StreamRecords with their Kinesis coordinates, KPL records expanded
    (an aggregate that cannot be read stays whole, to be dead-lettered)."""
    out: list[StreamRecord] = []
    for record in records:
        data = record["Data"]
        sequence_number = record["SequenceNumber"]
        partition_key = record["PartitionKey"]
        arrival = record.get("ApproximateArrivalTimestamp")
        arrival_ms = None if arrival is None else int(arrival.timestamp() * 1000)
        whole = StreamRecord(data, sequence_number, None, partition_key, arrival_ms, stream_arn, shard_id)
        if data.startswith(KPL_MAGIC):
            out.extend(expand_aggregate(whole))
        else:
            out.append(whole)
    return out


def _not_base64(encoded: str) -> bytes:
    """Data that is not base64, kept as it came for the decoder to dead-letter. surrogatepass: a
    lone surrogate (JSON allows "\\ud800") becomes bytes that are not UTF-8, not an exception."""
    return encoded.encode("utf-8", "surrogatepass")


def _data(encoded: str) -> bytes:
    try:
        return _a2b_base64(encoded, strict_mode=True)
    except (BinasciiError, ValueError):
        return _not_base64(encoded)


def _careful(raw: object) -> StreamRecord:
    """A Lambda record the fast path did not take, each field checked on its own.

    An absent optional field is an unknown coordinate (hand-written events in replay files leave
    them out). A field of a shape AWS never sends makes the record a RejectedRecord: kept whole, as
    JSON, with the coordinates that are sound.
    """
    if not isinstance(raw, dict):
        return _rejected(raw, ["the record is not an object"], (None, None, None, None, None))
    problems: list[str] = []
    kinesis = raw.get("kinesis")
    if not isinstance(kinesis, dict):
        problems.append("`kinesis` is missing or not an object")
        kinesis = {}
    sequence_number = kinesis.get("sequenceNumber")
    if not (type(sequence_number) is str and sequence_number and sequence_number.isascii()):
        problems.append("`kinesis.sequenceNumber` is missing or not a non-empty ASCII string")
        sequence_number = None
    encoded = kinesis.get("data")
    data = _data(encoded) if type(encoded) is str else None
    if data is None:
        problems.append("`kinesis.data` is missing or not a string")
    arrival = kinesis.get("approximateArrivalTimestamp")
    arrival_ms: int | None = None
    if arrival is not None:
        if type(arrival) in (float, int) and 0 <= arrival < MAX_ARRIVAL_S:
            arrival_ms = int(arrival * 1000)
        else:
            problems.append("`kinesis.approximateArrivalTimestamp` is not a number of seconds since 1970")
    partition_key = _text(kinesis, "partitionKey", problems, "kinesis.")
    stream_arn = _text(raw, "eventSourceARN", problems)
    event_id = _text(raw, "eventID", problems)
    shard_id = event_id.partition(":")[0] or None if event_id else None
    coordinates = (sequence_number, partition_key, arrival_ms, stream_arn, shard_id)
    if problems or data is None:
        return _rejected(raw, problems, coordinates)
    return StreamRecord(data, sequence_number, None, partition_key, arrival_ms, stream_arn, shard_id)


def _text(fields: dict[str, Any], name: str, problems: list[str], prefix: str = "") -> str | None:
    """An optional text field; None, with a problem noted, if it is not text."""
    value = fields.get(name)
    if value is None or _is_text(value):
        return value
    problems.append(f"`{prefix}{name}` is not a string of Unicode (without lone surrogates)")
    return None


def _is_text(value: object) -> bool:
    """A string that UTF-8 can encode: no lone surrogate."""
    if type(value) is not str:
        return False
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def _rejected_event(event: object, problem: str, strict: bool) -> tuple[list[StreamRecord], list[str]]:
    """The whole event as one record to dead-letter; it has no coordinates, so no sequence number
    to report ("" makes Lambda retry the whole batch, which is safe)."""
    reason = f"{EVENT_OF_NO_AWS_SHAPE}: {problem}"
    if strict:
        raise MalformedEvent(reason)
    return [RejectedRecord.of(StreamRecord(_as_bytes(event)), reason)], [""]


def _rejected(
    raw: object, problems: list[str], coordinates: tuple[str | None, str | None, int | None, str | None, str | None]
) -> RejectedRecord:
    sequence_number, partition_key, arrival_ms, stream_arn, shard_id = coordinates
    record = StreamRecord(_as_bytes(raw), sequence_number, None, partition_key, arrival_ms, stream_arn, shard_id)
    return RejectedRecord.of(record, f"{RECORD_OF_NO_AWS_SHAPE}: " + "; ".join(problems))


def _as_bytes(value: object) -> bytes:
    """What arrived, as JSON: the dead letter keeps all of it."""
    try:
        return _encode_json(value)
    except Exception:  # not JSON (a lone surrogate, nesting too deep): its repr, bounded
        import reprlib  # only for such a record: the cold start does not pay for it

        return reprlib.repr(value).encode("utf-8", "backslashreplace")


def expand_aggregate(record: StreamRecord) -> list[StreamRecord]:
    """The one KPL path: where an aggregate becomes records, for the Lambda handler, the consumer and replay.

    Each user record keeps the aggregate's coordinates, with its sub-sequence number and its own
    partition key. A record that only looks aggregated (its MD5 digest does not match) comes back
    unchanged, for the decoder to judge like any other. An aggregate that cannot be read comes back
    whole as a RejectedRecord: dead-lettered with its coordinates, while the records around it commit.

    The library is imported only when an aggregated record shows up: it pulls in protobuf, which
    would cost every cold start otherwise.
    """
    import hashlib  # like the library, only for an aggregate: OpenSSL's load costs every cold start

    from aws_kinesis_agg import DIGEST_SIZE

    data = record.data
    body, digest = data[len(KPL_MAGIC) : -DIGEST_SIZE], data[-DIGEST_SIZE:]
    if len(data) <= len(KPL_MAGIC) + DIGEST_SIZE or hashlib.md5(body).digest() != digest:
        return [record]
    try:
        user_records = _deaggregate(data, body)
    except Exception as error:
        # Broad on purpose: which exceptions aws_kinesis_agg and protobuf raise on a bad aggregate is
        # no contract of theirs (a key index out of its table raises IndexError from inside the
        # library's own error report, truncated protobuf raises DecodeError...). Whatever it is, the
        # aggregate can never be read, and retrying its batch would fail for ever.
        reason = f"{UNREADABLE_AGGREGATE}: {type(error).__name__}: {error}"
        return [RejectedRecord.of(record, reason[:500])]
    _, sequence_number, _, partition_key, arrival_ms, stream_arn, shard_id = record
    return [
        StreamRecord(user_data, sequence_number, sub, user_key or partition_key, arrival_ms, stream_arn, shard_id)
        for sub, (user_key, user_data) in enumerate(user_records)
    ]


def _deaggregate(data: bytes, body: bytes) -> list[tuple[str, bytes]]:
    """The (partition key, data) of each user record of an aggregate whose digest matches."""
    from aws_kinesis_agg import deaggregator

    message = deaggregator.messages_pb2.AggregatedRecord()
    message.ParseFromString(body)
    expected = len(message.records)
    # The library reads Lambda-shaped records (base64 data).
    lambda_shaped = {
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "sequenceNumber": "",
            "approximateArrivalTimestamp": None,
            "data": base64.b64encode(data).decode("ascii"),
        }
    }
    user_records = [
        (user["kinesis"]["partitionKey"], _b64decode(user["kinesis"]["data"]))
        for user in deaggregator.iter_deaggregate_records(lambda_shaped)
    ]
    if len(user_records) != expected:
        # The library prints an error and stops at some bad user records: the rest would vanish.
        raise ValueError(f"{expected - len(user_records)} of its {expected} user records cannot be read")
    if not all(_is_text(user_key) for user_key, _ in user_records):
        raise ValueError("a user record's partition key is not a string of Unicode")
    return user_records
