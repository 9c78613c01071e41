"""The contract every LimitStore keeps, run against each backend through the real batch path.

The ``store`` / ``store_url`` fixtures (tests/conftest.py) give a fresh, empty store of each kind.
"""

from __future__ import annotations

import base64
import contextlib
import random
from decimal import Decimal

import pytest

from tests.streams import (
    BASE_TIME,
    KINESIS_BASE,
    SHARD,
    STREAM_ARN,
    created,
    encode,
    export,
    noise,
    process,
    progress,
    record,
    records,
    reset,
)
from user_limits.bootstrap import open_store
from user_limits.domain.events import MAX_ID_LENGTH
from user_limits.domain.model import UserLimit
from user_limits.family import UserLimitFamily
from user_limits.stores.base import LimitStore
from user_limits.stores.memory_store import MemoryStore
from user_limits.stores.text import REASON_LIMIT
from user_limits.stream.batch import BatchProcessor
from user_limits.stream.engine import decode_batch, project
from user_limits.stream.records import Checkpoint, Counts, DeadLetter, Outcome, Snapshot, StreamRecord


def stats(store: LimitStore) -> dict[str, int]:
    return store.stats().as_json()


def only(store: LimitStore) -> UserLimit:
    limits = list(store.all_limits())
    assert len(limits) == 1, limits
    return limits[0]


# -- applying


def test_empty_store(store: LimitStore) -> None:
    assert list(store.all_limits()) == []
    assert store.parked_events() == []
    assert store.dead_letters() == []
    assert stats(store) == Counts().as_json()
    assert store.as_of() is None
    assert store.checkpoint(STREAM_ARN, SHARD) is None
    assert store.user_limits("u1") == []
    assert store.user_limit("u1", "L1") is None
    store.ping()


def test_create_progress_reset_are_applied(store: LimitStore) -> None:
    stream = [
        created("L1", 3, value="10000"),
        progress("L1", 6, "200", "0", next_reset=BASE_RESET + 1),
        progress("L1", 8, "50.5", "200"),
        reset("L1", 235, next_reset=BASE_RESET + 99),
    ]
    process(store, records(stream[:3]))
    limit = only(store)
    assert limit.progress == Decimal("250.5")
    assert str(limit.progress) == "250.5"
    assert limit.next_reset_time == BASE_RESET + 1
    assert limit.last_sequence_number == 8
    process(store, records(stream[3:], 3))
    limit = only(store)
    assert str(limit.progress) == "0"
    assert limit.next_reset_time == BASE_RESET + 99
    assert limit.last_sequence_number == 235
    assert limit.created_at == stream[0]["createdAt"]
    assert limit.updated_at == stream[3]["createdAt"]
    # The builders' figures (remainingAmount 0, unusedAmount 100.00) disagree with each change: 3 drifted.
    assert stats(store) == {"applied": 4, "skipped": 0, "ignored": 0, "parked": 0, "deadLettered": 0, "drifted": 3}


BASE_RESET = 1_800_000_000_000


def test_every_created_field_is_stored(store: LimitStore) -> None:
    event = created(
        "L1", 5, user_id="u9", value="9800.00", type_="LOSS", period="CALENDAR_MONTH", status="FUTURE", activeUntil=77
    )
    process(store, records([event]))
    assert export(store) == [
        {
            "userLimitId": "L1",
            "userId": "u9",
            "brandId": "brand-1",
            "type": "LOSS",
            "period": "CALENDAR_MONTH",
            "status": "FUTURE",
            "value": "9800.00",
            "progress": "0",
            "currencyCode": "SEK",
            "activeFrom": event["payload"]["activeFrom"],
            "activeUntil": 77,
            "nextResetTime": event["payload"]["nextResetTime"],
            "createdAt": event["createdAt"],
        }
    ]


def test_absent_optional_fields_come_back_as_none(store: LimitStore) -> None:
    process(store, records([created("L1", 1, next_reset=None)]))
    limit = only(store)
    assert limit.next_reset_time is None
    assert limit.active_until is None


