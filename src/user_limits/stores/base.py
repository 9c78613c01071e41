"""The store interface every backend implements (memory, SQLite, PostgreSQL, DynamoDB).

Write side: :meth:`apply_batch` (one read of every limit a batch touches, one commit of the
outcome, conditional on the stored sequence number), and :meth:`load_state` for ``migrate``, which
writes the stream bookkeeping that no batch sets outright. Read side: what the CLI and the read API
need, and what ``migrate`` copies (:meth:`counters`, :meth:`checkpoints`).
Filtering, sorting and pagination of one user's limits happen above the store, over
:meth:`user_limits` (one indexed read), so every backend serves the API the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from user_limits.domain.model import UserLimit
from user_limits.errors import UserError
from user_limits.stream.records import Checkpoint, DeadLetter, Outcome, ParkedEvent, Snapshot


class StoreError(UserError):
    """A store cannot be opened or used; the message is meant for the user."""


@dataclass(frozen=True, slots=True)
class Totals:
    """What a store reports in ``stats``: events counted since it began, and records held now.

    Not a batch's :class:`Counts`: there ``parked`` is what one batch parked, here ``waiting`` is
    what waits now (parked by any batch and not yet drained or expired), and ``dead_letters`` is
    what is held now (after any expiry), not what was ever dead-lettered. The JSON keys are the
    ``stats --json`` contract: ``parked`` and ``deadLettered``.
    """

    applied: int = 0
    skipped: int = 0
    ignored: int = 0
    waiting: int = 0
    dead_letters: int = 0
    drifted: int = 0

    def as_json(self) -> dict[str, int]:
        return {
            "applied": self.applied,
            "skipped": self.skipped,
            "ignored": self.ignored,
            "parked": self.waiting,
            "deadLettered": self.dead_letters,
            "drifted": self.drifted,
        }


class LimitStore(Protocol):
    url: str

    # -- write side
    def apply_batch(
        self, keys: Mapping[str, str], project: Callable[[Snapshot[UserLimit]], Outcome[UserLimit]]
    ) -> Outcome[UserLimit]: ...

    def checkpoint(self, stream: str, shard_id: str) -> Checkpoint | None: ...

    def load_state(self, counters: Mapping[str, int], checkpoints: Sequence[Checkpoint], as_of: int | None) -> None:
        """Set the counters (by name; those not given to 0) and ``asOf`` to these, and store each
        checkpoint unless a later one is stored: a copy of another store's bookkeeping (``migrate``).
        A counter name a store cannot keep (a SQL store has a column per counter) is a StoreError,
        and nothing is written."""
        ...

    # -- read side
    def user_limits(self, user_id: str) -> list[UserLimit]: ...

    def user_limit(self, user_id: str, user_limit_id: str) -> UserLimit | None: ...

    def all_limits(self) -> Iterator[UserLimit]:
        """Every limit, sorted by userLimitId."""
        ...

    def drifted_limits(self) -> list[UserLimit]:
        """The limits that keep a last drift (``drift_sequence_number`` set), sorted by userLimitId."""
        ...

    def parked_events(self) -> list[ParkedEvent]: ...

    def dead_letters(self) -> list[DeadLetter]: ...

    def stats(self) -> Totals:
        """applied, skipped, ignored and drifted as counted; waiting parked events and dead letters as held now."""
        ...

    def as_of(self) -> int | None:
        """The newest event time (envelope createdAt, epoch ms) the store has applied."""
        ...

    def counters(self) -> dict[str, int]:
        """Every counter the store keeps (applied, skipped, ignored, ...) by name: what it counted,
        not what it holds (parked and dead-lettered are counted from the rows)."""
        ...

    def checkpoints(self) -> list[Checkpoint]:
        """Every stored checkpoint, sorted by stream and shard."""
        ...

    def ping(self) -> None:
        """Raise if the store does not answer."""
        ...

    def close(self) -> None: ...
