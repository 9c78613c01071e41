"""Turns a batch of stream records into one outcome: the ordering, duplicate and parking rules.

The engine is generic: an :class:`EventFamily` says how to decode bytes, which entity an event
belongs to, its position, whether it creates the entity, and how it changes it.

- A record that does not decode is dead-lettered, and so is one the transport layer rejected
  (a :class:`RejectedRecord`); a valid record of a type the family does not handle is ignored.
- Per entity the state keeps the position of the last applied event; an event at or below it is a
  duplicate or a late copy and is skipped.
- An applied event whose producer's figures disagree with the new state is counted drifted (the
  family says which); the state is what the family's rules make of it, drift or not.
- An event for an entity that does not exist yet is parked (once per position); when the entity is
  created, its parked events above the creation are applied in position order.
- Parked events left over for an entity that exists (a concurrent writer parked them while another
  created it) are applied in position order with the batch's events of that entity.

Hot module: every event of every batch goes through :func:`project` (``bench/handler_bench.py``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Generic, Protocol, TypeVar

from user_limits.stream.records import DeadLetter, Outcome, ParkedEvent, RejectedRecord, Snapshot, StreamRecord

E = TypeVar("E")
S = TypeVar("S")


class InvalidRecord(Exception):
    """The record can never be applied; the message is the dead letter's reason."""


class EventFamily(Protocol[E, S]):
    def decode(self, data: bytes) -> E | None:
        """The event, or None for a valid record of a type not handled; raises InvalidRecord."""
        ...

    def key(self, event: E) -> str: ...

    def partition(self, event: E) -> str:
        """The aggregate the entity belongs to (stores may key items by it)."""
        ...

    def position(self, event: E) -> int: ...

    def state_position(self, state: S) -> int: ...

    def creates(self, event: E) -> bool: ...

    def apply(self, state: S | None, event: E) -> S: ...

    def drifted(self, state: S) -> bool:
        """Whether the event that made ``state`` disagreed with the figures its producer sent."""
        ...


class Decoded(Generic[E]):
    """A batch after decoding: its events (with their record index, bytes and key), the entities they
    touch (with their partition) and the batch's dead letters."""

    __slots__ = ("dead_letters", "events", "ignored", "partitions", "size")

    def __init__(self) -> None:
        self.events: list[tuple[int, E, bytes, str]] = []
        # Each entity the batch touches, with its partition, in the order first touched.
        self.partitions: dict[str, str] = {}
        self.dead_letters: list[tuple[int, DeadLetter]] = []
        self.ignored = 0
        self.size = 0


def decode_batch(family: EventFamily[E, S], records: Sequence[StreamRecord]) -> Decoded[E]:
    decoded: Decoded[E] = Decoded()
    decoded.size = len(records)
    decode, key_of, partition_of = family.decode, family.key, family.partition
    add_event, partitions, dead_letters = decoded.events.append, decoded.partitions, decoded.dead_letters
    ignored = 0
    for index, record in enumerate(records):
        if type(record) is RejectedRecord:
            dead_letters.append((index, DeadLetter.of(record, record.reason)))
            continue
        data = record.data
        try:
            event = decode(data)
        except InvalidRecord as error:
            dead_letters.append((index, DeadLetter.of(record, str(error))))
            continue
        if event is None:
            ignored += 1
        else:
            key = key_of(event)
            partitions[key] = partition_of(event)
            add_event((index, event, data, key))
    decoded.ignored = ignored
    return decoded


def project(family: EventFamily[E, S], decoded: Decoded[E], snapshot: Snapshot[S]) -> Outcome[S]:
    """Apply a decoded batch to the snapshot of the entities it touches. Pure: no I/O."""
    # A copy: drain may add to it, and a store may call project again after a conflict.
    outcome: Outcome[S] = Outcome(size=decoded.size, dead_letters=list(decoded.dead_letters))
    counts = outcome.counts
    counts.ignored = decoded.ignored
    counts.dead_lettered = len(decoded.dead_letters)
    position_of, state_position = family.position, family.state_position
    apply, creates, drifted = family.apply, family.creates, family.drifted

    stored_states = snapshot.states
    states = dict(stored_states)
    touched = outcome.touched
    # Parked events per key, by position; those added by this batch are not in the store yet.
    parked: dict[str, dict[int, ParkedEvent]] = {
        key: {event.position: event for event in events} for key, events in snapshot.parked.items() if events
    }
    added: set[tuple[str, int]] = set()
    # The key of each event applied, and of each that drifted: counted once, at the end (Counter
    # counts in C), rather than a counter and a dict entry updated per event.
    applied: list[str] = []
    drifted_keys: list[str] = []
    add_applied, add_drifted = applied.append, drifted_keys.append
    skipped = 0

    def drain(key: str, index: int, below: int | None = None) -> None:
        """Apply the key's parked events in position order (only those below ``below``, if given;
        the others stay parked, for a later drain)."""
        waiting = parked.pop(key, None)
        if not waiting:
            return
        if below is not None:
            later = {position: event for position, event in waiting.items() if position >= below}
            if later:
                parked[key] = later
                waiting = {position: event for position, event in waiting.items() if position < below}
        state = states[key]
        for position in sorted(waiting):
            event = waiting[position]
            if (key, position) in added:
                added.discard((key, position))
            else:
                outcome.parked_removed.append((index, event))
            if position > state_position(state):
                # Parked bytes decoded once already, but perhaps by an older, more lenient version:
                # what no longer decodes is dead-lettered, not left to fail every retry.
                try:
                    parked_event = family.decode(event.data)
                except InvalidRecord as error:
                    outcome.dead_letters.append((index, DeadLetter(str(error), event.data)))
                    counts.dead_lettered += 1
                    continue
                if parked_event is None:
                    counts.ignored += 1
                    continue
                state = apply(state, parked_event)
                add_applied(key)
                if drifted(state):
                    add_drifted(key)
            else:
                counts.skipped += 1
        states[key] = state

    for index, event, data, key in decoded.events:
        if key not in touched:
            stored = stored_states.get(key)
            touched[key] = (None if stored is None else state_position(stored), index)
            if stored is not None and key in parked:
                # Left over from a concurrent writer or a partial commit: applied in position order
                # with this event, those below it first, the others right after it.
                drain(key, index, below=position_of(event))
        state = states.get(key)
        if state is not None:
            if position_of(event) <= state_position(state):
                skipped += 1
            else:
                states[key] = state = apply(state, event)
                add_applied(key)
                if drifted(state):
                    add_drifted(key)
            if key in parked:
                drain(key, index)
        elif creates(event):
            states[key] = state = apply(None, event)
            add_applied(key)
            if drifted(state):
                add_drifted(key)
            drain(key, index)
        else:
            position = position_of(event)
            waiting = parked.setdefault(key, {})
            if position in waiting:
                skipped += 1
                continue
            parked_event = ParkedEvent(key, position, data)
            waiting[position] = parked_event
            added.add((key, position))
            outcome.parked_added.append((index, parked_event))
            counts.parked += 1

    counts.skipped += skipped
    counts.applied = len(applied)
    counts.drifted = len(drifted_keys)
    outcome.applied_by_key = dict(Counter(applied))
    outcome.drifted_by_key = dict(Counter(drifted_keys))
    outcome.states = {
        key: state for key, state in states.items() if key in touched and state is not stored_states.get(key)
    }
    # Events parked and then applied within this batch never reach the store.
    outcome.parked_added = [(i, e) for i, e in outcome.parked_added if (e.key, e.position) in added]
    return outcome
