"""The redrive property: over any stream, a store fed by the older family (no ``WEEK`` period) and
then redriven with today's equals a store fed by today's family the same stream, with the records
the older family refused moved to the end in stream order: the redrive is the batch path, once."""

from __future__ import annotations

import itertools
import json

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.redrive_family import FamilyBeforeWeek
from tests.streams import cut_points, event_streams, export, records
from user_limits.domain.events import UserLimitEvent
from user_limits.domain.model import UserLimit
from user_limits.family import UserLimitFamily
from user_limits.operations.redrive import redrive_all, select
from user_limits.stores.base import LimitStore
from user_limits.stores.memory_store import MemoryStore
from user_limits.stream.batch import BatchProcessor
from user_limits.stream.engine import EventFamily, InvalidRecord
from user_limits.stream.records import StreamRecord

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def weekly(data: bytes, limits: set[str]) -> bytes:
    """The record with the period WEEK when it is a creation or reset of one of ``limits``."""
    try:
        value = json.loads(data)
        payload = value["payload"]
        if payload["userLimitId"] in limits and "period" in payload:
            payload["period"] = "WEEK"
            return json.dumps(value).encode()
    except (ValueError, TypeError, KeyError):
        pass
    return data


def feed(
    store: LimitStore, family: EventFamily[UserLimitEvent, UserLimit], stream: list[StreamRecord], cuts: list[int]
) -> None:
    bounds = [0, *sorted({cut for cut in cuts if 0 < cut < len(stream)}), len(stream)]
    for start, end in itertools.pairwise(bounds):
        if end > start:
            result = BatchProcessor(family, store).process(stream[start:end])
            assert result.error is None, result.error


def refused_then(record: StreamRecord) -> bool:
    """Whether the older family dead-letters it while today's decodes it."""
    try:
        FamilyBeforeWeek().decode(record.data)
    except InvalidRecord:
        try:
            UserLimitFamily().decode(record.data)
        except InvalidRecord:
            return False
        return True
    return False


def held(store: LimitStore) -> tuple[object, ...]:
    letters = sorted((letter.id, letter.reason) for letter in store.dead_letters())
    return export(store), store.parked_events(), letters, store.stats().as_json()


@SETTINGS
@given(event_streams(), st.sets(st.sampled_from(["L0", "L1", "L2", "L3"]), min_size=2), st.data())
def test_a_redrive_equals_the_refused_records_fed_last_in_stream_order(
    stream: list[bytes], limits: set[str], data: st.DataObject
) -> None:
    batch = records([weekly(value, limits) for value in stream])
    cuts = data.draw(cut_points(len(batch)))

    redriven = MemoryStore()
    feed(redriven, FamilyBeforeWeek(), batch, cuts)
    counts = redrive_all(redriven, select(redriven.dead_letters(), None, ()))

    reference = MemoryStore()
    late = [record for record in batch if refused_then(record)]
    feed(reference, UserLimitFamily(), [record for record in batch if not refused_then(record)], cuts)
    feed(reference, UserLimitFamily(), late, [])
    event(f"records refused then: {min(len(late), 3)}{'+' if len(late) > 3 else ''}")

    assert held(redriven) == held(reference)
    assert counts.redriven - counts.still_dead == len(late)
