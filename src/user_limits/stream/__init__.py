"""Generic stream machinery: records, dead letters, parking, batch outcomes and checkpoints.

Nothing here knows about user limits: an event family plugs in through :class:`EventFamily`.
"""

from user_limits.stream.batch import BatchProcessor, BatchResult, ProjectionStore
from user_limits.stream.engine import EventFamily, InvalidRecord
from user_limits.stream.records import (
    Checkpoint,
    CommitError,
    Counts,
    DeadLetter,
    Outcome,
    ParkedEvent,
    RejectedRecord,
    Snapshot,
    StreamRecord,
)

__all__ = [
    "BatchProcessor",
    "BatchResult",
    "Checkpoint",
    "CommitError",
    "Counts",
    "DeadLetter",
    "EventFamily",
    "InvalidRecord",
    "Outcome",
    "ParkedEvent",
    "ProjectionStore",
    "RejectedRecord",
    "Snapshot",
    "StreamRecord",
]
