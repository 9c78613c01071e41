"""Everything one store holds, copied into another of any kind: ``user-limits migrate``.

What is copied, in this order:

- the limits (each one's whole stored state, its position included), then the parked events, then
  the dead letters (in their listing order), in batches through the target's own write path,
  :meth:`~user_limits.stores.base.LimitStore.apply_batch`, with an outcome made of the source's
  rows in place of a projection. So each store writes them exactly as a stream batch would (the
  same rows, the same DynamoDB items), a limit only where the target has none or an older one
  (rule 3), a parked event or a dead letter kept once; a batch commits like a stream batch;
- last, the stream bookkeeping: the counters (by name, whatever counters the store keeps), every
  checkpoint and ``asOf`` (:meth:`~user_limits.stores.base.LimitStore.load_state`).

The source is only read. The target's counters are set to 0 first (which also refuses a counter
it cannot keep before anything is copied), so a copy cut short leaves it holding part of the
source and no counts; the same command with ``--force`` then completes it (what is there already
is kept once).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import TypeVar

from user_limits.domain.model import UserLimit
from user_limits.stores.base import LimitStore
from user_limits.stream.records import DeadLetter, Outcome, ParkedEvent, Snapshot

T = TypeVar("T")

# (phase, items done in this phase so far, the phase's total when known)
Advanced = Callable[[str, int, int | None], None]
PHASES = ("limits", "parked events", "dead letters")


@dataclass(slots=True)
class MigrateCounts:
    """What was copied (or, in a dry run, would be)."""

    limits: int = 0
    parked: int = 0
    dead_letters: int = 0
    checkpoints: int = 0
    counters: dict[str, int] = field(default_factory=dict)
    as_of: int | None = None


def holds_anything(store: LimitStore) -> bool:
    """Whether the store holds a limit, a parked event, a dead letter, a counter, a checkpoint or asOf."""
    # The cheap reads first: a store that ever applied a batch has a counter or asOf.
    if store.as_of() is not None or any(store.counters().values()) or store.checkpoints():
        return True
    held = store.stats()
    return bool(held.waiting or held.dead_letters or next(iter(store.all_limits()), None) is not None)


def migrate(
    source: LimitStore,
    target: LimitStore | None,
    batch_size: int = 1000,
    advanced: Advanced | None = None,
) -> MigrateCounts:
    """Copy everything ``source`` holds into ``target``; ``target`` None: a dry run, count only."""
    counts = MigrateCounts()
    if target is not None:
        # First the counters at 0 under the source's names: a name the target cannot keep is refused
        # before anything is copied, and a copy cut short shows no counts.
        target.load_state(dict.fromkeys(source.counters(), 0), [], None)

    def report(phase: str, done: int, total: int | None) -> None:
        if advanced is not None:
            advanced(phase, done, total)

    for limits in _batches(source.all_limits(), batch_size):
        if target is not None:
            target.apply_batch({limit.user_limit_id: limit.user_id for limit in limits}, _loaded(limits=limits))
        counts.limits += len(limits)
        report("limits", counts.limits, None)
    parked = source.parked_events()
    for events in _batches(parked, batch_size):
        if target is not None:
            # The user whose partition holds the limit is unknown here: the store finds it (DynamoDB).
            target.apply_batch(dict.fromkeys((event.key for event in events), ""), _loaded(parked=events))
        counts.parked += len(events)
        report("parked events", counts.parked, len(parked))
    letters = source.dead_letters()
    for batch in _batches(letters, batch_size):
        if target is not None:
            target.apply_batch({}, _loaded(dead_letters=batch))
        counts.dead_letters += len(batch)
        report("dead letters", counts.dead_letters, len(letters))
    counts.counters, checkpoints, counts.as_of = source.counters(), source.checkpoints(), source.as_of()
    counts.checkpoints = len(checkpoints)
    if target is not None:
        target.load_state(counts.counters, checkpoints, counts.as_of)
    return counts


def _loaded(
    limits: Sequence[UserLimit] = (),
    parked: Sequence[ParkedEvent] = (),
    dead_letters: Sequence[DeadLetter] = (),
) -> Callable[[Snapshot[UserLimit]], Outcome[UserLimit]]:
    """The outcome that writes these rows over what the target holds for them (its snapshot):
    a limit where the target has none or an older one, a parked event it does not hold yet, every
    dead letter (kept once by the store). It counts nothing: the counters are copied at the end."""

    def project(snapshot: Snapshot[UserLimit]) -> Outcome[UserLimit]:
        outcome: Outcome[UserLimit] = Outcome()

        def touch(key: str, index: int) -> None:
            held = snapshot.states.get(key)
            outcome.touched.setdefault(key, (None if held is None else held.last_sequence_number, index))

        for index, limit in enumerate(limits):
            key = limit.user_limit_id
            touch(key, index)
            held = snapshot.states.get(key)
            if held is None or held.last_sequence_number < limit.last_sequence_number:
                outcome.states[key] = limit
        waiting = {(event.key, event.position) for events in snapshot.parked.values() for event in events}
        for index, event in enumerate(parked, start=len(limits)):
            if (event.key, event.position) not in waiting:
                touch(event.key, index)
                outcome.parked_added.append((index, event))
        start = len(limits) + len(parked)
        outcome.dead_letters = list(enumerate(dead_letters, start=start))
        outcome.size = start + len(dead_letters)
        return outcome

    return project


def _batches(items: Iterable[T], size: int) -> Iterator[list[T]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch
