"""The stream engine's rules on ``decode_batch`` and ``project``, without a store:
dead letters and ignored types (1, 2), skipping by sequence number (3), parking and draining (7)."""

from __future__ import annotations

from typing import Any

from tests.streams import created, encode, noise, progress, record, records, reset
from user_limits.domain.events import UserLimitEvent
from user_limits.domain.model import UserLimit
from user_limits.domain.projection import apply
from user_limits.family import UserLimitFamily
from user_limits.operations.snapshots.family import ImportFamily, snapshot_record
from user_limits.operations.snapshots.format import snapshot_line
from user_limits.stream.engine import decode_batch, project
from user_limits.stream.records import DeadLetter, Outcome, ParkedEvent, Snapshot, StreamRecord

family = UserLimitFamily()


def run(batch: list[StreamRecord], snapshot: Snapshot[UserLimit] | None = None) -> Outcome[UserLimit]:
    return project(family, decode_batch(family, batch), snapshot or Snapshot())


def limit(*envelopes: dict[str, Any]) -> UserLimit:
    state: UserLimit | None = None
    for envelope in envelopes:
        event = family.decode(encode(envelope))
        assert isinstance(event, UserLimitEvent)
        state = apply(state, event)
    assert state is not None
    return state


def parked(envelope: dict[str, Any]) -> ParkedEvent:
    return ParkedEvent(envelope["payload"]["userLimitId"], envelope["sequenceNumber"], encode(envelope))


# -- rules 1 and 2


def test_decode_batch_sorts_records_into_events_dead_letters_and_ignored() -> None:
    batch = records([created("L1", 1), b"\xff", noise(2), progress("L2", 3, "1", "0"), b"{}"])
    decoded = decode_batch(family, batch)
    assert [index for index, _, _, _ in decoded.events] == [0, 3]
    assert [data for _, _, data, _ in decoded.events] == [batch[0].data, batch[3].data]
    assert [key for _, _, _, key in decoded.events] == ["L1", "L2"]
    assert [index for index, _ in decoded.dead_letters] == [1, 4]
    assert decoded.ignored == 1
    assert decoded.size == 5
    assert decoded.partitions == {"L1": "u1", "L2": "u1"}


def test_dead_letters_keep_raw_bytes_and_coordinates() -> None:
    poison = record(b"\xff\x00raw", 4, sub=2)
    outcome = run([poison])
    [(index, letter)] = outcome.dead_letters
    assert index == 0
    assert letter == DeadLetter(letter.reason, *poison)
    assert letter.data == b"\xff\x00raw"
    assert "UTF-8" in letter.reason
    assert outcome.counts.dead_lettered == 1
    assert outcome.states == {}


def test_dead_letter_identity_is_its_position_or_its_content() -> None:
    at = DeadLetter.of(record(b"x", 1), "r")
    assert at.id == DeadLetter.of(record(b"other bytes", 1), "other reason").id  # the same stream position
    assert at.id != DeadLetter.of(record(b"x", 2), "r").id
    assert DeadLetter.of(record(b"x", 1, sub=1), "r").id != DeadLetter.of(record(b"x", 1, sub=2), "r").id
    assert DeadLetter.of(record(b"x"), "r").id == DeadLetter.of(record(b"x"), "s").id
    assert DeadLetter.of(record(b"x"), "r").id != DeadLetter.of(record(b"y"), "r").id


def test_a_poison_record_does_not_block_the_rest_of_the_batch() -> None:
    outcome = run(records([b"nope", created("L1", 1), b"\x80", progress("L1", 2, "5", "0")]))
    assert str(outcome.states["L1"].progress) == "5"
    # The builder's remainingAmount ("0") is not 100.00 - 5: the progress change drifted.
    assert outcome.counts.as_json() == {
        "applied": 2, "skipped": 0, "ignored": 0, "parked": 0, "deadLettered": 2, "drifted": 1
    }  # fmt: skip


def test_other_types_are_ignored() -> None:
    outcome = run(records([noise(1), noise(2)]))
    assert outcome.counts.ignored == 2
    assert outcome.states == {} and outcome.touched == {}


# -- rule 3


def test_events_at_or_below_the_stored_sequence_number_are_skipped() -> None:
    stored = limit(created("L1", 1), progress("L1", 5, "10", "0"))
    outcome = run(
        records([progress("L1", 5, "99", "0"), progress("L1", 4, "99", "0"), created("L1", 1)]),
        Snapshot({"L1": stored}),
    )
    assert outcome.counts.skipped == 3
    assert outcome.counts.applied == 0
    assert outcome.states == {}  # nothing changed: nothing to write
    assert outcome.touched == {"L1": (5, 0)}


def test_duplicates_within_one_batch_are_skipped() -> None:
    outcome = run(records([created("L1", 1), progress("L1", 2, "3", "0"), progress("L1", 2, "3", "0")]))
    assert outcome.counts.applied == 2
    assert outcome.counts.skipped == 1
    assert str(outcome.states["L1"].progress) == "3"


