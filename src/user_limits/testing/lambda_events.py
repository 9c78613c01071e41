"""Real Lambda Kinesis events built from envelope bytes, as an event source mapping delivers them.

Each record carries base64 data, a Kinesis sequence number (a 56-digit decimal string, growing
along the shard), its partition key, an arrival timestamp in seconds, an eventID naming the shard,
and the stream's eventSourceARN.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

REGION = "eu-west-1"
ACCOUNT = "123456789012"
STREAM_ARN = f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/user-limits"
SHARD_ID = "shardId-000000000000"
# A realistic first sequence number of a shard: Kinesis numbers are far beyond 64 bits.
FIRST_SEQUENCE = 49_590_338_271_490_256_608_559_692_538_361_571_095_921_575_989_136_588_898
SEQUENCE_STEP = 8_162_741_120_516_849_600  # what consecutive records of one shard typically differ by
FIRST_ARRIVAL = 1_795_161_600.0  # seconds, as Lambda gives approximateArrivalTimestamp


def lambda_record(
    data: bytes,
    partition_key: str,
    sequence_number: int,
    arrival: float,
    shard_id: str = SHARD_ID,
    stream_arn: str = STREAM_ARN,
) -> dict[str, Any]:
    sequence = str(sequence_number)
    return {
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": partition_key,
            "sequenceNumber": sequence,
            "data": base64.b64encode(data).decode("ascii"),
            "approximateArrivalTimestamp": arrival,
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": f"{shard_id}:{sequence}",
        "eventName": "aws:kinesis:record",
        "invokeIdentityArn": f"arn:aws:iam::{ACCOUNT}:role/user-limits-projector",
        "awsRegion": REGION,
        "eventSourceARN": stream_arn,
    }


def lambda_events(
    records: Iterable[tuple[str, bytes]],
    batch_size: int = 1000,
    shard_id: str = SHARD_ID,
    stream_arn: str = STREAM_ARN,
) -> list[dict[str, Any]]:
    """``(partition key, envelope bytes)`` pairs, in shard order, as events of ``batch_size`` records."""
    events: list[dict[str, Any]] = []
    batch: list[dict[str, Any]] = []
    for index, (partition_key, data) in enumerate(records):
        arrival = round(FIRST_ARRIVAL + index * 0.003, 3)
        batch.append(
            lambda_record(data, partition_key, FIRST_SEQUENCE + index * SEQUENCE_STEP, arrival, shard_id, stream_arn)
        )
        if len(batch) == batch_size:
            events.append({"Records": batch})
            batch = []
    if batch:
        events.append({"Records": batch})
    return events


def events_from_envelopes(envelopes: Sequence[bytes], batch_size: int = 1000) -> list[dict[str, Any]]:
    """Plain envelope bytes, each keyed by its ``aggregateId`` (or a fixed key when it has none)."""
    return lambda_events(((_aggregate_id(data), data) for data in envelopes), batch_size)


class _Keyed(msgspec.Struct):
    aggregateId: str = "unknown"  # the wire name


_keyed = msgspec.json.Decoder(_Keyed)


def _aggregate_id(data: bytes) -> str:
    try:
        return _keyed.decode(data).aggregateId
    except (msgspec.DecodeError, UnicodeDecodeError):
        return "unknown"