@pytest.mark.parametrize(
    ("value", "amount", "previous", "expected"),
    [
        ("9800.00", "0.10", "12.30", "12.40"),
        ("0.0001", "0.0001", "0", "0.0001"),
        ("12345678901234567890.12", "98765432109876543210.99", "1.01", "98765432109876543212.00"),
        ("100", "-5.5", "10", "4.5"),
    ],
)
def test_decimal_strings_round_trip_exactly(
    store: LimitStore, value: str, amount: str, previous: str, expected: str
) -> None:
    process(store, records([created("L1", 1, value=value), progress("L1", 2, amount, previous)]))
    limit = only(store)
    assert str(limit.value) == value
    assert str(limit.progress) == expected
    assert export(store)[0]["value"] == value


# -- skipping


def test_redelivered_and_late_events_are_skipped(store: LimitStore) -> None:
    stream = [created("L1", 1), progress("L1", 5, "30", "0"), progress("L1", 7, "10", "30")]
    process(store, records(stream))
    before = export(store)
    process(store, records(stream))  # a Lambda retry of the whole batch
    process(store, records([progress("L1", 6, "999", "0"), progress("L1", 7, "999", "0")], 10))  # late copies
    assert export(store) == before
    assert before[0]["progress"] == "40"
    assert stats(store) == {"applied": 3, "skipped": 5, "ignored": 0, "parked": 0, "deadLettered": 0, "drifted": 2}


def test_other_types_are_counted_and_not_stored(store: LimitStore) -> None:
    process(store, records([noise(1), noise(2)]))
    assert list(store.all_limits()) == []
    assert stats(store)["ignored"] == 2


# -- parking


def test_drift_is_counted_once_and_the_last_drift_kept_with_the_limit(store_url: str, store: LimitStore) -> None:
    agreeing = progress("L1", 2, "100", "0", remainingAmount="900.00")
    # The value moved to 2000 upstream through an event type we ignore: 1850 remain there, 850 here.
    hidden = progress("L1", 4, "50", "100", remainingAmount="1850")
    batch = records([created("L1", 1, value="1000"), agreeing, noise(3), hidden, created("L2", 5, user_id="u2")])
    process(store, batch)
    process(store, batch)  # re-delivered: skipped, not counted again
    # A reset whose figures disagree with the other limit (value 100.00, progress 0): 0 unused there.
    process(store, records([reset("L2", 6, next_reset=BASE_RESET, user_id="u2", unusedAmount="0")], 10))
    assert stats(store)["drifted"] == 2
    assert stats(store)["applied"] == 5
    reopened = store if store_url.startswith("memory") else open_store(store_url)
    drifted = reopened.drifted_limits()
    assert [
        (x.user_limit_id, x.drift_sequence_number, x.drift_event_type, x.drift_figure, x.drift_ours, x.drift_theirs)
        for x in drifted
    ] == [
        ("L1", 4, "USER_LIMIT_PROGRESS_CHANGED", "remainingAmount", Decimal("850"), Decimal("1850")),
        ("L2", 6, "USER_LIMIT_RESET", "unusedAmount", Decimal("100.00"), Decimal("0")),
    ]
    assert [x.drift_at for x in drifted] == [hidden["createdAt"], BASE_TIME + 6 * 1000]
    # The decimals keep their text, as value and progress do; the read side keeps the drift too.
    assert str(drifted[0].drift_theirs) == "1850" and str(drifted[1].drift_ours) == "100.00"
    assert reopened.user_limit("u1", "L1") == drifted[0]
    assert [limit.drift_sequence_number for limit in reopened.all_limits()] == [4, 6]
    # Reported, never corrected: the figures are the rules' own.
    assert [(x["userLimitId"], x["value"], x["progress"]) for x in export(reopened)] == [
        ("L1", "1000", "150"),
        ("L2", "100.00", "0"),
    ]
    # An agreeing event later keeps the last drift; the stats stay.
    process(store, records([progress("L1", 7, "1", "150", remainingAmount="849")], 20))
    assert [(x.user_limit_id, x.drift_sequence_number) for x in reopened.drifted_limits()] == [("L1", 4), ("L2", 6)]
    assert stats(reopened)["drifted"] == 2
    if reopened is not store:
        reopened.close()