def test_sequence_numbers_are_per_limit() -> None:
    stored = limit(created("L1", 1), progress("L1", 50, "1", "0"))
    outcome = run(records([created("L2", 10), progress("L2", 11, "2", "0")]), Snapshot({"L1": stored}))
    assert outcome.counts.applied == 2
    assert set(outcome.states) == {"L2"}


# -- rule 7


def test_a_change_before_its_creation_is_parked_whole() -> None:
    orphan = progress("L1", 5, "1", "0")
    other = reset("L1", 6, next_reset=9)
    outcome = run(records([orphan, other]))
    assert [event for _, event in outcome.parked_added] == [parked(orphan), parked(other)]
    assert [index for index, _ in outcome.parked_added] == [0, 1]
    assert outcome.counts.parked == 2
    assert outcome.counts.applied == 0
    assert outcome.states == {}


def test_the_same_event_parked_twice_is_kept_once() -> None:
    orphan = progress("L1", 5, "1", "0")
    outcome = run(records([orphan, orphan]))
    assert [event for _, event in outcome.parked_added] == [parked(orphan)]
    assert outcome.counts.skipped == 1
    # Already parked by an earlier batch.
    outcome = run(records([orphan]), Snapshot(parked={"L1": [parked(orphan)]}))
    assert outcome.parked_added == []
    assert outcome.counts.skipped == 1


def test_creation_drains_parked_events_in_sequence_order() -> None:
    waiting = [progress("L1", 9, "7", "2"), reset("L1", 4, next_reset=44), progress("L1", 6, "2", "0")]
    outcome = run(records([created("L1", 3)]), Snapshot(parked={"L1": [parked(e) for e in waiting]}))
    state = outcome.states["L1"]
    assert (str(state.progress), state.next_reset_time, state.last_sequence_number) == ("9", 44, 9)
    assert sorted(event.position for _, event in outcome.parked_removed) == [4, 6, 9]
    assert outcome.counts.applied == 4
    # If the reset (4) had come after the progress (6), progress would be 0 and nextResetTime 44 anyway;
    # order shows in a reset after a progress:
    outcome = run(
        records([created("L1", 3)]),
        Snapshot(parked={"L1": [parked(reset("L1", 8, next_reset=80)), parked(progress("L1", 7, "5", "0"))]}),
    )
    assert (str(outcome.states["L1"].progress), outcome.states["L1"].next_reset_time) == ("0", 80)


def test_parked_events_not_above_the_creation_are_dropped() -> None:
    waiting = [progress("L1", 2, "7", "0"), progress("L1", 3, "1", "0"), progress("L1", 4, "1", "1")]
    outcome = run(records([created("L1", 3)]), Snapshot(parked={"L1": [parked(e) for e in waiting]}))
    assert str(outcome.states["L1"].progress) == "2"
    assert outcome.counts.applied == 2
    assert outcome.counts.skipped == 2
    assert len(outcome.parked_removed) == 3


def test_parked_and_drained_in_one_batch_never_reaches_the_store() -> None:
    outcome = run(records([progress("L1", 5, "4", "0"), created("L1", 1), progress("L1", 6, "1", "4")]))
    assert outcome.parked_added == []
    assert outcome.parked_removed == []
    assert str(outcome.states["L1"].progress) == "5"
    assert outcome.counts.applied == 3
    assert outcome.counts.parked == 1  # counted when parked; the store reports what waits now


def test_left_over_parked_events_of_an_existing_limit_are_settled_first() -> None:
    # A concurrent writer parked an event after the limit had been created.
    stored = limit(created("L1", 1))
    snapshot = Snapshot({"L1": stored}, {"L1": [parked(progress("L1", 4, "4", "0"))]})
    outcome = run(records([progress("L1", 6, "1", "4")]), snapshot)
    assert str(outcome.states["L1"].progress) == "5"
    assert [event.position for _, event in outcome.parked_removed] == [4]
    assert outcome.counts.applied == 2


def test_left_over_parked_events_above_the_batchs_event_are_applied_after_it() -> None:
    # Applied first, the event at 8 would make the batch's event at 6 look stale, and lose it.
    stored = limit(created("L1", 1))
    snapshot = Snapshot({"L1": stored}, {"L1": [parked(progress("L1", 8, "1", "4"))]})
    outcome = run(records([progress("L1", 6, "4", "0")]), snapshot)
    assert outcome.counts.applied == 2
    assert outcome.counts.skipped == 0
    assert (str(outcome.states["L1"].progress), outcome.states["L1"].last_sequence_number) == ("5", 8)
    assert [event.position for _, event in outcome.parked_removed] == [8]


def test_a_limit_created_again_settles_its_left_overs_in_position_order() -> None:
    stored = limit(created("L1", 1, value="100"))
    waiting = [parked(progress("L1", 3, "7", "0")), parked(progress("L1", 9, "2", "0"))]
    outcome = run(records([created("L1", 5, value="500")]), Snapshot({"L1": stored}, {"L1": waiting}))
    state = outcome.states["L1"]
    # 3 on the old limit, then the creation at 5, then 9 on the new one.
    assert (str(state.value), str(state.progress), state.last_sequence_number) == ("500", "2", 9)
    assert outcome.counts.applied == 3
    assert sorted(event.position for _, event in outcome.parked_removed) == [3, 9]


