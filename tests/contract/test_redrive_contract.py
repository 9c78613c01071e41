"""Dead letters back in, on every store: what now decodes leaves the dead letters in the commit of
its effect; what still fails stays once, with today's reason; selection, idempotence, stream order.

Records are dead-lettered by the family of an older release that does not know the ``WEEK``
period (:mod:`tests.redrive_family`), then redriven with today's family.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import pytest

from tests.redrive_family import FamilyBeforeWeek
from tests.streams import BASE_TIME, SHARD, STREAM_ARN, checkpoint_of, created, encode, export, progress, record, reset
from user_limits.family import UserLimitFamily
from user_limits.operations.redrive import RedriveCounts, redrive_all, select
from user_limits.stores.base import LimitStore
from user_limits.stores.memory_store import MemoryStore
from user_limits.stream.batch import BatchProcessor
from user_limits.stream.records import DeadLetter, StreamRecord
from user_limits.stream.redrive import letter_id


def process_before_week(store: LimitStore, batch: Sequence[StreamRecord]) -> None:
    """A batch as the older release committed it, with a checkpoint."""
    result = BatchProcessor(FamilyBeforeWeek(), store).process(batch, checkpoint_of(batch[-1]))
    assert result.error is None, result.error


def redrive_every(store: LimitStore, reason: str | None = None, ids: Sequence[str] = ()) -> RedriveCounts:
    return redrive_all(store, select(store.dead_letters(), reason, ids), family=UserLimitFamily())


def stats(store: LimitStore) -> dict[str, int]:
    return store.stats().as_json()


def test_a_record_dead_lettered_for_an_unknown_period_is_applied_once_the_family_knows_it(store: LimitStore) -> None:
    weekly = created("L1", 3, period="WEEK", value="500")
    before = [record(weekly, 1), record(progress("L1", 6, "20", "0"), 2)]
    process_before_week(store, before)
    (letter,) = store.dead_letters()
    assert "'WEEK'" in letter.reason and "`$.period`" in letter.reason
    assert stats(store) == {"applied": 0, "skipped": 0, "ignored": 0, "parked": 1, "deadLettered": 1, "drifted": 0}
    checkpoint = store.checkpoint(STREAM_ARN, SHARD)

    counts = redrive_every(store)

    assert counts.as_json() == {
        "redriven": 1,
        "applied": 2,  # the creation, and the progress change parked for it
        "skipped": 0,
        "ignored": 0,
        "parked": 0,
        "stillDead": 0,
        "deadLettered": 0,
    }
    assert store.dead_letters() == []
    assert store.parked_events() == []
    # The progress change says 0 remains of 500 after 20: the builders' fixed figure, one drift.
    assert stats(store) == {"applied": 2, "skipped": 0, "ignored": 0, "parked": 0, "deadLettered": 0, "drifted": 1}
    (limit,) = store.all_limits()
    assert (limit.period, limit.progress, limit.last_sequence_number) == ("WEEK", Decimal("20"), 6)
    # A redrive is no position of the live stream.
    assert store.checkpoint(STREAM_ARN, SHARD) == checkpoint


def test_what_still_fails_stays_once_with_todays_reason(store: LimitStore) -> None:
    # Refused by the older release for its period, and by today's for its amount.
    both = record(created("L2", 4, period="WEEK", value="1_000"), 1)
    process_before_week(store, [both])
    (old,) = store.dead_letters()
    assert "`$.period`" in old.reason

    counts = redrive_every(store)

    assert (counts.redriven, counts.still_dead, counts.applied) == (1, 1, 0)
    (renewed,) = store.dead_letters()
    assert renewed.id == old.id
    assert renewed == old._replace(reason=renewed.reason)
    assert "`value` is not a decimal" in renewed.reason
    assert stats(store)["deadLettered"] == 1
    assert list(store.all_limits()) == []


def test_a_redrive_twice_is_a_redrive_once(store: LimitStore) -> None:
    stream = [
        record(created("L1", 3, period="WEEK"), 1),
        record(created("L2", 4, period="WEEK", value="1_000"), 2),
        record(b"{not json", 3),
    ]
    process_before_week(store, stream)
    first = redrive_every(store)
    after_first = (export(store), store.dead_letters(), stats(store))
    second = redrive_every(store)

    assert (first.redriven, first.applied, first.still_dead) == (3, 1, 2)
    assert (second.redriven, second.applied, second.skipped, second.still_dead) == (2, 0, 0, 2)
    assert (export(store), store.dead_letters(), stats(store)) == after_first
    assert stats(store)["applied"] == 1  # never counted twice


def test_a_redrive_selects_by_id_and_by_reason(store: LimitStore) -> None:
    stream = [
        record(created("L1", 3, period="WEEK"), 1),
        record(created("L2", 4, period="WEEK"), 2),
        record(b"{not json", 3),
    ]
    process_before_week(store, stream)
    by_data = {letter.data: letter for letter in store.dead_letters()}
    first, second, junk = (by_data[one.data] for one in stream)

    assert redrive_every(store, ids=[second.id]).redriven == 1
    assert [limit.user_limit_id for limit in store.all_limits()] == ["L2"]
    assert store.dead_letters() == [first, junk]

    # The reason's text, anywhere in it: only the letter refused for its period.
    assert redrive_every(store, reason="$.period").redriven == 1
    assert [limit.user_limit_id for limit in store.all_limits()] == ["L1", "L2"]
    assert store.dead_letters() == [junk]  # untouched, its reason too
    assert redrive_every(store, reason="no such reason").redriven == 0
    assert store.dead_letters() == [junk]


def test_dead_letters_of_one_limit_are_redriven_in_stream_order(store: LimitStore) -> None:
    """Kinesis sequence numbers compared as integers: 57 digits after 56, whatever the order they
    were kept in (here the later first) and however their texts sort."""
    process_before_week(store, [record(created("L1", 3), 1)])
    earlier, later = 10**56 - 1, 10**56  # as texts, "1000…" sorts first; as floats, they are equal
    resets = {
        earlier: reset("L1", 6, BASE_TIME + 6, period="WEEK"),
        later: reset("L1", 8, BASE_TIME + 8, period="WEEK"),
    }
    for sequence in (later, earlier):
        process_before_week(store, [_at(resets[sequence], sequence)])
    assert [letter.sequence_number for letter in store.dead_letters()] == [str(later), str(earlier)]

    counts = redrive_every(store)

    # In the kept order the later reset would apply first and the earlier one be skipped.
    assert (counts.applied, counts.skipped) == (2, 0)
    (limit,) = store.all_limits()
    assert (limit.last_sequence_number, limit.next_reset_time) == (8, BASE_TIME + 8)
    assert store.dead_letters() == []


def test_many_dead_letters_of_one_limit_are_redriven(store: LimitStore) -> None:
    """More than one DynamoDB transaction holds: the batches are cut so that each limit's dead
    letters leave with its write."""
    stream = [record(created("L1", 1, period="WEEK"), 0)]
    stream += [record(reset("L1", 1 + n, BASE_TIME + n, period="WEEK"), n) for n in range(1, 121)]
    process_before_week(store, stream)
    assert stats(store)["deadLettered"] == 121

    counts = redrive_every(store)

    assert (counts.redriven, counts.applied, counts.skipped, counts.still_dead) == (121, 121, 0, 0)
    assert store.dead_letters() == []
    (limit,) = store.all_limits()
    assert limit.last_sequence_number == 121


def test_a_dry_run_changes_nothing(store: LimitStore) -> None:
    process_before_week(store, [record(created("L1", 3, period="WEEK"), 1), record(b"{not json", 2)])
    held = (store.dead_letters(), stats(store))
    counts = redrive_all(store, select(store.dead_letters(), None, ()), dry_run=True)
    assert (counts.redriven, counts.applied, counts.still_dead) == (2, 1, 1)
    assert (store.dead_letters(), stats(store)) == held
    assert list(store.all_limits()) == []


def test_a_dead_letter_leaves_only_with_the_effect_of_its_record(
    store: LimitStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store fails inside the commit that holds both: the dead letter stays, and no limit."""
    if isinstance(store, MemoryStore):
        pytest.skip("the memory store's commit is dict updates under a lock: nothing to fail part-way")
    process_before_week(store, [record(created("L1", 3, period="WEEK"), 1)])
    held = store.dead_letters()
    _fail_the_commit_of_the_dead_letter(store, monkeypatch)
    with pytest.raises(Exception, match="injected"):
        redrive_all(store, held, family=UserLimitFamily())
    monkeypatch.undo()
    assert store.dead_letters() == held
    assert list(store.all_limits()) == []
    assert redrive_every(store).applied == 1
    assert store.dead_letters() == []