def test_a_producer_figure_of_a_hundred_thousand_digits_drifts_and_fits(store: LimitStore) -> None:
    huge = "9" * 100_000  # the record is 100 kB; the limit keeps 50 digits of it
    process(store, records([created("L1", 1), progress("L1", 2, "1", "0", remainingAmount=huge)]))
    assert stats(store)["drifted"] == 1
    [limit] = store.drifted_limits()
    assert limit.drift_theirs == Decimal("1E+100000")
    assert str(limit.progress) == "1"


def test_a_store_without_drift_lists_none(store: LimitStore) -> None:
    process(store, records([created("L1", 1), progress("L1", 2, "1", "0", remainingAmount="99")]))
    assert store.drifted_limits() == []
    assert only(store).drift_sequence_number is None


def test_orphans_are_parked_whole_and_drained_on_creation(store: LimitStore) -> None:
    orphan_a = encode(progress("L1", 5, "20", "0"))
    orphan_b = encode(reset("L1", 4, next_reset=BASE_RESET))
    process(store, [record(orphan_a, 0)])
    process(store, [record(orphan_b, 1), record(orphan_a, 2)])  # the same event parked twice is kept once
    parked = store.parked_events()
    assert [(event.key, event.position, event.data) for event in parked] == [("L1", 4, orphan_b), ("L1", 5, orphan_a)]
    assert stats(store)["parked"] == 2
    assert list(store.all_limits()) == []

    process(store, [record(created("L1", 2), 3)])
    limit = only(store)
    # Applied in sequence order: the reset (4), then the progress (5).
    assert str(limit.progress) == "20"
    assert limit.next_reset_time == BASE_RESET
    assert limit.last_sequence_number == 5
    assert store.parked_events() == []
    # The reset's figures (100.00 unused, 0 reset) agree; the progress change's remainingAmount does not.
    assert stats(store) == {"applied": 3, "skipped": 1, "ignored": 0, "parked": 0, "deadLettered": 0, "drifted": 1}


def test_parked_events_older_than_the_creation_are_dropped_on_drain(store: LimitStore) -> None:
    process(store, records([progress("L1", 2, "20", "0")]))
    process(store, records([created("L1", 3)], 1))
    assert str(only(store).progress) == "0"
    assert store.parked_events() == []
    assert stats(store) == {"applied": 1, "skipped": 1, "ignored": 0, "parked": 0, "deadLettered": 0, "drifted": 0}


def test_parked_and_created_in_one_batch(store: LimitStore) -> None:
    process(store, records([progress("L1", 3, "7", "1"), progress("L2", 9, "1", "0"), created("L1", 1)]))
    assert str(store.user_limit("u1", "L1").progress) == "8"  # type: ignore[union-attr]
    assert [(event.key, event.position) for event in store.parked_events()] == [("L2", 9)]
    assert stats(store)["applied"] == 2
    assert stats(store)["parked"] == 1


# -- dead letters


def test_dead_letters_keep_bytes_reason_and_coordinates_once(store: LimitStore) -> None:
    poison = b"\xff\xfenot json"
    bad_payload = encode(progress("L1", 2, "Infinity", "0"))
    batch = [record(poison, 0, sub=3), record(bad_payload, 1)]
    process(store, batch)
    process(store, batch)  # re-delivered with the same coordinates: kept once
    letters = sorted(store.dead_letters(), key=lambda letter: letter.data)
    assert [letter.data for letter in letters] == sorted([poison, bad_payload])
    by_data = {letter.data: letter for letter in letters}
    first = by_data[poison]
    assert first.sequence_number == str(KINESIS_BASE)
    assert first.sub_sequence_number == 3
    assert first.partition_key == batch[0].partition_key
    assert first.arrival_ms == batch[0].arrival_ms
    assert first.stream_arn == STREAM_ARN
    assert first.shard_id == SHARD
    assert "UTF-8" in first.reason
    assert "amount" in by_data[bad_payload].reason
    assert stats(store) == {"applied": 0, "skipped": 0, "ignored": 0, "parked": 0, "deadLettered": 2, "drifted": 0}
    # The same bytes at another position of the stream are another record.
    process(store, [record(poison, 7)])
    assert stats(store)["deadLettered"] == 3
    assert list(store.all_limits()) == []


