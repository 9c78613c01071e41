"""The store interface every backend implements (memory, SQLite, PostgreSQL, DynamoDB).

Write side: :meth:`apply_batch` (one read of every limit a batch touches, one commit of the
outcome, conditional on the stored sequence number). Read side: what the CLI and the read API need.
Filtering, sorting and pagination of one user's limits happen above the store, over
:meth:`user_limits` (one indexed read), so every backend serves the API the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Protocol

from user_limits.domain.model import UserLimit
from user_limits.errors import UserError
from user_limits.stream.records import Checkpoint, Counts, DeadLetter, Outcome, ParkedEvent, Snapshot


class StoreError(UserError):
    """A store cannot be opened or used; the message is meant for the user."""


class LimitStore(Protocol):
    url: str

    # -- write side
    def apply_batch(
        self, keys: Mapping[str, str], project: Callable[[Snapshot[UserLimit]], Outcome[UserLimit]]
    ) -> Outcome[UserLimit]: ...

    def checkpoint(self, stream: str, shard_id: str) -> Checkpoint | None: ...

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

    def stats(self) -> Counts:
        """applied, skipped, ignored and drifted as counted; parked and deadLettered as held now."""
        ...

    def as_of(self) -> int | None:
        """The newest event time (envelope createdAt, epoch ms) the store has applied."""
        ...

    def ping(self) -> None:
        """Raise if the store does not answer."""
        ...

    def close(self) -> None: ...
