"""Drift, each rule on its own: an applied event whose producer figures disagree with the read model.

- a progress change's ``remainingAmount`` must be value - progress after it;
- a reset's ``unusedAmount`` must be value - progress before it, its ``resetAmount`` that progress;
- figures compare as Decimal values; a creation has none; the projection is the same either way;
- the limit keeps the last drift seen, the batch counts each drifted event once.

And a property: a stream whose values change only through the events we handle never drifts,
however it is cut into batches, re-delivered or copied late; one changed behind our back does.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.streams import created, cut_points, encode, noise, process, progress, record, reset
from user_limits.bootstrap import open_store
from user_limits.domain import drift
from user_limits.domain.events import UserLimitEvent
from user_limits.domain.model import UserLimit, export_dict
from user_limits.domain.projection import apply
from user_limits.family import UserLimitFamily
from user_limits.stream.engine import decode_batch, project
from user_limits.stream.records import Counts, Snapshot, StreamRecord

family = UserLimitFamily()


def event(envelope: dict[str, Any]) -> UserLimitEvent:
    decoded = family.decode(encode(envelope))
    assert decoded is not None
    return decoded


def fold(*envelopes: dict[str, Any]) -> UserLimit:
    state: UserLimit | None = None
    for envelope in envelopes:
        state = family.apply(state, event(envelope))
    assert state is not None
    return state


def limit_of(value: str = "100", progress_: str = "0") -> UserLimit:
    limit = fold(created("L1", 1, value=value))
    return apply(
        limit, event(progress("L1", 2, progress_, "0", remainingAmount=str(Decimal(value) - Decimal(progress_))))
    )


# -- the progress change's remainingAmount


def test_a_progress_change_agrees_when_remaining_is_value_minus_the_new_progress() -> None:
    before = limit_of("10000")
    change = event(progress("L1", 3, "200", "0", remainingAmount="9800.00"))  # the sample's figures
    assert drift.check(before, change, apply(before, change)) is None


def test_a_progress_change_drifts_when_remaining_disagrees() -> None:
    before = limit_of("10000")
    change = event(progress("L1", 3, "200", "0", remainingAmount="19800.00"))  # the value was raised upstream
    found = drift.check(before, change, apply(before, change))
    assert found == drift.Drift("remainingAmount", Decimal("9800"), Decimal("19800.00"))


def test_remaining_is_taken_after_the_change_from_the_producers_previous_progress() -> None:
    before = limit_of("100", "30")
    # Rule 5 takes previousProgress (50), not ours (30): remaining is 100 - 60.
    change = event(progress("L1", 3, "10", "50", remainingAmount="40"))
    assert drift.check(before, change, apply(before, change)) is None


# -- the reset's unusedAmount and resetAmount


def test_a_reset_agrees_when_unused_is_value_minus_progress_and_reset_is_the_progress() -> None:
    before = limit_of("250000", "200")
    # The sample's monthly reset: 249800.00 unused, 200.00 reset.
    change = event(reset("L1", 3, 9, unusedAmount="249800.00", resetAmount="200.00", resetPercentage="0.08"))
    assert drift.check(before, change, apply(before, change)) is None


def test_a_reset_drifts_when_unused_disagrees() -> None:
    before = limit_of("10000", "200")
    change = event(reset("L1", 3, 9, unusedAmount="10000.00", resetAmount="200"))
    assert drift.check(before, change, apply(before, change)) == drift.Drift(
        "unusedAmount", Decimal("9800"), Decimal("10000.00")
    )


def test_a_reset_drifts_when_only_the_reset_amount_disagrees() -> None:
    before = limit_of("100", "40")
    change = event(reset("L1", 3, 9, unusedAmount="60", resetAmount="0"))
    assert drift.check(before, change, apply(before, change)) == drift.Drift("resetAmount", Decimal("40"), Decimal("0"))


def test_unused_is_checked_before_reset_amount() -> None:
    before = limit_of("100", "40")
    change = event(reset("L1", 3, 9, unusedAmount="100", resetAmount="0"))  # a missed reset: both disagree
    found = drift.check(before, change, apply(before, change))
    assert found is not None and found.figure == "unusedAmount"


# -- how figures compare


@pytest.mark.parametrize("text", ["60", "60.00", "6E+1", "60.000000", "0.6e2"])
def test_figures_compare_as_decimal_values_not_texts(text: str) -> None:
    before = limit_of("100.00", "40")
    change = event(reset("L1", 3, 9, unusedAmount=text, resetAmount="40.0"))
    assert drift.check(before, change, apply(before, change)) is None


def test_a_producer_figure_of_any_length_is_compared_whole_and_kept_to_fifty_digits() -> None:
    before = limit_of("100", "40")
    huge = "6" + "0" * 100_000  # only validated by rule 1, never range-checked
    change = event(reset("L1", 3, 9, unusedAmount=huge, resetAmount="40"))
    found = drift.check(before, change, apply(before, change))
    assert found is not None and found.theirs == Decimal("6E+100000")
    assert len(found.theirs.as_tuple().digits) == drift.KEPT_DIGITS
    # Up to fifty digits, the figure is kept exactly as sent.
    fifty = "61." + "0" * 48
    change = event(reset("L1", 3, 9, unusedAmount=fifty, resetAmount="40"))
    found = drift.check(before, change, apply(before, change))
    assert found is not None and str(found.theirs) == fifty
    # 51 digits, off by their last: drift (compared whole), kept rounded to 60.000…
    change = event(reset("L1", 3, 9, unusedAmount="60." + "0" * 48 + "1", resetAmount="40"))
    found = drift.check(before, change, apply(before, change))
    assert found is not None and str(found.theirs) == "60." + "0" * 48


def test_a_creation_has_no_figures_and_never_drifts() -> None:
    before = limit_of("100", "40")
    again = event(created("L1", 5, value="7"))
    assert drift.check(before, again, apply(before, again)) is None
    assert drift.observe(None, again, apply(None, again)).drift_sequence_number is None


def test_an_event_without_a_figure_is_dead_lettered_not_drift() -> None:
    # Rule 1: the three figures are required; a missing or null one never reaches the check.
    without = progress("L1", 3, "1", "0")
    del without["payload"]["remainingAmount"]
    null = reset("L1", 4, 9, unusedAmount=None)
    decoded = decode_batch(family, [record(created("L1", 1)), record(without), record(null)])
    outcome = project(family, decoded, Snapshot())
    assert (outcome.counts.dead_lettered, outcome.counts.drifted) == (2, 0)


# -- the last drift, kept on the limit; the projection unchanged


def test_the_limit_keeps_the_drifting_events_position_type_figures_and_time() -> None:
    change = progress("L1", 3, "200", "0", remainingAmount="19800.00")
    limit = fold(created("L1", 1, value="10000"), change)
    assert (
        limit.drift_sequence_number,
        limit.drift_event_type,
        limit.drift_figure,
        limit.drift_ours,
        limit.drift_theirs,
        limit.drift_at,
    ) == (
        3,
        "USER_LIMIT_PROGRESS_CHANGED",
        "remainingAmount",
        Decimal("9800"),
        Decimal("19800.00"),
        change["createdAt"],
    )
    assert drift.drifted(limit)


def test_drift_changes_nothing_the_rules_compute() -> None:
    stream = [
        created("L1", 1, value="10000"),
        progress("L1", 3, "200", "0", remainingAmount="1"),
        reset("L1", 4, 77, unusedAmount="2", resetAmount="3"),
    ]
    plain: UserLimit | None = None
    for envelope in stream:
        plain = apply(plain, event(envelope))
    assert plain is not None
    checked = fold(*stream)
    assert export_dict(checked) == export_dict(plain)
    assert (checked.last_sequence_number, checked.updated_at) == (plain.last_sequence_number, plain.updated_at)


def test_the_last_drift_stays_through_agreeing_events_and_a_new_creation() -> None:
    limit = fold(
        created("L1", 1, value="100"),
        progress("L1", 2, "10", "0", remainingAmount="0"),  # drifts: 90 remain
        progress("L1", 3, "5", "10", remainingAmount="85"),  # agrees
        created("L1", 4, value="50"),  # created again: no figures
    )
    assert limit.drift_sequence_number == 2
    assert not drift.drifted(limit)


def test_a_later_drift_replaces_the_earlier_one() -> None:
    limit = fold(
        created("L1", 1, value="100"),
        progress("L1", 2, "10", "0", remainingAmount="0"),
        reset("L1", 3, 9, unusedAmount="1", resetAmount="10"),
    )
    assert (limit.drift_sequence_number, limit.drift_figure) == (3, "unusedAmount")


# -- counting in the batch


def test_each_drifted_event_counts_once_and_a_skipped_copy_not_at_all() -> None:
    wrong = progress("L1", 2, "10", "0", remainingAmount="0")
    decoded = decode_batch(
        family,
        [
            record(wrong),  # parked, then drained: counted when applied
            record(created("L1", 1, value="100")),
            record(wrong),  # a duplicate: skipped, not counted again
            record(progress("L1", 3, "5", "10", remainingAmount="85")),
            record(reset("L1", 4, 9, unusedAmount="85", resetAmount="0")),  # resetAmount should be 15
        ],
    )
    outcome = project(family, decoded, Snapshot())
    assert (outcome.counts.applied, outcome.counts.skipped, outcome.counts.drifted) == (4, 1, 2)
    assert outcome.drifted_by_key == {"L1": 2}
    assert outcome.states["L1"].drift_sequence_number == 4


def test_a_value_changed_behind_our_back_shows_as_drift_in_the_store() -> None:
    """The issue's "done when": the upstream raises a limit's value through an event type we
    ignore; the next progress change's remainingAmount disagrees, and the store says so."""
    store = open_store("memory://")
    process(
        store,
        [
            record(created("L1", 1, value="1000")),
            record(progress("L1", 2, "100", "0", remainingAmount="900")),
            # An event type we ignore moves the value to 2000 upstream.
            record(noise(3)),
            record(progress("L1", 4, "50", "100", remainingAmount="1850")),
        ],
    )
    assert store.stats().drifted == 1
    [limit] = store.drifted_limits()
    assert (limit.drift_sequence_number, limit.drift_ours, limit.drift_theirs) == (4, Decimal("850"), Decimal("1850"))
    assert str(limit.value) == "1000"  # reported, never corrected