def test_dead_letters_without_coordinates_are_kept_once_by_content(store: LimitStore) -> None:
    process(store, [record(b"{}"), record(b"{}"), record(b"[1]")])
    process(store, [record(b"{}")])
    assert sorted(letter.data for letter in store.dead_letters()) == [b"[1]", b"{}"]
    assert all(isinstance(letter, DeadLetter) and letter.sequence_number is None for letter in store.dead_letters())


def test_poison_changes_no_limit(store: LimitStore) -> None:
    process(store, records([created("L1", 1), progress("L1", 2, "5", "0")]))
    before = export(store)
    bad = progress("L1", 3, "5", "0")
    bad["payload"]["amount"] = "NaN"
    process(store, records([bad, b"\x00", created("L1", 9, type_="NOPE")], 5))
    assert export(store) == before


# -- checkpoints


def test_checkpoints_only_move_forward(store: LimitStore) -> None:
    def at(seq: int, sub: int = 0, shard: str = SHARD) -> Checkpoint:
        return Checkpoint(STREAM_ARN, shard, str(KINESIS_BASE + seq), sub)

    noise_batch = records([noise(1)], None)
    process(store, noise_batch, at(10))  # a batch of ignored records still moves the checkpoint
    assert store.checkpoint(STREAM_ARN, SHARD) == at(10)
    process(store, noise_batch, at(5))
    assert store.checkpoint(STREAM_ARN, SHARD) == at(10)
    process(store, noise_batch, at(10, 2))
    assert store.checkpoint(STREAM_ARN, SHARD) == at(10, 2)
    process(store, noise_batch, at(10, 1))
    assert store.checkpoint(STREAM_ARN, SHARD) == at(10, 2)
    # Compared as numbers, not text: "9…" sorts after "4959…" as text but is smaller.
    process(store, noise_batch, Checkpoint(STREAM_ARN, SHARD, "9" * 20, 0))
    assert store.checkpoint(STREAM_ARN, SHARD) == at(10, 2)
    process(store, noise_batch, at(11))
    assert store.checkpoint(STREAM_ARN, SHARD) == at(11)
    # Shards and streams are independent.
    other = "shardId-000000000001"
    process(store, noise_batch, at(1, shard=other))
    assert store.checkpoint(STREAM_ARN, other) == at(1, shard=other)
    assert store.checkpoint(STREAM_ARN, SHARD) == at(11)
    assert store.checkpoint("arn:other", SHARD) is None


# -- reading


def test_all_limits_sorted_and_per_user_reads(store: LimitStore) -> None:
    # Mixed case and digits, as real ids: sorted by code point, not by a locale's collation.
    ids = ["jIcDgFDxkhM2qRWFrwVn", "LKMgxoE0yFgH6F6iShEu", "0w2KzcVUkZcb6n2z4DcE", "a", "B", "_x", "Z9"]
    owners = {limit_id: ("u1" if n % 2 else "u2") for n, limit_id in enumerate(ids)}
    process(store, records([created(limit_id, n + 1, owners[limit_id]) for n, limit_id in enumerate(ids)]))
    assert [limit.user_limit_id for limit in store.all_limits()] == sorted(ids)
    for user in ("u1", "u2"):
        mine = store.user_limits(user)
        assert sorted(limit.user_limit_id for limit in mine) == sorted(i for i in ids if owners[i] == user)
        assert all(limit.user_id == user for limit in mine)
    assert store.user_limits("nobody") == []
    owner, stranger = owners["B"], ("u2" if owners["B"] == "u1" else "u1")
    assert store.user_limit(owner, "B") == next(limit for limit in store.all_limits() if limit.user_limit_id == "B")
    assert store.user_limit(stranger, "B") is None  # another user's limit
    assert store.user_limit(owner, "missing") is None


