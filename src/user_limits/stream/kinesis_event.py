"""Records of a Lambda Kinesis event, base64-decoded, with KPL-aggregated records expanded."""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from typing import Any

from user_limits.stream.records import StreamRecord

# Records written by the Kinesis Producer Library in its aggregated format start with these bytes.
KPL_MAGIC = b"\xf3\x89\x9a\xc2"

_b64decode = base64.b64decode


def shard_of(event_id: str | None) -> str | None:
    """Lambda's eventID is ``shardId-000000000000:<sequence number>``."""
    if not event_id:
        return None
    shard, _, _ = event_id.partition(":")
    return shard or None


def records_from_lambda_event(event: Mapping[str, Any]) -> tuple[list[StreamRecord], list[str]]:
    """The user records of the event and, index for index, the Kinesis sequence number of the
    Lambda record each came from (the identifier Lambda expects in ``batchItemFailures``)."""
    records: list[StreamRecord] = []
    parents: list[str] = []
    for raw in event.get("Records") or ():
        kinesis = raw["kinesis"]
        sequence_number = str(kinesis["sequenceNumber"])
        arrival = kinesis.get("approximateArrivalTimestamp")
        arrival_ms = None if arrival is None else int(float(arrival) * 1000)
        try:
            data = _b64decode(kinesis["data"], validate=True)
        except (ValueError, TypeError):
            data = str(kinesis.get("data")).encode()
        meta = (
            kinesis.get("partitionKey"),
            arrival_ms,
            raw.get("eventSourceARN"),
            shard_of(raw.get("eventID")),
        )
        if data.startswith(KPL_MAGIC):
            for sub, (partition_key, user_data) in enumerate(deaggregate(raw, data)):
                records.append(StreamRecord(user_data, sequence_number, sub, partition_key or meta[0], *meta[1:]))
                parents.append(sequence_number)
        else:
            records.append(StreamRecord(data, sequence_number, None, *meta))
            parents.append(sequence_number)
    return records, parents


def deaggregate(raw: Mapping[str, Any], data: bytes) -> Iterable[tuple[str | None, bytes]]:
    """The (partition key, data) of each user record in a KPL-aggregated record.

    The library is imported only when an aggregated record shows up: it pulls in protobuf, which
    would cost every cold start otherwise. A record that only looks aggregated (bad checksum or
    protobuf) comes back whole, and is then dead-lettered by the decoder.
    """
    from aws_kinesis_agg.deaggregator import iter_deaggregate_records

    kinesis = dict(raw["kinesis"])
    kinesis.setdefault("kinesisSchemaVersion", "1.0")
    kinesis.setdefault("approximateArrivalTimestamp", None)
    for user_record in iter_deaggregate_records([{**raw, "kinesis": kinesis}]):
        user = user_record["kinesis"]
        yield user.get("partitionKey"), _b64decode(user["data"])