def test_a_left_over_at_the_events_own_position_is_the_same_event_skipped_once() -> None:
    stored = limit(created("L1", 1))
    snapshot = Snapshot({"L1": stored}, {"L1": [parked(progress("L1", 4, "4", "0"))]})
    outcome = run(records([progress("L1", 4, "4", "0")]), snapshot)
    assert (outcome.counts.applied, outcome.counts.skipped) == (1, 1)
    assert outcome.states["L1"].last_sequence_number == 4
    assert [event.position for _, event in outcome.parked_removed] == [4]


def test_touched_records_the_expected_position_and_first_record() -> None:
    stored = limit(created("L1", 7))
    outcome = run(
        records([noise(1), created("L2", 2), progress("L1", 8, "1", "0"), progress("L2", 3, "1", "0")]),
        Snapshot({"L1": stored}),
    )
    assert outcome.touched == {"L2": (None, 1), "L1": (7, 2)}
    assert outcome.applied_by_key == {"L2": 2, "L1": 1}
    assert outcome.size == 4


def test_project_does_not_mutate_the_snapshot() -> None:
    stored = limit(created("L1", 1))
    waiting = [parked(progress("L2", 5, "1", "0"))]
    snapshot = Snapshot({"L1": stored}, {"L2": list(waiting)})
    run(records([progress("L1", 2, "1", "0"), created("L2", 1)]), snapshot)
    assert snapshot.states == {"L1": stored}
    assert snapshot.parked == {"L2": waiting}


def test_a_parked_event_that_no_longer_decodes_is_dead_lettered_not_a_crash() -> None:
    # Parked by an older version whose codec accepted it: draining must not fail the batch for ever.
    refused = ParkedEvent("L1", 5, encode(progress("L1", 5, "1e1000000", "0")))
    unknown = ParkedEvent("L1", 6, encode({**progress("L1", 6, "1", "0"), "type": "NO_LONGER_HANDLED"}))
    good = parked(progress("L1", 7, "2", "1"))
    decoded = decode_batch(family, records([created("L1", 1)]))
    snapshot: Snapshot[UserLimit] = Snapshot(parked={"L1": [refused, unknown, good]})
    outcome = project(family, decoded, snapshot)
    again = project(family, decoded, snapshot)  # a store may project again after a conflict
    assert str(outcome.states["L1"].progress) == "3"
    assert [letter.data for _, letter in outcome.dead_letters] == [refused.data]
    assert "out of range" in outcome.dead_letters[0][1].reason
    assert sorted(event.position for _, event in outcome.parked_removed) == [5, 6, 7]
    assert outcome.counts.as_json() == {
        "applied": 2, "skipped": 0, "ignored": 1, "parked": 0, "deadLettered": 1, "drifted": 1
    }  # fmt: skip
    assert again.counts == outcome.counts and again.dead_letters == outcome.dead_letters
    assert decoded.dead_letters == []


def test_a_snapshot_line_over_a_limit_with_left_overs_is_judged_in_position_order() -> None:
    stored = limit(created("L1", 1, value="100"))
    # The snapshot reflects the limit at 5 (value 500, progress 40); 3 and 9 wait, left over.
    line = snapshot_line(limit(created("L1", 4, value="500"), progress("L1", 5, "40", "0")))
    waiting = [parked(progress("L1", 3, "7", "0")), parked(progress("L1", 9, "2", "40"))]
    family_of_import = ImportFamily()
    decoded = decode_batch(family_of_import, [snapshot_record(line)])
    outcome = project(family_of_import, decoded, Snapshot({"L1": stored}, {"L1": waiting}))
    state = outcome.states["L1"]
    assert (str(state.value), str(state.progress), state.last_sequence_number) == ("500", "42", 9)
    assert family_of_import.limits_applied == 1


def test_a_snapshot_line_over_a_limit_that_drifted_keeps_its_last_drift() -> None:
    change = family.decode(encode(progress("L1", 2, "5", "0", remainingAmount="1")))  # 95 remain, not 1
    assert change is not None
    drifted = family.apply(limit(created("L1", 1, value="100")), change)
    assert drifted.drift_sequence_number == 2
    line = snapshot_line(limit(created("L1", 4, value="500")))
    family_of_import = ImportFamily()
    outcome = project(
        family_of_import, decode_batch(family_of_import, [snapshot_record(line)]), Snapshot({"L1": drifted})
    )
    state = outcome.states["L1"]
    assert (str(state.value), state.last_sequence_number) == ("500", 4)
    assert (state.drift_sequence_number, state.drift_figure, state.drift_theirs) == (2, "remainingAmount", 1)
    assert outcome.counts.drifted == 0  # the drift is the stored one, not this line's
