"""Properties over any stream (several users and limits, all three types, noise, poison, orphans,
duplicates), checked against a small reference model and over the memory and SQLite stores:

- the outcome does not depend on how the stream is cut into batches;
- re-delivering any window of it (a Lambda retry) changes nothing;
- late copies of old events, anywhere after the original, change nothing;
- and in each, the drifted count and every limit's last drift are the reference's.
"""

from __future__ import annotations

import itertools
import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.streams import CREATED, PROGRESS, RESET, cut_points, event_streams, export, process, record, records
from user_limits.bootstrap import open_store
from user_limits.family import UserLimitFamily
from user_limits.stores.base import LimitStore
from user_limits.stores.sqlite_store import SQLiteStore
from user_limits.stream.batch import BatchProcessor
from user_limits.stream.engine import InvalidRecord
from user_limits.stream.records import DeadLetter, StreamRecord

family = UserLimitFamily()
SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
KINDS = ["memory", "sqlite"]


@dataclass
class Reference:
    """The rules, one record at a time, per limit, on plain dicts: no batches, no engine."""

    limits: dict[str, dict[str, Any]] = field(default_factory=dict)
    parked: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict)
    dead: set[str] = field(default_factory=set)
    applied: int = 0
    skipped: int = 0
    ignored: int = 0
    drifted: int = 0
    # Per limit, the position of the last event whose producer figures disagreed with the model.
    last_drift: dict[str, int] = field(default_factory=dict)

    def feed(self, item: StreamRecord) -> None:
        try:
            valid = family.decode(item.data)  # validity only; the rules below use the raw envelope
        except InvalidRecord:
            self.dead.add(DeadLetter.of(item, "").id)
            return
        if valid is None:
            self.ignored += 1
            return
        envelope = json.loads(item.data)
        key, seq = envelope["payload"]["userLimitId"], envelope["sequenceNumber"]
        current = self.limits.get(key)
        if current is not None:
            if seq <= current["seq"]:
                self.skipped += 1
            else:
                self.change(key, envelope)
        elif envelope["type"] == CREATED:
            self.change(key, envelope)
            for position, waiting in sorted(self.parked.pop(key, {}).items()):
                if position > self.limits[key]["seq"]:
                    self.change(key, waiting)
                else:
                    self.skipped += 1
        elif seq in self.parked.setdefault(key, {}):
            self.skipped += 1
        else:
            self.parked[key][seq] = envelope

    def change(self, key: str, envelope: dict[str, Any]) -> None:
        payload, kind = envelope["payload"], envelope["type"]
        self.applied += 1
        before = self.limits.get(key)
        if before is not None and kind == RESET:
            value, progress = Decimal(before["value"]), Decimal(before["progress"])
            if Decimal(payload["unusedAmount"]) != value - progress or Decimal(payload["resetAmount"]) != progress:
                self.drift(key, envelope)
        if kind == CREATED:
            self.limits[key] = {
                "userLimitId": key,
                "userId": payload["userId"],
                "brandId": payload["brandId"],
                "type": payload["type"],
                "period": payload["period"],
                "status": payload["status"],
                "value": str(Decimal(payload["value"])),
                "progress": "0",
                "currencyCode": payload["currencyCode"],
                "activeFrom": payload["activeFrom"],
                "activeUntil": payload.get("activeUntil"),
                "nextResetTime": payload.get("nextResetTime"),
                "createdAt": envelope["createdAt"],
            }
        elif kind == PROGRESS:
            limit = self.limits[key]
            limit["progress"] = str(Decimal(payload["previousProgress"]) + Decimal(payload["amount"]))
            if Decimal(payload["remainingAmount"]) != Decimal(limit["value"]) - Decimal(limit["progress"]):
                self.drift(key, envelope)
            if payload.get("nextResetTime") is not None:
                limit["nextResetTime"] = payload["nextResetTime"]
        else:
            self.limits[key]["progress"] = "0"
            self.limits[key]["nextResetTime"] = payload["nextResetTime"]
        self.limits[key]["seq"] = envelope["sequenceNumber"]

    def drift(self, key: str, envelope: dict[str, Any]) -> None:
        self.drifted += 1
        self.last_drift[key] = envelope["sequenceNumber"]

    def export(self) -> list[dict[str, Any]]:
        return [{k: v for k, v in self.limits[key].items() if k != "seq"} for key in sorted(self.limits)]

    def counts(self) -> dict[str, int]:
        return {
            "applied": self.applied,
            "skipped": self.skipped,
            "ignored": self.ignored,
            "parked": sum(len(waiting) for waiting in self.parked.values()),
            "deadLettered": len(self.dead),
            "drifted": self.drifted,
        }


def reference(stream: list[StreamRecord]) -> Reference:
    model = Reference()
    for item in stream:
        model.feed(item)
    return model


@contextmanager
def fresh_store(kind: str) -> Iterator[LimitStore]:
    with tempfile.TemporaryDirectory() as folder:
        store = open_store("memory://" if kind == "memory" else f"sqlite:///{Path(folder) / 'p.db'}")
        try:
            yield store
        finally:
            store.close()


def batches(stream: list[StreamRecord], cuts: list[int]) -> list[tuple[int, int]]:
    bounds = [0, *sorted({cut for cut in cuts if 0 < cut < len(stream)}), len(stream)]
    return [(start, end) for start, end in itertools.pairwise(bounds) if end > start]


