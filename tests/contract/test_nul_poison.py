"""A NUL character in a handled payload is valid JSON but no store's text column can hold it:
it must be dead-lettered (rule 1), on every store, rather than fail the batch on every retry."""

from __future__ import annotations

import json

from user_limits.family import UserLimitFamily
from user_limits.stores.base import LimitStore
from user_limits.stream.batch import BatchProcessor
from user_limits.stream.records import StreamRecord


def _created(limit_id: str, sequence: int) -> bytes:
    payload = {
        "activeFrom": 1,
        "brandId": "b",
        "currencyCode": "SEK",
        "period": "DAY",
        "status": "ACTIVE",
        "type": "DEPOSIT",
        "userId": "u1",
        "userLimitId": limit_id,
        "value": "100",
    }
    envelope = {
        "aggregateId": "u1",
        "context": {},
        "createdAt": 1000 + sequence,
        "eventId": f"e{sequence}",
        "payload": payload,
        "sequenceNumber": sequence,
        "source": "limitUser",
        "type": "USER_LIMIT_CREATED",
    }
    return json.dumps(envelope).encode()


def test_a_nul_in_a_handled_payload_is_dead_lettered_and_the_batch_commits(store: LimitStore) -> None:
    records = [
        StreamRecord(_created("ok-1", 1)),
        StreamRecord(_created("bad\u0000id", 2)),
        StreamRecord(_created("ok-2", 3)),
    ]
    result = BatchProcessor(UserLimitFamily(), store).process(records)

    assert result.error is None and result.first_uncommitted is None
    assert [limit.user_limit_id for limit in store.all_limits()] == ["ok-1", "ok-2"]
    [letter] = store.dead_letters()
    assert "NUL" in letter.reason
    assert letter.data == records[1].data


def test_an_escaped_backslash_before_u0000_is_ordinary_text() -> None:
    # The JSON text "a\\u0000b" is the six characters a\u0000b, not a NUL.
    data = _created("a\\u0000b", 1)
    event = UserLimitFamily().decode(data)
    assert event is not None and event.payload.user_limit_id == "a\\u0000b"


def test_a_poison_record_whose_coordinates_hold_nul_is_dead_lettered_exactly(store: LimitStore) -> None:
    # A Lambda event is JSON: its partitionKey (and any other field) may hold "\u0000", which no
    # PostgreSQL text can: the dead letter keeps it exactly all the same, and the batch commits.
    poison = StreamRecord(b"\xff poison", "4959", 0, "key\x00with nul", 1_700_000_000_000, "arn\x00", "shard\x00")
    records = [StreamRecord(_created("ok-1", 1)), poison, StreamRecord(_created("ok-2", 3))]
    result = BatchProcessor(UserLimitFamily(), store).process(records)
    BatchProcessor(UserLimitFamily(), store).process([poison])  # re-delivered: kept once

    assert result.error is None and result.first_uncommitted is None
    assert [limit.user_limit_id for limit in store.all_limits()] == ["ok-1", "ok-2"]
    [letter] = store.dead_letters()
    assert letter[1:] == tuple(poison)