# -- the property


@dataclass
class _Producer:
    """An upstream that keeps each limit's true value and progress and sends its figures."""

    seq: int = 0
    values: dict[str, Decimal] = field(default_factory=dict)
    progress: dict[str, Decimal] = field(default_factory=dict)


def _text(amount: Decimal, zeros: int) -> str:
    """The same amount written with extra trailing zeros, as the upstream writes "9800.00"."""
    text = str(amount)
    if not zeros:
        return text
    return text + "0" * zeros if "." in text else f"{text}.{'0' * zeros}"


@st.composite
def _consistent_streams(draw: st.DrawFn, hidden_change: bool = False) -> tuple[list[bytes], set[str]]:
    """Per limit, events in their true order (a creation, changes, resets), limits interleaved,
    some creations arriving after their first changes (parked), noise, and copies of earlier
    records anywhere after them. With ``hidden_change``, one limit's value moves upstream through
    an event type we ignore; the limit is returned if a figure followed (it must drift)."""
    producer = _Producer()
    amounts = st.sampled_from([Decimal("1"), Decimal("2.5"), Decimal("40"), Decimal("0.01")])
    lanes: list[list[bytes]] = []
    changed: set[str] = set()
    disagreeing: set[str] = set()
    for n in range(draw(st.integers(1, 3))):
        key = f"L{n}"
        value = draw(st.sampled_from([Decimal("100"), Decimal("9800.00"), Decimal("250.1")]))
        producer.seq += 1
        lane = [encode(created(key, producer.seq, value=str(value)))]
        producer.values[key], producer.progress[key] = value, Decimal(0)
        for _ in range(draw(st.integers(0, 5))):
            producer.seq += 1
            zeros = draw(st.integers(0, 2))
            if hidden_change and not changed and draw(st.booleans()):
                producer.values[key] += Decimal(1000)
                lane.append(encode(noise(producer.seq)))
                changed.add(key)
                continue
            true_value, previous = producer.values[key], producer.progress[key]
            disagreeing |= changed & {key}
            if draw(st.integers(0, 3)) == 0:
                unused, used = _text(true_value - previous, zeros), _text(previous, zeros)
                lane.append(encode(reset(key, producer.seq, producer.seq * 7, unusedAmount=unused, resetAmount=used)))
                producer.progress[key] = Decimal(0)
            else:
                amount = draw(amounts)
                producer.progress[key] = previous + amount
                remaining = _text(true_value - producer.progress[key], zeros)
                lane.append(encode(progress(key, producer.seq, str(amount), str(previous), remainingAmount=remaining)))
        if len(lane) > 1 and draw(st.booleans()):
            lane.append(lane.pop(0))  # the creation arrives after the limit's first events
        lanes.append(lane)
    stream: list[bytes] = []
    while any(lanes):
        lane = draw(st.sampled_from([lane for lane in lanes if lane]))
        stream.append(lane.pop(0))
    for _ in range(draw(st.integers(0, 4))):
        at = draw(st.integers(0, len(stream) - 1))
        stream.insert(draw(st.integers(at + 1, len(stream))), stream[at])  # a late copy
    return stream, disagreeing


SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _run(stream: list[bytes], cuts: list[int], retries: list[int]) -> Any:
    store = open_store("memory://")
    records = [StreamRecord(data) for data in stream]
    bounds = [0, *sorted({cut for cut in cuts if 0 < cut < len(records)}), len(records)]
    for n, (start, end) in enumerate(itertools.pairwise(bounds)):
        process(store, records[start:end])
        if n < len(retries):
            process(store, records[min(retries[n], end - 1) : end])  # a Lambda retry of part of it
    return store


@SETTINGS
@given(data=st.data())
def test_a_stream_without_hidden_changes_never_drifts(data: st.DataObject) -> None:
    stream, _ = data.draw(_consistent_streams())
    cuts = data.draw(cut_points(len(stream)))
    retries = data.draw(st.lists(st.integers(0, len(stream)), max_size=3))
    store = _run(stream, cuts, retries)
    assert store.stats().drifted == 0
    assert store.drifted_limits() == []


@SETTINGS
@given(data=st.data())
def test_a_value_changed_behind_our_back_drifts_at_its_next_figure(data: st.DataObject) -> None:
    stream, disagreeing = data.draw(_consistent_streams(hidden_change=True))
    cuts = data.draw(cut_points(len(stream)))
    store = _run(stream, cuts, [])
    # The changed limit drifts once a figure follows the change; no other limit ever does.
    assert {limit.user_limit_id for limit in store.drifted_limits()} == disagreeing
    assert (store.stats().drifted > 0) == bool(disagreeing)


def test_counts_add_and_show_drifted() -> None:
    # What the consumer's log lines and the replay's totals sum, batch after batch.
    total = Counts(applied=1)
    total.add(Counts(applied=2, drifted=1))
    total.add(Counts(applied=1, drifted=2))
    assert total.as_json() == {
        "applied": 4, "skipped": 0, "ignored": 0, "parked": 0, "deadLettered": 0, "drifted": 3
    }  # fmt: skip