def without(counts: dict[str, int], *names: str) -> dict[str, int]:
    return {name: value for name, value in counts.items() if name not in names}


@pytest.mark.parametrize("kind", KINDS)
@SETTINGS
@given(data=st.data())
def test_batch_cuts_do_not_matter(kind: str, data: st.DataObject) -> None:
    stream = records(data.draw(event_streams(), label="stream"))
    cuts = data.draw(cut_points(len(stream)), label="cuts")
    expected = reference(stream)
    with fresh_store(kind) as store:
        for start, end in batches(stream, cuts):
            process(store, stream[start:end])
        assert export(store) == expected.export()
        assert last_drifts(store) == expected.last_drift
        assert store.stats().as_json() == expected.counts()
        parked = {(event.key, event.position) for event in store.parked_events()}
        assert parked == {(key, seq) for key, waiting in expected.parked.items() for seq in waiting}


@pytest.mark.parametrize("kind", KINDS)
@SETTINGS
@given(data=st.data())
def test_redelivered_windows_change_nothing(kind: str, data: st.DataObject) -> None:
    stream = records(data.draw(event_streams(), label="stream"))
    cuts = data.draw(cut_points(len(stream)), label="cuts")
    expected = reference(stream)
    with fresh_store(kind) as store:
        for start, end in batches(stream, cuts):
            process(store, stream[start:end])
            # Lambda retries from some record already seen, up to where it has got.
            if data.draw(st.booleans(), label="retry"):
                again = data.draw(st.integers(0, end - 1), label="retry from")
                process(store, stream[again:end])
        assert export(store) == expected.export()
        assert last_drifts(store) == expected.last_drift
        assert without(store.stats().as_json(), "skipped", "ignored") == without(
            expected.counts(), "skipped", "ignored"
        )


@pytest.mark.parametrize("kind", KINDS)
@SETTINGS
@given(data=st.data())
def test_late_copies_change_nothing(kind: str, data: st.DataObject) -> None:
    original = data.draw(event_streams(), label="stream")
    stream = records(original)
    expected = reference(stream)
    events = [n for n, item in enumerate(stream) if _is_event(item.data)]
    copies = data.draw(st.lists(st.sampled_from(events), max_size=6) if events else st.just([]), label="copies")
    with_copies = list(stream)
    for n, source in enumerate(copies):
        # A late copy is a new Kinesis record somewhere after the original.
        position = with_copies.index(stream[source])
        at = data.draw(st.integers(position + 1, len(with_copies)), label="at")
        with_copies.insert(at, record(stream[source].data, 10_000 + n))
    cuts = data.draw(cut_points(len(with_copies)), label="cuts")
    with fresh_store(kind) as store:
        for start, end in batches(with_copies, cuts):
            process(store, with_copies[start:end])
        assert export(store) == expected.export()
        assert last_drifts(store) == expected.last_drift
        assert without(store.stats().as_json(), "skipped") == without(expected.counts(), "skipped")


def last_drifts(store: LimitStore) -> dict[str, int | None]:
    return {limit.user_limit_id: limit.drift_sequence_number for limit in store.drifted_limits()}


def _is_event(data: bytes) -> bool:
    try:
        return family.decode(data) is not None
    except InvalidRecord:
        return False


def test_the_reference_model_itself() -> None:
    """The model the properties trust, on a hand-checked stream."""
    from tests.streams import created, noise, progress, reset

    stream = records(
        [
            progress("L1", 5, "5", "1"),
            progress("L1", 2, "9", "9"),
            noise(1),
            created("L1", 3, value="50"),
            reset("L2", 4, next_reset=7),
            b"\xff",
            progress("L1", 5, "5", "1"),
        ]
    )
    model = reference(stream)
    assert model.export()[0]["progress"] == "6"
    # The progress change at 5 says 0 remains; 50 - 6 do: it drifted.
    assert model.counts() == {"applied": 2, "skipped": 2, "ignored": 1, "parked": 1, "deadLettered": 1, "drifted": 1}
    assert model.last_drift == {"L1": 5}


@SETTINGS
@given(data=st.data())
def test_store_outages_then_retries_change_nothing(data: st.DataObject) -> None:
    """SQLite fails some batches after writing part of their outcome; Lambda retries each from the
    first record reported, as often as needed. The result is that of a clean run."""
    stream = records(data.draw(event_streams(), label="stream"))
    cuts = data.draw(cut_points(len(stream)), label="cuts")
    expected = reference(stream)
    original = SQLiteStore._write
    outages_in_a_row = [0]

    def flaky_write(self: SQLiteStore, db: Any, outcome: Any, stored: Any) -> None:
        original(self, db, outcome, stored)
        # An outage ends: at most three failures in a row.
        if outages_in_a_row[0] < 3 and data.draw(st.booleans(), label="outage"):
            outages_in_a_row[0] += 1
            raise OSError("injected outage")
        outages_in_a_row[0] = 0

    with fresh_store("sqlite") as store:
        processor = BatchProcessor(UserLimitFamily(), store)
        with mock.patch.object(SQLiteStore, "_write", flaky_write):
            for start, end in batches(stream, cuts):
                pending = stream[start:end]
                for _ in range(4):
                    result = processor.process(pending)
                    if result.first_uncommitted is None:
                        break
                    pending = pending[result.first_uncommitted :]
                else:
                    pytest.fail("the batch never committed")
        assert export(store) == expected.export()
        assert last_drifts(store) == expected.last_drift
        assert store.stats().as_json() == expected.counts()
