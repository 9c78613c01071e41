"""The Lambda handler over hostile input, on every store: arbitrary record bytes, upstream envelopes
with their JSON mutated, Lambda records of shapes AWS never sends, and real KPL aggregates
tampered with.

With the store up, the handler never raises, reports no failed item, and counts every user record
exactly once as applied, skipped, ignored, parked or dead-lettered (an aggregate that cannot be
read is one record, dead-lettered). Each example works in a namespace of its own (limit and user
ids, Kinesis sequence numbers), so one store serves a whole run: what an example adds to the
store's stats is what its event holds. The example's number is written with a fixed width: the
sizes of what is drawn must not depend on it, or hypothesis could not replay an example.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.streams import (
    POISON,
    created,
    kpl_bytes,
    kpl_message,
    lambda_record,
    noise,
    progress,
    reset,
)
from user_limits import aws_lambda

KINDS = [
    pytest.param("memory"),
    pytest.param("sqlite"),
    pytest.param("postgres", marks=pytest.mark.servers),
    pytest.param("dynamodb", marks=pytest.mark.servers),
]
EXAMPLES = {"memory": 200, "sqlite": 100, "postgres": 25, "dynamodb": 15}
# Lambda records per example, at most; positions of example n start at n * POSITIONS.
RECORDS = 8
POSITIONS = 1_000
KPL_MAGIC = b"\xf3\x89\x9a\xc2"

# Amounts the grammar accepts, and amounts it refuses or that are not even strings.
VALID_AMOUNTS = ["100", "0.50", "-1", "1E+5", "5e-8", "0", "-0"]
BAD_AMOUNTS: list[Any] = [" 1", "1 ", "1_000", "\uff11", "\u0663", "+5", ".5", "5.", "NaN", "Infinity", "1e1000000"]
BAD_AMOUNTS += [5, 1.5, None]
amounts = st.sampled_from(VALID_AMOUNTS) | st.sampled_from(VALID_AMOUNTS) | st.sampled_from(BAD_AMOUNTS)

# Partition keys as a producer may choose them: any Unicode, NUL included.
partition_keys = st.sampled_from(["u1", "kpl", "ü", "k\x00ey", "\U0001f600"])
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(["", "\x00", "e30=", "1700000000", "USER_LIMIT_CREATED"])
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=6,
)


@st.composite
def envelopes(draw: st.DrawFn, n: int) -> bytes:
    """An upstream envelope of example ``n``, valid or near-valid: a field dropped or replaced, or
    its JSON bytes cut or changed."""
    user = draw(st.sampled_from([f"f{n:06}-u0", f"f{n:06}-u1"]))
    limit = draw(st.sampled_from([f"f{n:06}-L0", f"f{n:06}-L1", f"f{n:06}-L2"]))
    seq = draw(st.integers(1, 12))
    amount, previous = draw(amounts), draw(st.sampled_from(VALID_AMOUNTS))
    kind = draw(st.sampled_from(["created", "progress", "progress", "reset", "noise"]))
    if kind == "created":
        envelope = created(limit, seq, user, value=amount)
    elif kind == "progress":
        envelope = progress(limit, seq, amount, previous, user)
    elif kind == "reset":
        envelope = reset(limit, seq, 1_700_000_000_000 + seq, user)
    else:
        envelope = noise(seq, user)
    mutation = draw(st.sampled_from(["none"] * 5 + ["drop", "replace", "bytes"]))
    if mutation in ("drop", "replace"):
        target = envelope["payload"] if draw(st.booleans()) else envelope
        name = draw(st.sampled_from(sorted(target)))
        if mutation == "drop":
            del target[name]
        else:
            target[name] = draw(json_values)
    data = json.dumps(envelope).encode()
    if mutation == "bytes":
        at = draw(st.integers(0, len(data) - 1))
        how = draw(st.sampled_from(["cut", "change", "insert"]))
        byte = bytes([draw(st.integers(0, 255))])
        data = data[:at] if how == "cut" else data[:at] + byte + data[at + (how == "change") :]
    return data


def user_data(n: int) -> st.SearchStrategy[bytes]:
    """What a user record may hold: envelopes, poison, any bytes."""
    return st.one_of(envelopes(n), envelopes(n), envelopes(n), st.sampled_from(POISON), st.binary(max_size=40))


@st.composite
def aggregates(draw: st.DrawFn, n: int) -> bytes:
    """A KPL aggregate built with the library's protobuf, maybe tampered with."""
    keys = draw(st.lists(partition_keys | st.text(min_size=1, max_size=6), min_size=1, max_size=3))
    items = draw(st.lists(st.tuples(st.integers(0, len(keys) - 1), user_data(n)), max_size=4))
    message = kpl_message(items, keys)
    if draw(st.booleans()):
        message.explicit_hash_key_table.extend(["12345", "67890"])
        for user_record in message.records:
            user_record.explicit_hash_key_index = draw(st.integers(0, 1))
    tamper = draw(st.sampled_from(["none", "none", "key index", "hash key index", "cut", "change", "digest", "any"]))
    if tamper == "key index" and items:
        message.records[draw(st.integers(0, len(items) - 1))].partition_key_index = len(keys) + draw(st.integers(0, 3))
    elif tamper == "hash key index" and items:
        if not message.explicit_hash_key_table:
            message.explicit_hash_key_table.append("12345")
        message.records[draw(st.integers(0, len(items) - 1))].explicit_hash_key_index = 2 + draw(st.integers(0, 3))
    body = message.SerializeToString()
    if tamper in ("cut", "change") and body:
        at = draw(st.integers(0, len(body) - 1))
        byte = bytes([draw(st.integers(0, 255))])
        body = body[:at] if tamper == "cut" else body[:at] + byte + body[at + 1 :]
    elif tamper == "any":
        body = draw(st.binary(max_size=40))
    data = kpl_bytes(body)
    if tamper == "digest":
        data = data[:-1] + bytes([data[-1] ^ 1])
    return data


