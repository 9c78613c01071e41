"""An in-memory store: the reference for the contract tests and the fastest path for benchmarks."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence

from user_limits.domain.model import UserLimit
from user_limits.stores.base import LimitStore, StoreError, Totals
from user_limits.stores.text import bounded_reason
from user_limits.stream.records import Checkpoint, Counts, DeadLetter, Outcome, ParkedEvent, Snapshot

# Reads are dict lookups: nothing to wait for.
READS_IN_PROCESS = True


# Counts fields that are what a store holds now, not what it counted.
_HELD = frozenset({"parked", "dead_lettered"})
COUNTERS = tuple(field.name for field in dataclasses.fields(Counts) if field.name not in _HELD)


def open_store(url: str, *, read_only: bool = False) -> LimitStore:
    """``read_only`` changes nothing: a new memory store is empty and nothing else sees it."""
    return MemoryStore(url)


def initialize(url: str) -> str:
    """Nothing to create: a memory store lives and dies with its process."""
    return f"{url}: ready"


class MemoryStore:
    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        self._lock = threading.Lock()
        self._limits: dict[str, UserLimit] = {}
        self._by_user: dict[str, set[str]] = {}
        self._parked: dict[str, dict[int, ParkedEvent]] = {}
        self._dead: dict[str, DeadLetter] = {}
        self._counts = Counts()
        self._checkpoints: dict[tuple[str, str], Checkpoint] = {}
        self._as_of: int | None = None

    def apply_batch(
        self, keys: Mapping[str, str], project: Callable[[Snapshot[UserLimit]], Outcome[UserLimit]]
    ) -> Outcome[UserLimit]:
        with self._lock:
            limits, parked = self._limits, self._parked
            snapshot: Snapshot[UserLimit] = Snapshot(
                {key: limits[key] for key in keys if key in limits},
                # Over the smaller of the two: few limits have parked events.
                {
                    key: list(parked[key].values())
                    for key in (keys if len(keys) < len(parked) else parked)
                    if key in keys and parked.get(key)
                },
            )
            outcome = project(snapshot)
            self._commit(outcome)
            return outcome

    def _commit(self, outcome: Outcome[UserLimit]) -> None:
        if outcome.checkpoint is not None:
            cp = outcome.checkpoint
            stored = self._checkpoints.get((cp.stream, cp.shard_id))
            if stored is None or stored.order() < cp.order():
                self._checkpoints[(cp.stream, cp.shard_id)] = cp._replace(lease=None)
        limits, by_user, as_of = self._limits, self._by_user, self._as_of
        for key, limit in outcome.states.items():
            stored_limit = limits.get(key)
            if stored_limit is None or stored_limit.last_sequence_number < limit.last_sequence_number:
                limits[key] = limit
                # The user's index changes only for a new limit or one that moved to another user.
                if stored_limit is None or stored_limit.user_id != limit.user_id:
                    if stored_limit is not None:
                        by_user[stored_limit.user_id].discard(key)
                    users = by_user.get(limit.user_id)
                    if users is None:
                        by_user[limit.user_id] = {key}
                    else:
                        users.add(key)
                if as_of is None or limit.updated_at > as_of:
                    as_of = limit.updated_at
        self._as_of = as_of
        for _, event in outcome.parked_added:
            self._parked.setdefault(event.key, {})[event.position] = event
        for _, event in outcome.parked_removed:
            waiting = self._parked.get(event.key)
            if waiting is not None:
                waiting.pop(event.position, None)
                if not waiting:
                    del self._parked[event.key]
        dead = self._dead
        for _, _, letter_id in outcome.dead_letters_removed:
            dead.pop(letter_id, None)
        for _, letter in outcome.dead_letters_renewed:
            kept = dead.get(letter.id)
            if kept is not None:  # in its place: the listing order stays
                dead[letter.id] = kept._replace(reason=bounded_reason(letter.reason))
        for _, letter in outcome.dead_letters:
            if letter.id not in self._dead:
                self._dead[letter.id] = letter._replace(reason=bounded_reason(letter.reason))
        counts = outcome.counts
        self._counts.applied += counts.applied
        self._counts.skipped += counts.skipped
        self._counts.ignored += counts.ignored
        self._counts.drifted += counts.drifted

    def checkpoint(self, stream: str, shard_id: str) -> Checkpoint | None:
        return self._checkpoints.get((stream, shard_id))

    def load_state(self, counters: Mapping[str, int], checkpoints: Sequence[Checkpoint], as_of: int | None) -> None:
        unknown = sorted(set(counters) - set(COUNTERS))
        if unknown:
            raise StoreError(f"{self.url}: keeps no counter {', '.join(unknown)}")
        with self._lock:
            for name in COUNTERS:
                setattr(self._counts, name, counters.get(name, 0))
            self._as_of = as_of
            for checkpoint in checkpoints:
                stored = self._checkpoints.get((checkpoint.stream, checkpoint.shard_id))
                if stored is None or stored.order() < checkpoint.order():
                    self._checkpoints[(checkpoint.stream, checkpoint.shard_id)] = checkpoint

    def user_limits(self, user_id: str) -> list[UserLimit]:
        return [self._limits[key] for key in sorted(self._by_user.get(user_id, ()))]

    def user_limit(self, user_id: str, user_limit_id: str) -> UserLimit | None:
        limit = self._limits.get(user_limit_id)
        return limit if limit is not None and limit.user_id == user_id else None

    def all_limits(self) -> Iterator[UserLimit]:
        return iter([self._limits[key] for key in sorted(self._limits)])

    def drifted_limits(self) -> list[UserLimit]:
        return [limit for limit in self.all_limits() if limit.drift_sequence_number is not None]

    def parked_events(self) -> list[ParkedEvent]:
        return sorted(
            (event for waiting in self._parked.values() for event in waiting.values()),
            key=lambda event: (event.key, event.position),
        )

    def dead_letters(self) -> list[DeadLetter]:
        return list(self._dead.values())

    def stats(self) -> Totals:
        counts = self._counts
        waiting = sum(len(events) for events in self._parked.values())
        return Totals(counts.applied, counts.skipped, counts.ignored, waiting, len(self._dead), counts.drifted)

    def as_of(self) -> int | None:
        return self._as_of

    def counters(self) -> dict[str, int]:
        return {name: getattr(self._counts, name) for name in COUNTERS}

    def checkpoints(self) -> list[Checkpoint]:
        return [self._checkpoints[key] for key in sorted(self._checkpoints)]

    def ping(self) -> None:
        return None

    def close(self) -> None:
        return None
