"""Shard planning for the standalone consumer: which shards to read now, pure (no I/O).

- Assignment is static: a shard belongs to worker ``shard number mod workers``.
- Parents before children: a shard starts only once each parent still on the stream is finished
  (a parent gone past the retention period is as good as finished).
- Finished: a closed shard read to its end is marked by a checkpoint whose sub-sequence is
  :data:`SHARD_END`, committed through the store like any other checkpoint.

The planner's only question to the outside is "is this shard's end checkpointed?", passed in as a
function, so it is tested without a stream or a store.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Collection, Iterable, Set
from dataclasses import dataclass, field
from typing import NamedTuple

from user_limits.stream.records import Checkpoint

# Sub-sequence of the checkpoint that marks a shard finished. KPL sub-sequence numbers are small, and
# kinesis-local reports EndingSequenceNumber as 2**63-1, below its real sequence numbers, so the
# marker sits just above the last record applied instead of relying on EndingSequenceNumber.
SHARD_END = 2**31 - 1


def is_finished(checkpoint: Checkpoint | None) -> bool:
    return checkpoint is not None and checkpoint.sub_sequence_number == SHARD_END


def end_of_shard(stream: str, shard_id: str, last: Checkpoint | None) -> Checkpoint:
    """The checkpoint that marks a shard finished, just above ``last`` (the shard's stored checkpoint)."""
    return Checkpoint(stream, shard_id, last.sequence_number if last is not None else "0", SHARD_END)


def shard_number(shard_id: str) -> int:
    """``shardId-000000000007`` -> 7; any other id gets a stable hash."""
    digits = shard_id.rpartition("-")[2]
    return int(digits) if digits.isdigit() else zlib.crc32(shard_id.encode())


class Assignment(NamedTuple):
    """This consumer's share of the shards: worker ``worker`` of ``workers``."""

    worker: int = 0
    workers: int = 1

    def owns(self, shard_id: str) -> bool:
        return shard_number(shard_id) % self.workers == self.worker


class Shard(NamedTuple):
    """A shard as ListShards lists it: its id and its parents (a merge has two)."""

    shard_id: str
    parent: str | None = None
    adjacent_parent: str | None = None


@dataclass
class Plan:
    # Shards to start reading, with whether they have a parent still on the stream (a child holds
    # only what came after its parents, so it starts at TRIM_HORIZON whatever the start position).
    start: list[tuple[str, bool]] = field(default_factory=list)
    # Shards of this worker found finished in the store: never read again.
    finished: set[str] = field(default_factory=set)


def plan(
    shards: Iterable[Shard],
    assignment: Assignment,
    reading: Collection[str],
    finished: Set[str],
    end_committed: Callable[[str], bool],
) -> Plan:
    """The shards of ``assignment`` to start now, in listing order, and those newly known finished.

    ``reading``: shards already being read; ``finished``: shards known finished; ``end_committed``:
    whether the store holds a shard's :data:`SHARD_END` checkpoint (asked only when needed).
    """
    shards = list(shards)
    listed = {shard.shard_id for shard in shards}
    result = Plan()
    done = set(finished)

    def parent_finished(shard_id: str) -> bool:
        if shard_id in done:
            return True
        if end_committed(shard_id):
            if assignment.owns(shard_id):
                done.add(shard_id)
                result.finished.add(shard_id)
            return True
        return False

    for shard in shards:
        shard_id = shard.shard_id
        if shard_id in reading or shard_id in done or not assignment.owns(shard_id):
            continue
        if end_committed(shard_id):
            done.add(shard_id)
            result.finished.add(shard_id)
            continue
        # Parents gone past the retention period are as good as finished.
        parents = [p for p in (shard.parent, shard.adjacent_parent) if p in listed]
        if not all(parent_finished(p) for p in parents):
            continue
        result.start.append((shard_id, bool(parents)))
    return result
