"""Records of a Lambda Kinesis event, base64-decoded, with KPL-aggregated records expanded.

Lambda's ``eventID`` is ``shardId-000000000000:<sequence number>``: the shard comes from it.
"""

from __future__ import annotations

import base64
import hashlib
from binascii import Error as BinasciiError
from binascii import a2b_base64 as _a2b_base64
from collections.abc import Mapping
from typing import Any

from user_limits.stream.records import StreamRecord

# Records written by the Kinesis Producer Library in its aggregated format start with these bytes.
KPL_MAGIC = b"\xf3\x89\x9a\xc2"

_b64decode = base64.b64decode
# StreamRecord's generated __new__ is a Python function; building the tuple directly skips it.
_new_record = tuple.__new__


def records_from_lambda_event(event: Mapping[str, Any]) -> tuple[list[StreamRecord], list[str]]:
    """The user records of the event and, index for index, the Kinesis sequence number of the
    Lambda record each came from (the identifier Lambda expects in ``batchItemFailures``)."""
    records: list[StreamRecord] = []
    parents: list[str] = []
    add, add_parent = records.append, parents.append
    for raw in event.get("Records") or ():
        kinesis = raw["kinesis"]
        sequence_number = kinesis["sequenceNumber"]
        if type(sequence_number) is not str:
            sequence_number = str(sequence_number)
        arrival = kinesis.get("approximateArrivalTimestamp")
        if type(arrival) is float:  # what Lambda sends: no conversion needed
            arrival_ms: int | None = int(arrival * 1000)
        else:
            arrival_ms = None if arrival is None else int(float(arrival) * 1000)
        encoded = kinesis["data"]
        try:
            # binascii directly: base64.b64decode's wrapper costs as much as the decoding.
            data = _a2b_base64(encoded, strict_mode=True)
        except (BinasciiError, TypeError, ValueError):
            data = encoded.encode() if isinstance(encoded, str) else str(encoded).encode()
        event_id = raw.get("eventID")
        shard_id = event_id.partition(":")[0] or None if event_id else None
        partition_key = kinesis.get("partitionKey")
        stream_arn = raw.get("eventSourceARN")
        if data.startswith(KPL_MAGIC):
            for sub, (user_key, user_data) in enumerate(deaggregate(raw, data)):
                add(
                    StreamRecord(
                        user_data, sequence_number, sub, user_key or partition_key, arrival_ms, stream_arn, shard_id
                    )
                )
                add_parent(sequence_number)
        else:
            fields = (data, sequence_number, None, partition_key, arrival_ms, stream_arn, shard_id)
            add(_new_record(StreamRecord, fields))
            add_parent(sequence_number)
    return records, parents


def deaggregate(raw: Mapping[str, Any], data: bytes) -> list[tuple[str | None, bytes]]:
    """The (partition key, data) of each user record in a KPL-aggregated record.

    The library is imported only when an aggregated record shows up: it pulls in protobuf, which
    would cost every cold start otherwise. A record that only looks aggregated (bad checksum or
    protobuf) comes back whole, and is then dead-lettered by the decoder.
    """
    from aws_kinesis_agg.deaggregator import iter_deaggregate_records

    kinesis = dict(raw["kinesis"])
    kinesis.setdefault("kinesisSchemaVersion", "1.0")
    kinesis.setdefault("approximateArrivalTimestamp", None)
    user_records = [
        (user["kinesis"].get("partitionKey"), _b64decode(user["kinesis"]["data"]))
        for user in iter_deaggregate_records([{**raw, "kinesis": kinesis}])
    ]
    expected = _aggregated_count(data)
    if expected is not None and len(user_records) != expected:
        # The library prints an error and stops at a bad user record (a key index out of its table):
        # the rest would vanish. Keep the record whole instead, to be dead-lettered with its bytes.
        return [(None, data)]
    return user_records


def _aggregated_count(data: bytes) -> int | None:
    """How many user records a well-formed aggregate holds; None if it is not one."""
    from aws_kinesis_agg import DIGEST_SIZE, deaggregator

    body, digest = data[len(KPL_MAGIC) : -DIGEST_SIZE], data[-DIGEST_SIZE:]
    if len(data) <= len(KPL_MAGIC) + DIGEST_SIZE or hashlib.md5(body).digest() != digest:
        return None
    message = deaggregator.messages_pb2.AggregatedRecord()
    try:
        message.ParseFromString(body)
    except deaggregator.google.protobuf.message.DecodeError:
        return None
    return len(message.records)
