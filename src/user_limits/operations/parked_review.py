"""Parked events under review: how long they have waited, per limit, and the outcome that moves
those parked too long to dead letters.

Pure: no I/O and no clock. The age of an event is ``now_ms`` (given by the caller, the wall clock
for the command line) minus its envelope's ``createdAt``. A parked record decoded once before
being parked, so it has a ``createdAt``; a record that no longer gives one (written by another
version, say) has no age: it is listed, counted as undated, and never expired by age.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import msgspec

from user_limits.domain.model import UserLimit
from user_limits.errors import UserError
from user_limits.stream.records import DeadLetter, Outcome, ParkedEvent, Snapshot

EXPIRED_REASON = "parked too long"

_UNIT_MS = {"d": 86_400_000, "h": 3_600_000, "m": 60_000, "s": 1_000}
# ASCII digits only (``\d`` takes any script's digits), and few enough of them that any duration
# given is a plain number of years, not a number too large to read.
_DURATION = re.compile(r"([0-9]{1,12})([dhms])")


class DurationError(UserError):
    """A duration that is not a number and a unit."""


def parse_duration(text: str) -> int:
    """``30d``, ``12h``, ``90m`` or ``45s`` in milliseconds."""
    match = _DURATION.fullmatch(text)
    if match is None:
        raise DurationError(f"bad duration {text!r}: a whole number and a unit, d, h, m or s (30d, 12h, 90m, 45s)")
    return int(match[1]) * _UNIT_MS[match[2]]


class _Dated(msgspec.Struct, rename="camel"):
    created_at: int


class _Payload(msgspec.Struct, rename="camel"):
    user_id: str = ""


class _Owned(msgspec.Struct):
    payload: _Payload


_dated = msgspec.json.Decoder(_Dated)
_owned = msgspec.json.Decoder(_Owned)


def created_at(data: bytes) -> int | None:
    """The envelope's ``createdAt`` (epoch ms), or None when the record does not give one."""
    try:
        return _dated.decode(data).created_at
    except msgspec.DecodeError:  # ValidationError included
        return None


def user_id(data: bytes) -> str:
    """The payload's ``userId``: where a store looks for the limit first ("" when unknown)."""
    try:
        return _owned.decode(data).payload.user_id
    except msgspec.DecodeError:
        return ""


@dataclass(frozen=True, slots=True)
class LimitSummary:
    """The parked events of one limit."""

    user_limit_id: str
    count: int
    oldest_position: int
    newest_position: int
    oldest_created_at: int | None  # the earliest createdAt among the events that have one
    oldest_age_ms: int | None
    undated: int  # events without a readable createdAt (no age)

    def as_json(self) -> dict[str, object]:
        return {
            "userLimitId": self.user_limit_id,
            "count": self.count,
            "oldestPosition": self.oldest_position,
            "newestPosition": self.newest_position,
            "oldestCreatedAt": self.oldest_created_at,
            "oldestAgeMs": self.oldest_age_ms,
            "undated": self.undated,
        }


def older_than(events: Iterable[ParkedEvent], cutoff_ms: int) -> list[ParkedEvent]:
    """The events created before ``cutoff_ms`` (now minus a duration); undated ones never are."""
    old = []
    for event in events:
        created = created_at(event.data)
        if created is not None and created < cutoff_ms:
            old.append(event)
    return old


def summarize(events: Iterable[ParkedEvent], now_ms: int) -> list[LimitSummary]:
    """One summary per limit, sorted by userLimitId."""
    by_key: dict[str, list[ParkedEvent]] = {}
    for event in events:
        by_key.setdefault(event.key, []).append(event)
    summaries = []
    for key in sorted(by_key):
        waiting = by_key[key]
        dates = [created_at(event.data) for event in waiting]
        known = [date for date in dates if date is not None]
        oldest = min(known, default=None)
        positions = [event.position for event in waiting]
        summaries.append(
            LimitSummary(
                key,
                len(waiting),
                min(positions),
                max(positions),
                oldest,
                None if oldest is None else now_ms - oldest,
                len(dates) - len(known),
            )
        )
    return summaries


def oldest_age_ms(events: Iterable[ParkedEvent], now_ms: int) -> int | None:
    """The age of the oldest parked event; None when none is parked (or none has a createdAt)."""
    oldest = min((date for event in events if (date := created_at(event.data)) is not None), default=None)
    return None if oldest is None else now_ms - oldest


def expire_batches(events: Sequence[ParkedEvent], events_per_batch: int) -> Iterator[dict[str, str]]:
    """The limits of ``events`` (sorted by limit, as stores list them) in groups of about
    ``events_per_batch`` events, a limit never split: each group is the ``keys`` of one
    :meth:`apply_batch`, limit id to user id."""
    keys: dict[str, str] = {}
    held = 0
    for event in events:
        if event.key not in keys:
            if held >= events_per_batch:
                yield keys
                keys, held = {}, 0
            keys[event.key] = user_id(event.data)
        held += 1
    if keys:
        yield keys


def expire_outcome(snapshot: Snapshot[UserLimit], cutoff_ms: int) -> Outcome[UserLimit]:
    """The outcome that moves the snapshot's parked events created before ``cutoff_ms`` to dead
    letters (raw bytes kept, no Kinesis coordinates: a parked event keeps none).

    Decided on the snapshot the store read inside its commit, never on an earlier listing: an
    event drained meanwhile (its limit was created) is not in it and stays applied.

    Indexes: dead letter ``i`` has index ``i`` and every removal the index after the last dead
    letter. A store that cannot commit everything at once (DynamoDB) writes in index order, so a
    failure part-way leaves an event in both places, dead letter and parked (the next run moves
    it: the dead letter is kept once), never in neither.
    """
    old = [
        event
        for key in sorted(snapshot.parked)
        for event in sorted(snapshot.parked[key], key=lambda event: event.position)
        if (created := created_at(event.data)) is not None and created < cutoff_ms
    ]
    removed_at = len(old)
    outcome: Outcome[UserLimit] = Outcome(size=removed_at + 1)
    outcome.dead_letters = [(index, DeadLetter(EXPIRED_REASON, event.data)) for index, event in enumerate(old)]
    outcome.parked_removed = [(removed_at, event) for event in old]
    for event in old:
        # The limit is expected as read (absent, as a rule): a store with conditional writes
        # refuses the removal if the limit was created meanwhile, and reads and projects again.
        stored = snapshot.states.get(event.key)
        outcome.touched[event.key] = (None if stored is None else stored.last_sequence_number, removed_at)
    outcome.counts.dead_lettered = len(old)
    return outcome