def test_as_of_is_the_newest_applied_event_time(store: LimitStore) -> None:
    process(store, records([created("L1", 5), created("L2", 3, "u2")]))
    assert store.as_of() == created("L1", 5)["createdAt"]
    process(store, records([progress("L2", 4, "1", "0", "u2")], 2))
    assert store.as_of() == created("L1", 5)["createdAt"]  # an older event time does not lower it
    process(store, records([progress("L1", 9, "1", "0")], 3))
    assert store.as_of() == progress("L1", 9, "1", "0")["createdAt"]


# -- atomicity and conditional writes


def test_a_failing_projection_commits_nothing(store: LimitStore) -> None:
    process(store, records([created("L1", 1)]))
    before = (export(store), stats(store))

    def boom(snapshot: Snapshot[UserLimit]) -> Outcome[UserLimit]:
        raise RuntimeError("projection failed")

    with pytest.raises(RuntimeError):
        store.apply_batch({"L1": "u1"}, boom)
    assert (export(store), stats(store)) == before


def test_an_older_outcome_cannot_move_a_limit_backwards(store: LimitStore) -> None:
    family = UserLimitFamily()
    process(store, records([created("L1", 1)]))
    stale = store.user_limit("u1", "L1")
    assert stale is not None
    # A second writer computed its outcome from the state at sequence 1 ...
    late = project(family, decode_batch(family, records([progress("L1", 5, "50", "0")], 10)), Snapshot({"L1": stale}))
    # ... while the first one moved the limit on to sequence 7.
    process(store, records([progress("L1", 7, "70", "0")], 20))
    # A store may refuse the stale write outright; it must not apply it.
    with contextlib.suppress(Exception):
        store.apply_batch({"L1": "u1"}, lambda snapshot: late)
    limit = store.user_limit("u1", "L1")
    assert limit is not None
    assert (limit.last_sequence_number, str(limit.progress)) == (7, "70")


def test_a_refused_stale_outcome_leaves_later_batches_on_the_stored_state(store: LimitStore) -> None:
    family = UserLimitFamily()
    process(store, records([created("L1", 1)]))
    stale = store.user_limit("u1", "L1")
    late = project(family, decode_batch(family, records([progress("L1", 5, "50", "0")], 10)), Snapshot({"L1": stale}))
    process(store, records([progress("L1", 7, "70", "0")], 20))
    with contextlib.suppress(Exception):
        store.apply_batch({"L1": "u1"}, lambda snapshot: late)
    # Stored at 7: an event at 6 is a late copy, whatever the refused outcome said.
    process(store, records([progress("L1", 6, "60", "0")], 30))
    assert (export(store)[0]["progress"], stats(store)["skipped"]) == ("70", 1)


def test_two_processors_on_one_store_see_each_others_writes(store_url: str, store: LimitStore) -> None:
    other = store if store_url.startswith("memory") else open_store(store_url)
    first, second = BatchProcessor(UserLimitFamily(), store), BatchProcessor(UserLimitFamily(), other)
    stream = records(
        [
            progress("L1", 4, "4", "0"),
            created("L1", 1),
            progress("L1", 3, "3", "0"),
            progress("L1", 4, "4", "0"),
            progress("L1", 6, "6", "4"),
            progress("L1", 5, "999", "0"),
        ]
    )
    for n, item in enumerate(stream):
        result = (first if n % 2 else second).process([item])
        assert result.error is None
    for handle in (store, other):
        assert export(handle)[0]["progress"] == "10"
        assert stats(handle) == {
            "applied": 3, "skipped": 3, "ignored": 0, "parked": 0, "deadLettered": 0, "drifted": 2
        }  # fmt: skip
    if other is not store:
        other.close()


