"""The outcome of issue 8's snapshots, as a property over any history: a fresh store that imports
the snapshot of a store fed the history up to any point, then reads the rest of the stream (with
late copies of events before that point mixed in), ends as a store fed the whole history: the
same export and the same parked events.

A snapshot carries limits, not parked events: the stream the new store reads must reach back to
the first record still parked at the snapshot's point (as a Kinesis stream does when the snapshot
is younger than its retention). The records from there to the point are old copies for the new
store: its snapshot reflects them, and the guard skips them.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.test_snapshots import snapshot_file
from tests.streams import cut_points, event_streams, export, process, record, records
from tests.unit.test_properties import batches, fresh_store
from user_limits.family import UserLimitFamily
from user_limits.operations.snapshots.importer import import_snapshot, write_snapshot
from user_limits.stores.base import LimitStore
from user_limits.stream.engine import InvalidRecord
from user_limits.stream.records import StreamRecord

family = UserLimitFamily()
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def feed(store: LimitStore, stream: list[StreamRecord], cuts: list[int]) -> None:
    for start, end in batches(stream, cuts):
        process(store, stream[start:end])


def where(item: StreamRecord) -> tuple[str, int] | None:
    """The limit and position of a record's event; None for noise and poison."""
    try:
        event = family.decode(item.data)
    except InvalidRecord:
        return None
    return None if event is None else (family.key(event), family.position(event))


def positions(store: LimitStore) -> list[tuple[str, int]]:
    return [(limit.user_limit_id, limit.last_sequence_number) for limit in store.all_limits()]


def parked(store: LimitStore) -> list[tuple[str, int, bytes]]:
    return sorted((event.key, event.position, event.data) for event in store.parked_events())


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
@SETTINGS
@given(data=st.data())
def test_a_store_bootstrapped_from_a_snapshot_ends_as_one_fed_the_whole_history(kind: str, data: st.DataObject) -> None:
    history = records(data.draw(event_streams(), label="history"))
    point = data.draw(st.integers(0, len(history)), label="snapshot point")
    with fresh_store(kind) as whole, fresh_store(kind) as before, fresh_store(kind) as bootstrapped:
        feed(whole, history, data.draw(cut_points(len(history)), label="cuts of the whole"))
        feed(before, history[:point], data.draw(cut_points(point), label="cuts before the point"))
        out = io.BytesIO()
        write_snapshot(before, out)
        # Any order, and either form of the file.
        lines = data.draw(st.permutations(out.getvalue().splitlines()), label="snapshot order")
        as_array = data.draw(st.booleans(), label="as a JSON array")
        text = b"[" + b",\n".join(lines) + b"]" if as_array else b"".join(x + b"\n" for x in lines)

        still_parked = {(event.key, event.position) for event in before.parked_events()}
        first_parked = next((n for n, item in enumerate(history[:point]) if where(item) in still_parked), point)
        start = data.draw(st.integers(0, first_parked), label="the new store reads from")
        rest = list(history[start:])
        # Late copies of events before the point: new records, after their original when it is read again.
        events_before = [n for n in range(point) if where(history[n]) is not None]
        for n, source in enumerate(
            data.draw(
                st.lists(st.sampled_from(events_before), max_size=6) if events_before else st.just([]), label="copies"
            )
        ):
            after = rest.index(history[source]) + 1 if source >= start else 0
            rest.insert(data.draw(st.integers(after, len(rest)), label="at"), record(history[source].data, 10_000 + n))

        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "snapshot"
            path.write_bytes(text)
            batch_size = data.draw(st.integers(1, 4), label="batch size")
            counts = import_snapshot(bootstrapped, snapshot_file(path), batch_size=batch_size)
        assert (counts.limits, counts.applied) == (len(lines), len(lines))
        feed(bootstrapped, rest, data.draw(cut_points(len(rest)), label="cuts of the rest"))

        assert export(bootstrapped) == export(whole)
        assert parked(bootstrapped) == parked(whole)
        # And the positions the guard compares: the next record is judged alike on both.
        assert positions(bootstrapped) == positions(whole)
