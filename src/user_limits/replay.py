"""Replaying records through the batch path, in batches, with an optional progress callback."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from user_limits.codec import UserLimitFamily
from user_limits.domain.events import UserLimitEvent
from user_limits.domain.model import UserLimit
from user_limits.errors import UserError
from user_limits.stores.base import LimitStore
from user_limits.stream.batch import BatchProcessor
from user_limits.stream.records import Counts, StreamRecord


class ReplayFailed(UserError):
    """The store failed part-way through a replay; the batches before it stay committed."""


def processor_for(store: LimitStore) -> BatchProcessor[UserLimitEvent, UserLimit]:
    return BatchProcessor(UserLimitFamily(), store)


def replay(
    store: LimitStore,
    records: Sequence[StreamRecord],
    batch_size: int = 1000,
    name: str = "input",
    progress: Callable[[int], None] | None = None,
) -> Counts:
    """Apply ``records`` in batches; on a store failure raise ReplayFailed (earlier batches stay)."""
    processor = processor_for(store)
    total = Counts()
    for start in range(0, len(records), batch_size):
        batch = records[start : start + batch_size]
        result = processor.process(batch)
        if result.error is not None:
            first = start + (result.first_failed or 0)
            raise ReplayFailed(
                f"{name}: the store failed at record {first + 1}: {type(result.error).__name__}: {result.error} "
                f"(the {first} records before it are committed; replaying the file again is safe)"
            )
        total.add(result.counts)
        if progress is not None:
            progress(len(batch))
    return total
