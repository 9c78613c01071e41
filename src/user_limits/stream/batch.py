"""The one batch path shared by the Lambda handler, the consumer and the CLI's replay."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from user_limits.stream.engine import E, EventFamily, decode_batch, project
from user_limits.stream.records import Checkpoint, CommitError, Counts, LeaseLost, Outcome, Snapshot, StreamRecord

S = TypeVar("S")


class ProjectionStore(Protocol[S]):
    def apply_batch(self, keys: Mapping[str, str], project: Callable[[Snapshot[S]], Outcome[S]]) -> Outcome[S]:
        """Load the snapshot of ``keys`` (entity key -> partition), let ``project`` compute the outcome, and commit it.

        Atomic stores commit all or nothing and raise on failure; stores without a transaction over
        many items raise :class:`CommitError` naming the first record whose effect is not committed.
        The returned outcome's counts are what was committed.
        """
        ...

    def close(self) -> None: ...


@dataclass(slots=True)
class BatchResult:
    # What the store committed: all of the batch's counts, or, after a failure, those of the part
    # it committed (nothing, for an atomic store).
    counts: Counts = field(default_factory=Counts)
    # Index of the first record whose effect is not committed; None when all of it is.
    first_uncommitted: int | None = None
    error: BaseException | None = None


class BatchProcessor(Generic[E, S]):
    def __init__(self, family: EventFamily[E, S], store: ProjectionStore[S]) -> None:
        self.family = family
        self.store = store

    def process(self, records: Sequence[StreamRecord], checkpoint: Checkpoint | None = None) -> BatchResult:
        if not records:
            return BatchResult()
        family = self.family
        decoded = decode_batch(family, records)

        def run(snapshot: Snapshot[S]) -> Outcome[S]:
            outcome = project(family, decoded, snapshot)
            outcome.checkpoint = checkpoint
            return outcome

        try:
            outcome = self.store.apply_batch(decoded.partitions, run)
        except CommitError as error:
            return BatchResult(error.committed, error.first_uncommitted, error.cause or error)
        except Exception as error:  # an atomic store committed nothing
            return BatchResult(first_uncommitted=0, error=error)
        return BatchResult(counts=outcome.counts)

    def commit_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Commit ``checkpoint`` with no records: how a reader marks the end of a shard. Raises
        what the store raises; a lease lost as :class:`LeaseLost`, whichever store."""

        def only_checkpoint(snapshot: Snapshot[S]) -> Outcome[S]:
            return Outcome(checkpoint=checkpoint)

        try:
            self.store.apply_batch({}, only_checkpoint)
        except CommitError as error:
            if isinstance(error.cause, LeaseLost):
                raise error.cause from error
            raise
