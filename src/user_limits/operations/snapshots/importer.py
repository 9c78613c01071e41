"""Writing a store's snapshot, and importing one: checked whole first, then applied in batches.

A file is read twice: the first reading checks every line (a malformed one refuses the whole file
before anything is written), the second applies it, batch by batch, through the batch path; each
batch is one outcome, as a stream batch is. A dry run computes each batch's outcome against the
store and commits none of it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import IO

from user_limits.domain.model import UserLimit
from user_limits.errors import UserError
from user_limits.operations.snapshots.family import ImportEvent, ImportFamily, snapshot_record
from user_limits.operations.snapshots.format import (
    Problem,
    SnapshotFile,
    SnapshotFormatError,
    parse_line,
    snapshot_line,
)
from user_limits.stores.base import LimitStore
from user_limits.stream.batch import BatchProcessor
from user_limits.stream.records import Counts, Outcome, Snapshot


class ImportFailed(UserError):
    """The store failed part-way through an import; the batches before it stay committed."""


@dataclass(slots=True)
class ImportCounts:
    limits: int = 0
    # Snapshot lines applied, and skipped because the store holds that limit at the same or a newer position.
    applied: int = 0
    skipped: int = 0
    # The parked events the applied limits drained: applied above the limit's position, removed at or
    # below it, dead-lettered when they no longer decode, ignored when of a type no longer handled.
    drained: int = 0
    drained_skipped: int = 0
    drained_dead_lettered: int = 0
    drained_ignored: int = 0


def write_snapshot(store: LimitStore, out: IO[bytes]) -> int:
    """Every limit of ``store`` as a snapshot line, as the store yields them; the number written."""
    written = 0
    for limit in store.all_limits():
        out.write(snapshot_line(limit) + b"\n")
        written += 1
    return written


Progress = Callable[[str, int], None]
"""Told the phase ("checking", then "importing") and the bytes of the file read so far."""
_EVERY = 1000


def check(file: SnapshotFile, progress: Progress | None = None) -> int:
    """The number of limits in ``file``; raises SnapshotFormatError at the first malformed line."""
    seen: set[bytes] = set()
    count = 0
    for number, line in file.lines():
        limit = _parsed(file, number, line)
        # One line per limit: their order is free, so two lines of one id would make the result
        # depend on it. Digests keep the memory small; a match is confirmed by reading again.
        digest = hashlib.blake2b(limit.user_limit_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
        if digest in seen:
            earlier = _line_of(file, limit.user_limit_id, number)
            if earlier is not None:
                raise Problem("userLimitId", f"the same id as line {earlier} (one line per limit)").at(
                    file.name, number
                )
        seen.add(digest)
        count += 1
        if progress is not None and not count % _EVERY:
            progress("checking", file.consumed)
    return count


def _parsed(file: SnapshotFile, number: int, line: bytes) -> UserLimit:
    try:
        return parse_line(line)
    except Problem as problem:
        raise problem.at(file.name, number) from None


def _line_of(file: SnapshotFile, user_limit_id: str, before: int) -> int | None:
    again = SnapshotFile(file.opener, file.name, file.size)
    for number, line in again.lines():
        if number >= before:
            return None
        if parse_line(line).user_limit_id == user_limit_id:
            return number
    return None


class _DryRun(Exception):
    """Raised by a dry run's projection, once its outcome is known, so that the store commits none of it."""


class _Counting:
    """The store, seen through the batch path: keeps the committed outcome's split between snapshot
    lines and drained parked events; in a dry run, refuses to commit."""

    def __init__(self, store: LimitStore, family: ImportFamily, dry_run: bool) -> None:
        self.store = store
        self.family = family
        self.dry_run = dry_run
        self.outcome: Outcome[UserLimit] | None = None
        self.limits_applied = 0

    def apply_batch(
        self, keys: Mapping[str, str], project: Callable[[Snapshot[UserLimit]], Outcome[UserLimit]]
    ) -> Outcome[UserLimit]:
        def counted(snapshot: Snapshot[UserLimit]) -> Outcome[UserLimit]:
            self.family.start()
            outcome = project(snapshot)
            self.outcome, self.limits_applied = outcome, self.family.limits_applied
            if self.dry_run:
                raise _DryRun
            return outcome

        self.outcome = None
        return self.store.apply_batch(keys, counted)

    def close(self) -> None:
        """The wrapped store belongs to the caller, who closes it."""


def import_snapshot(
    store: LimitStore,
    file: SnapshotFile,
    batch_size: int = 1000,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> ImportCounts:
    """Check the whole of ``file``, then apply it in batches of ``batch_size`` lines (none of it
    in a dry run)."""
    check(file, progress)
    family = ImportFamily()
    counting = _Counting(store, family, dry_run)
    processor: BatchProcessor[ImportEvent, UserLimit] = BatchProcessor(family, counting)
    counts = ImportCounts()
    for batch in _batches(file, batch_size):
        records = [snapshot_record(line) for line in batch]
        result = processor.process(records)
        outcome = counting.outcome
        if dry_run and outcome is not None:
            pass  # computed, and refused by the projection itself: nothing committed
        elif result.error is not None or outcome is None:
            first = counts.limits + (result.first_uncommitted or 0)
            raise ImportFailed(
                f"{file.name}: the store failed at limit {first + 1}: {type(result.error).__name__}: {result.error} "
                f"(the {counts.limits} limits before its batch are committed; importing the file again is safe)"
            )
        _add(counts, outcome.counts, counting.limits_applied, len(batch))
        if progress is not None:
            progress("importing", file.consumed)
    return counts


def _batches(file: SnapshotFile, size: int) -> Iterator[list[bytes]]:
    batch: list[bytes] = []
    for number, line in file.lines():
        # Checked already; checked again, in case the file changed since: never import a bad line.
        try:
            parse_line(line)
        except Problem as problem:
            error = problem.at(file.name, number)
            raise SnapshotFormatError(f"{error} (the file changed while it was imported)") from None
        batch.append(line)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _add(counts: ImportCounts, batch: Counts, limits_applied: int, limits: int) -> None:
    counts.limits += limits
    counts.applied += limits_applied
    counts.skipped += limits - limits_applied
    counts.drained += batch.applied - limits_applied
    counts.drained_skipped += batch.skipped - (limits - limits_applied)
    counts.drained_dead_lettered += batch.dead_lettered
    counts.drained_ignored += batch.ignored