def user_records_in(data: bytes) -> int:
    """How many user records a Lambda record of these bytes holds, read from the KPL format itself:
    those of a valid aggregate, else one (the record, or the aggregate whole, dead-lettered)."""
    from aws_kinesis_agg import deaggregator

    body, digest = data[len(KPL_MAGIC) : -16], data[-16:]
    if not data.startswith(KPL_MAGIC) or len(data) <= len(KPL_MAGIC) + 16 or hashlib.md5(body).digest() != digest:
        return 1
    message = deaggregator.messages_pb2.AggregatedRecord()
    try:
        message.ParseFromString(body)
    except Exception:  # protobuf's error types are not the point here: it is not an aggregate
        return 1
    keys, hash_keys = message.partition_key_table, message.explicit_hash_key_table
    for user_record in message.records:
        if user_record.partition_key_index >= len(keys):
            return 1
        if not isinstance(keys[user_record.partition_key_index], str):  # protobuf gives bytes for bad UTF-8
            return 1
        if hash_keys and user_record.explicit_hash_key_index >= len(hash_keys):
            return 1
    return len(message.records)


ODD_VALUES = [math.nan, math.inf, -math.inf, 1e300, -5.0, "", "\ud800", "x" * 1000, True, 0]


@st.composite
def odd_records(draw: st.DrawFn, record: dict[str, Any], marker: str) -> Any:
    """A Lambda record of a shape AWS never sends (or, by chance, one it does)."""
    target = draw(st.sampled_from(["record", "kinesis", "field", "field", "field"]))
    value = draw(json_values | st.sampled_from(ODD_VALUES))
    if target == "record":
        return [marker, value] if draw(st.booleans()) else marker
    if target == "kinesis":
        if draw(st.booleans()):
            del record["kinesis"]
        else:
            record["kinesis"] = value
        return record
    names = ["sequenceNumber", "data", "approximateArrivalTimestamp", "partitionKey", "eventID", "eventSourceARN"]
    name = draw(st.sampled_from(names))
    fields = record if name in ("eventID", "eventSourceARN") else record["kinesis"]
    if draw(st.booleans()):
        del fields[name]
    else:
        if name == "sequenceNumber" and isinstance(value, str) and value:
            value = f"{value}#{marker}"  # a sound one must still be unique: it names the dead letter
        fields[name] = value
    return record


@st.composite
def lambda_events(draw: st.DrawFn, n: int) -> tuple[Any, int]:
    """A Lambda Kinesis event of example ``n`` and how many user records it holds."""
    records: list[Any] = []
    expected = 0
    for i in range(draw(st.integers(0, RECORDS))):
        marker = f"fuzz-{n:06}-{i}"
        kind = draw(st.sampled_from(["plain", "plain", "plain", "aggregate", "aggregate", "odd"]))
        data = draw(aggregates(n) if kind == "aggregate" else user_data(n))
        record = lambda_record(data, n * POSITIONS + i, partition_key=draw(partition_keys))
        record["fuzz"] = marker  # keeps a record without a sound sequence number a dead letter of its own
        if kind == "odd" and not data.startswith(KPL_MAGIC):
            records.append(draw(odd_records(record, marker)))
            expected += 1
        else:
            records.append(record)
            expected += user_records_in(data)
    shape = draw(st.sampled_from(["event"] * 9 + ["Records not a list", "no Records", "not an object"]))
    if shape == "Records not a list":
        return {"Records": {"fuzz": f"fuzz-{n:06}", "records": records}}, 1
    if shape == "no Records":
        return {"fuzz": f"fuzz-{n:06}"}, 0
    if shape == "not an object":
        return [f"fuzz-{n:06}", records], 1
    return {"Records": records}, expected


def counted(stats: Any) -> int:
    return int(stats.applied + stats.skipped + stats.ignored + stats.waiting + stats.dead_letters)


@pytest.fixture
def handler_store(store_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("USER_LIMITS_STORE", store_url)
    aws_lambda.reset()
    yield store_url
    aws_lambda.reset()


@pytest.mark.parametrize("store_url", KINDS, indirect=True)
def test_every_user_record_gets_one_outcome_and_no_batch_fails(
    handler_store: str, request: pytest.FixtureRequest
) -> None:
    kind = request.node.callspec.params["store_url"]
    examples = itertools.count()

    @settings(
        max_examples=EXAMPLES[kind],
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
    )
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        n = next(examples)
        event, expected = data.draw(lambda_events(n), label="event")
        store = aws_lambda.processor().store
        before = counted(store.stats())  # type: ignore[attr-defined]
        assert aws_lambda.handler(event) == {"batchItemFailures": []}
        assert counted(store.stats()) - before == expected  # type: ignore[attr-defined]

    check()
