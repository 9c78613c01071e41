"""The import's event family: snapshot lines and the stream's user-limit events together.

A batch of an import holds snapshot lines only, but draining a limit's parked events decodes them
with the batch's family: so this family decodes both, told apart by a prefix that no stream
record it is given can start with (a parked event is a valid envelope: a JSON object).

A snapshot line is an event that creates its limit, at the line's ``sequenceNumber``: the engine
applies it only where the store has no limit of that id or an older one (rule 3), and, on
creation, drains the limit's parked events above it (rule 7).
"""

from __future__ import annotations

from typing import NamedTuple

from user_limits.domain import drift
from user_limits.domain.events import UserLimitEvent
from user_limits.domain.model import UserLimit
from user_limits.family import UserLimitFamily
from user_limits.operations.snapshots.format import Problem, parse_line
from user_limits.stream.engine import InvalidRecord
from user_limits.stream.records import StreamRecord

SNAPSHOT_PREFIX = b"snapshot line\n"


class ImportedLimit(NamedTuple):
    """A snapshot line as an event: the limit it holds, at the position it reflects."""

    limit: UserLimit


ImportEvent = ImportedLimit | UserLimitEvent


def snapshot_record(line: bytes) -> StreamRecord:
    return StreamRecord(SNAPSHOT_PREFIX + line)


class ImportFamily:
    """Snapshot lines and user-limit events as one :class:`~user_limits.stream.engine.EventFamily`.

    ``limits_applied`` counts the snapshot lines applied since the last :meth:`start`: a store
    may run a batch's projection more than once (after a conflict), and only its last run counts.
    """

    def __init__(self) -> None:
        self.events = UserLimitFamily()
        self.limits_applied = 0

    def start(self) -> None:
        self.limits_applied = 0

    def decode(self, data: bytes) -> ImportEvent | None:
        if data.startswith(SNAPSHOT_PREFIX):
            try:
                return ImportedLimit(parse_line(data[len(SNAPSHOT_PREFIX) :]))
            except Problem as problem:  # checked before the import: only if the file changed since
                raise InvalidRecord(f"invalid snapshot line: {problem.field}: {problem.message}") from None
        return self.events.decode(data)

    def key(self, event: ImportEvent) -> str:
        if isinstance(event, ImportedLimit):
            return event.limit.user_limit_id
        return self.events.key(event)

    def partition(self, event: ImportEvent) -> str:
        if isinstance(event, ImportedLimit):
            return event.limit.user_id
        return self.events.partition(event)

    def position(self, event: ImportEvent) -> int:
        if isinstance(event, ImportedLimit):
            return event.limit.last_sequence_number
        return self.events.position(event)

    def state_position(self, state: UserLimit) -> int:
        return state.last_sequence_number

    def creates(self, event: ImportEvent) -> bool:
        return isinstance(event, ImportedLimit) or self.events.creates(event)

    def apply(self, state: UserLimit | None, event: ImportEvent) -> UserLimit:
        if isinstance(event, ImportedLimit):
            # The snapshot's limit replaces what is stored: the engine applies it only when newer.
            # A snapshot holds no drift: the stored limit's last one stays, as on a creation.
            self.limits_applied += 1
            return drift.carried(state, event.limit)
        return self.events.apply(state, event)

    def drifted(self, state: UserLimit) -> bool:
        return self.events.drifted(state)
