"""Builders of upstream envelopes and stream records, and hypothesis strategies for whole streams.

Envelopes are plain dicts shaped like the upstream ones (camelCase, amounts as strings); records
carry Kinesis coordinates so that a re-delivered record keeps its dead-letter identity.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Sequence
from typing import Any

from hypothesis import strategies as st

from user_limits.family import UserLimitFamily
from user_limits.stores.base import LimitStore
from user_limits.stream.batch import BatchProcessor, BatchResult
from user_limits.stream.records import Checkpoint, StreamRecord
from user_limits.testing.lambda_events import lambda_record as kinesis_lambda_record

CREATED = "USER_LIMIT_CREATED"
PROGRESS = "USER_LIMIT_PROGRESS_CHANGED"
RESET = "USER_LIMIT_RESET"

BASE_TIME = 1_700_000_000_000
STREAM_ARN = "arn:aws:kinesis:eu-west-1:123456789012:stream/user-limits"
SHARD = "shardId-000000000000"
# Real Kinesis sequence numbers are 56 digits: far beyond 64 bits.
KINESIS_BASE = 49_590_338_271_490_256_608_559_692_538_361_571_095_921_575_989_136_588_898

Envelope = dict[str, Any]


def envelope(type_: str, payload: dict[str, Any], seq: int, user_id: str = "u1", **fields: Any) -> Envelope:
    return {
        "aggregateId": user_id,
        "context": {},
        "createdAt": BASE_TIME + seq * 1000,
        "eventId": f"evt-{type_}-{seq}",
        "payload": payload,
        "sequenceNumber": seq,
        "source": "limitUser",
        "type": type_,
        **fields,
    }


def created(
    limit_id: str,
    seq: int,
    user_id: str = "u1",
    value: str = "100.00",
    type_: str = "DEPOSIT",
    period: str = "DAY",
    status: str = "ACTIVE",
    next_reset: int | None = BASE_TIME + 86_400_000,
    **extra: Any,
) -> Envelope:
    payload: dict[str, Any] = {
        "activeFrom": BASE_TIME,
        "brandId": "brand-1",
        "currencyCode": "SEK",
        "period": period,
        "status": status,
        "type": type_,
        "userId": user_id,
        "userLimitId": limit_id,
        "value": value,
        **extra,
    }
    if next_reset is not None:
        payload["nextResetTime"] = next_reset
    return envelope(CREATED, payload, seq, user_id)


def progress(
    limit_id: str,
    seq: int,
    amount: str,
    previous: str,
    user_id: str = "u1",
    next_reset: int | None = None,
    **extra: Any,
) -> Envelope:
    payload: dict[str, Any] = {
        "amount": amount,
        "brandId": "brand-1",
        "currencyCode": "SEK",
        "previousProgress": previous,
        "remainingAmount": "0",
        "userId": user_id,
        "userLimitId": limit_id,
        **extra,
    }
    if next_reset is not None:
        payload["nextResetTime"] = next_reset
    return envelope(PROGRESS, payload, seq, user_id)


def reset(limit_id: str, seq: int, next_reset: int, user_id: str = "u1", **extra: Any) -> Envelope:
    payload: dict[str, Any] = {
        "brandId": "brand-1",
        "currencyCode": "SEK",
        "nextResetTime": next_reset,
        "period": "DAY",
        "resetAmount": "0",
        "resetPercentage": "0.00",
        "type": "DEPOSIT",
        "unusedAmount": "100.00",
        "userId": user_id,
        "userLimitId": limit_id,
        **extra,
    }
    return envelope(RESET, payload, seq, user_id)


def noise(seq: int, user_id: str = "u1") -> Envelope:
    return envelope("USER_LIMIT_CHANGE_SOURCE_ADDED", {"amount": "200", "userId": user_id}, seq, user_id)


def encode(value: Envelope | bytes) -> bytes:
    return value if isinstance(value, bytes) else json.dumps(value).encode()


def record(value: Envelope | bytes, position: int | None = None, sub: int | None = None) -> StreamRecord:
    """A record; with ``position`` it gets Kinesis coordinates (the same position, the same record)."""
    if position is None:
        return StreamRecord(encode(value))
    return StreamRecord(
        encode(value),
        str(KINESIS_BASE + position),
        sub,
        "partition-" + str(position % 3),
        BASE_TIME + position,
        STREAM_ARN,
        SHARD,
    )


def records(values: Iterable[Envelope | bytes], first_position: int | None = 0) -> list[StreamRecord]:
    return [record(value, None if first_position is None else first_position + n) for n, value in enumerate(values)]


def checkpoint_of(stream_record: StreamRecord) -> Checkpoint:
    assert stream_record.sequence_number is not None
    return Checkpoint(STREAM_ARN, SHARD, stream_record.sequence_number, stream_record.sub_sequence_number or 0)


def process(store: LimitStore, batch: Sequence[StreamRecord], checkpoint: Checkpoint | None = None) -> BatchResult:
    """One batch through the real batch path; fails the test if the store did not commit it."""
    result = BatchProcessor(UserLimitFamily(), store).process(batch, checkpoint=checkpoint)
    assert result.error is None, result.error
    return result


def replay_in_batches(store: LimitStore, stream: Sequence[StreamRecord], cuts: Iterable[int]) -> None:
    """Process ``stream`` cut at the given (sorted, deduplicated here) indexes."""
    bounds = [0, *sorted({cut for cut in cuts if 0 < cut < len(stream)}), len(stream)]
    for start, end in itertools.pairwise(bounds):
        process(store, stream[start:end])


def export(store: LimitStore) -> list[dict[str, object]]:
    from user_limits.domain.model import export_dict

    return [export_dict(limit) for limit in store.all_limits()]


# -- hypothesis strategies

POISON: tuple[bytes, ...] = (
    b"\xff\xfe not utf-8",
    b"{not json",
    b"[]",
    b'"a string"',
    json.dumps({"type": CREATED, "payload": {}}).encode(),
    json.dumps(envelope(CREATED, {"userLimitId": "L0"}, 1)).encode(),
    json.dumps(progress("L0", 3, "NaN", "0")).encode(),
    json.dumps(created("L0", 2, type_="NOT_A_TYPE")).encode(),
    json.dumps({**noise(4), "sequenceNumber": "4"}).encode(),
)

_amounts = st.decimals(min_value=-1000, max_value=1000, places=2, allow_nan=False, allow_infinity=False).map(str)


@st.composite
def limit_events(draw: st.DrawFn, limit_id: str, user_id: str, seqs: list[int]) -> list[Envelope]:
    """The events of one limit in their true order: maybe a creation, then changes and resets."""
    out: list[Envelope] = []
    has_create = draw(st.booleans()) or draw(st.booleans())  # mostly created; sometimes an orphan
    for n, seq in enumerate(seqs):
        if n == 0 and has_create:
            value = draw(st.sampled_from(["100", "9800.00", "0.50", "250.1"]))
            out.append(created(limit_id, seq, user_id, value=value))
        elif draw(st.integers(0, 3)) == 0:
            out.append(reset(limit_id, seq, BASE_TIME + seq * 7, user_id))
        else:
            next_reset = draw(st.none() | st.just(BASE_TIME + seq * 11))
            out.append(progress(limit_id, seq, draw(_amounts), draw(_amounts), user_id, next_reset))
    return out


@st.composite
def event_streams(draw: st.DrawFn, max_limits: int = 4, max_events: int = 6) -> list[bytes]:
    """A stream of encoded envelopes: several users and limits, all three types, events out of
    order (orphans arrive before their creation), duplicates, noise types and poison records."""
    users = ["u1", "u2", "u3"]
    count = draw(st.integers(1, max_limits))
    next_seq = 1
    events: list[Envelope] = []
    for n in range(count):
        size = draw(st.integers(1, max_events))
        # Envelope sequence numbers increase in true order; gaps are allowed.
        seqs = []
        for _ in range(size):
            next_seq += draw(st.integers(1, 3))
            seqs.append(next_seq)
        events.extend(draw(limit_events(f"L{n}", draw(st.sampled_from(users)), seqs)))
    arrival = draw(st.permutations(events))
    # Mostly near the true order: sort some by sequence number so that not every stream is chaos.
    if draw(st.booleans()):
        arrival = sorted(arrival, key=lambda e: e["sequenceNumber"])
    stream: list[bytes] = [encode(e) for e in arrival]
    extras = draw(
        st.lists(
            st.one_of(
                st.sampled_from(POISON),
                st.integers(1, next_seq).map(lambda s: encode(noise(s))),
                st.sampled_from(stream or [b"{}"]),  # a duplicate of an event (or one more poison)
            ),
            max_size=5,
        )
    )
    for extra in extras:
        stream.insert(draw(st.integers(0, len(stream))), extra)
    return stream


def cut_points(size: int) -> st.SearchStrategy[list[int]]:
    return st.lists(st.integers(1, max(size - 1, 1)), max_size=6)


# -- Lambda Kinesis events


def lambda_record(
    data: bytes, position: int, arrival_s: float = BASE_TIME / 1000, partition_key: str = "u1"
) -> dict[str, Any]:
    """One record as Lambda's Kinesis event source mapping delivers it."""
    return kinesis_lambda_record(data, partition_key, KINESIS_BASE + position, arrival_s, SHARD, STREAM_ARN)


def lambda_event(values: Iterable[Envelope | bytes], first_position: int = 0, **options: Any) -> dict[str, Any]:
    return {"Records": [lambda_record(encode(v), first_position + n, **options) for n, v in enumerate(values)]}


# -- KPL aggregates


def kpl_message(items: Iterable[tuple[int, bytes]], partition_keys: Sequence[str] = ("u1",)) -> Any:
    """A KPL ``AggregatedRecord`` (the library's protobuf) of ``(partition key index, data)`` items,
    to be tampered with before ``kpl_bytes``."""
    from aws_kinesis_agg import deaggregator

    message = deaggregator.messages_pb2.AggregatedRecord()
    message.partition_key_table.extend(partition_keys)
    for index, data in items:
        user_record = message.records.add()
        user_record.partition_key_index = index
        user_record.data = data
    return message


def kpl_bytes(body: Any) -> bytes:
    """An aggregated Kinesis record: the magic bytes, the protobuf and its MD5 digest."""
    import hashlib

    from aws_kinesis_agg import MAGIC

    serialized = body if isinstance(body, bytes) else body.SerializeToString()
    return bytes(MAGIC + serialized + hashlib.md5(serialized).digest())