def test_two_writers_taking_turns_end_as_one_writer_would(store_url: str, store: LimitStore) -> None:
    """Two handles on one store (two connections), each projecting batches the other changed in
    between: whatever a store keeps between batches (SQLite's row cache), each batch must start
    from what the other committed. One memory store fed the same batches in the same order is the
    answer, limits, parked events and counters alike."""
    from user_limits.testing.synthetic import generate

    other = store if store_url.startswith("memory") else open_store(store_url)
    expected = MemoryStore()
    # Few players: the two writers keep touching the same limits, and the same parked events.
    stream = [StreamRecord(item.data) for item in generate(900, users=6, seed=11, orphan_rate=0.03)]
    rng = random.Random(5)
    start = 0
    try:
        while start < len(stream):
            batch = stream[start : start + rng.randint(1, 40)]
            start += len(batch)
            process(rng.choice((store, other)), batch)
            process(expected, batch)
        for handle in (store, other):
            assert export(handle) == export(expected)
            assert handle.parked_events() == expected.parked_events()
            assert stats(handle) == stats(expected)
    finally:
        if other is not store:
            other.close()


def test_reopened_store_sees_the_same_data(store_url: str, store: LimitStore) -> None:
    if store_url.startswith("memory"):
        pytest.skip("a memory store lives and dies with its process")
    stream = [created("L1", 1, value="9800.00"), progress("L1", 2, "0.10", "1.00"), progress("L2", 3, "1", "0")]
    batch = [*records(stream), record(b"\xffbad", 3)]
    process(store, batch, Checkpoint(STREAM_ARN, SHARD, str(KINESIS_BASE + 3), 0))

    def view(handle: LimitStore) -> object:
        return (
            export(handle),
            handle.parked_events(),
            handle.dead_letters(),
            stats(handle),
            handle.as_of(),
            handle.checkpoint(STREAM_ARN, SHARD),
            handle.user_limits("u1"),
        )

    before = view(store)
    store.close()
    reopened = open_store(store_url)
    try:
        assert view(reopened) == before
        assert export(reopened)[0]["progress"] == "1.10"
    finally:
        reopened.close()


def test_a_limit_created_again_for_another_user_moves_to_that_user(store: LimitStore) -> None:
    # Rule 4 takes every field from the newer creation, userId included.
    process(store, records([created("L1", 1, "u1"), progress("L1", 2, "5", "0", "u1")]))
    process(store, records([created("L1", 3, "u2", value="7")], 2))
    assert store.user_limits("u1") == []
    assert store.user_limit("u1", "L1") is None
    moved = store.user_limit("u2", "L1")
    assert moved is not None and (str(moved.value), str(moved.progress)) == ("7", "0")
    assert [limit.user_limit_id for limit in store.user_limits("u2")] == ["L1"]
    assert [limit.user_id for limit in store.all_limits()] == ["u2"]


def test_odd_strings_round_trip_and_nul_is_never_a_failed_batch(store: LimitStore) -> None:
    odd = "a b é 😀 \\ ' \" %_ \t"
    process(store, records([created(odd, 1, user_id=odd, brandId=odd)]))
    [limit] = store.user_limits(odd)
    assert (limit.user_limit_id, limit.user_id, limit.brand_id) == (odd, odd, odd)
    assert store.user_limit(odd, odd) == limit
    # JSON allows "\u0000" in any string, which no store's text can hold: such records are
    # dead-lettered, and a reason quoting the bad value must be storable too.
    with_nul = [created("a\x00b", 2), created("L2", 3, status="\x00"), created("L3", 4, period="\x00DAY")]
    process(store, records(with_nul, 5))
    assert sorted(letter.data for letter in store.dead_letters()) == sorted(encode(e) for e in with_nul)
    assert [limit.user_limit_id for limit in store.all_limits()] == [odd]