def _fail_the_commit_of_the_dead_letter(store: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """SQL: the last statement of the transaction fails. DynamoDB: the transaction that deletes
    the dead letter fails (a limit put in an earlier one would be committed)."""
    if hasattr(store, "_add_counts"):

        def fail(*args: object) -> None:
            raise RuntimeError("injected: the last statement of the commit fails")

        monkeypatch.setattr(store, "_add_counts", fail)
        return
    client = store._client
    transact = client.transact_write_items

    def failing(**request: Any) -> Any:
        if any(
            action.get("Delete", {}).get("Key", {}).get("PK") == {"S": "DEADLETTER"}
            for action in request["TransactItems"]
        ):
            raise RuntimeError("injected: the transaction deleting the dead letter fails")
        return transact(**request)

    monkeypatch.setattr(client, "transact_write_items", failing)


def _at(envelope: dict[str, Any], sequence: int) -> StreamRecord:
    return StreamRecord(encode(envelope), str(sequence), None, "p", BASE_TIME, STREAM_ARN, SHARD)


def test_a_letter_id_is_the_id_it_was_kept_under() -> None:
    kept = DeadLetter("reason", b"x", "123", 4, "p", 5, STREAM_ARN, SHARD)
    assert letter_id(StreamRecord(*kept[1:])) == kept.id