def test_the_longest_ids_round_trip_and_longer_ones_are_dead_lettered(store: LimitStore) -> None:
    longest = "😀" * MAX_ID_LENGTH  # 800 bytes of UTF-8: the most a key may take
    process(store, records([created(longest, 1, user_id=longest), progress(longest, 2, "1", "0", longest)]))
    limit = store.user_limit(longest, longest)
    assert limit is not None and str(limit.progress) == "1"
    too_long = "x" * (MAX_ID_LENGTH + 1)
    process(store, records([created(too_long, 3), created("L1", 4, user_id=too_long)], 2))
    assert store.stats().dead_letters == 2
    assert [limit.user_limit_id for limit in store.all_limits()] == [longest]


def test_records_as_large_as_kinesis_allows_are_parked_and_dead_lettered(store: LimitStore) -> None:
    # A Kinesis record carries up to 1 MiB; extra fields are tolerated, so an orphan may be that big.
    pad = "p" * 1_000_000
    orphan = encode(progress("L1", 5, "1", "0", note=pad))
    poison = b"\xff" + pad.encode()
    process(store, [record(orphan, 0), record(poison, 1)])
    assert [event.data for event in store.parked_events()] == [orphan]
    assert [letter.data for letter in store.dead_letters()] == [poison]
    process(store, records([created("L1", 1)], 2))
    limit = store.user_limit("u1", "L1")
    assert limit is not None and str(limit.progress) == "1"


# -- one read model, whatever the store


def test_empty_ids_are_ids_like_any_other(store: LimitStore) -> None:
    process(store, records([created("", 1, user_id=""), created("L1", 2, user_id=""), progress("", 3, "1", "0", "")]))
    assert [(limit["userLimitId"], limit["userId"], limit["progress"]) for limit in export(store)] == [
        ("", "", "1"),
        ("L1", "", "0"),
    ]
    assert [limit.user_limit_id for limit in store.user_limits("")] == ["", "L1"]
    mine = store.user_limit("", "")
    assert mine is not None and mine.last_sequence_number == 3


# The canonical text of an amount is str() of the Decimal it decodes to: the exponent form, the
# sign of a zero and trailing zeros are kept as decoded, on every store.
DECIMAL_TEXTS = ["1e5", "1E+5", "-0", "-0.00", "0E-7", "5E-8", "1.50", "12345678901234567890.12", "2.5e-3"]


@pytest.mark.parametrize("text", DECIMAL_TEXTS)
def test_a_decimal_keeps_the_text_of_its_decoded_value(store: LimitStore, text: str) -> None:
    process(store, records([created("L1", 1, value=text), created("L2", 2), progress("L2", 3, text, "-0")]))
    memory = MemoryStore()
    process(memory, records([created("L1", 1, value=text), created("L2", 2), progress("L2", 3, text, "-0")]))
    assert export(store)[0]["value"] == str(Decimal(text))
    assert export(store) == export(memory)
    assert [str(limit.progress) for limit in store.user_limits("u1")] == [
        str(limit.progress) for limit in memory.user_limits("u1")
    ]


def test_an_orphan_carrying_another_user_id_is_applied_when_its_limit_is_created(store: LimitStore) -> None:
    process(store, records([progress("L1", 5, "7", "0", user_id="u2")]))
    process(store, records([created("L1", 1, user_id="u1")], 1))
    limit = store.user_limit("u1", "L1")
    assert limit is not None and (str(limit.progress), limit.last_sequence_number) == ("7", 5)
    assert store.parked_events() == []
    assert stats(store) == {"applied": 2, "skipped": 0, "ignored": 0, "parked": 0, "deadLettered": 0, "drifted": 1}


# -- whatever a record holds, it fits


NASTY_TEXTS = ["a\x00b", "\x00", "\ud800x", "x\udfff", "\x1b", '\x1b"not json', "é😀\x00"]


def test_any_text_in_a_dead_letter_round_trips_exactly(store: LimitStore) -> None:
    # A Lambda event's fields are whatever JSON held: NUL, lone surrogates... none may fail the batch.
    letters = [
        StreamRecord(b"\xff" + bytes([n]), str(KINESIS_BASE + n), n, text, BASE_TIME, text + STREAM_ARN, text)
        for n, text in enumerate(NASTY_TEXTS)
    ]
    batch = [*letters, StreamRecord(b"\xffno coordinates")]
    process(store, batch)
    process(store, batch)  # re-delivered: kept once
    memory = MemoryStore()
    process(memory, batch)
    assert sorted(store.dead_letters()) == sorted(memory.dead_letters())
    assert sorted(
        (letter.partition_key, letter.shard_id) for letter in store.dead_letters() if letter.shard_id
    ) == sorted((text, text) for text in NASTY_TEXTS)
    assert stats(store)["deadLettered"] == len(batch)


def test_checkpoints_of_any_shard_text_round_trip(store: LimitStore) -> None:
    for n, text in enumerate(NASTY_TEXTS):
        marker = Checkpoint(text, text + SHARD, str(KINESIS_BASE + n), n)
        process(store, records([noise(1)], None), marker)
        assert store.checkpoint(text, text + SHARD) == marker


def test_a_reason_quoting_a_huge_value_is_kept_bounded(store: LimitStore) -> None:
    huge = created("L1", 1, type_="x" * 450_000)  # the decoder's reason quotes the bad value
    process(store, records([huge, created("L2", 2)]))
    [letter] = store.dead_letters()
    assert letter.data == encode(huge)
    assert len(letter.reason) <= REASON_LIMIT
    assert letter.reason.startswith("invalid USER_LIMIT_CREATED payload") and "characters left out" in letter.reason
    memory = MemoryStore()
    process(memory, records([huge]))
    assert [letter.reason for letter in memory.dead_letters()] == [letter.reason]  # the same on every store
    assert [limit.user_limit_id for limit in store.all_limits()] == ["L2"]


@pytest.mark.parametrize("brand", ["b" * 450_000, base64.b64encode(random.Random(7).randbytes(340_000)).decode()])
def test_a_created_with_a_huge_brand_is_applied_and_read_back_exactly(store: LimitStore, brand: str) -> None:
    process(store, records([created("L1", 1, brandId=brand), progress("L1", 2, "3", "0", brandId="b")]))
    process(store, records([progress("L1", 3, "4", "3")], 2))
    [limit] = store.user_limits("u1")
    assert (limit.brand_id, str(limit.progress)) == (brand, "7")
    assert store.user_limit("u1", "L1") == limit == only(store)
    # Created again for another user: it moves, big fields and all.
    process(store, records([created("L1", 4, user_id="u2", brandId=brand[::-1], currencyCode=brand)], 3))
    assert store.user_limits("u1") == []
    moved = store.user_limit("u2", "L1")
    assert moved is not None and (moved.brand_id, moved.currency_code) == (brand[::-1], brand)


# -- hundreds of events parked for one limit


@pytest.mark.parametrize("count", [160, 500, 1000])
@pytest.mark.parametrize("arrival", ["one batch", "across batches", "with the creation"])
def test_hundreds_of_events_parked_for_one_limit_drain_on_its_creation(
    store: LimitStore, count: int, arrival: str
) -> None:
    orphans = records([progress("L1", n + 2, "1", str(n)) for n in range(count)])
    creation = record(created("L1", 1), count)
    if arrival == "one batch":
        process(store, orphans)
        process(store, [creation])
    elif arrival == "across batches":
        for start in range(0, count, 150):
            process(store, orphans[start : start + 150])
        assert stats(store)["parked"] == count
        process(store, [creation])
    else:  # all in one batch of up to 1,000 records
        process(store, [*orphans[: count - 1], creation])
        process(store, orphans[count - 1 :])
    limit = store.user_limit("u1", "L1")
    assert limit is not None and (str(limit.progress), limit.last_sequence_number) == (str(count), count + 1)
    assert store.parked_events() == []
    # remainingAmount "0" agrees only with the 100th change (100.00 - 100).
    assert stats(store) == {
        "applied": count + 1, "skipped": 0, "ignored": 0, "parked": 0, "deadLettered": 0, "drifted": count - 1
    }  # fmt: skip
