"""Dead letters back in: their records through today's rules, on the batch path of the stream.

A redrive batch is decoded and projected like a stream batch (:mod:`.engine`), with two
differences in its outcome:

- a record that now decodes goes the normal way (applied, skipped, parked or ignored) and its
  dead letter is removed in the same commit (``Outcome.dead_letters_removed``);
- a record that still fails is not dead-lettered again: its dead letter stays, with today's
  reason (``Outcome.dead_letters_renewed``).

A redrive carries no checkpoint: it is not a position of the live stream. Dead letters that the
projection itself makes (a parked event drained by a redriven creation that no longer decodes)
are kept as new dead letters, as in any batch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from user_limits.stream.batch import ProjectionStore
from user_limits.stream.engine import E, EventFamily, S, decode_batch, project
from user_limits.stream.records import DeadLetter, Outcome, Snapshot, StreamRecord


class _DryRun(Exception):
    """Raised inside a store's commit to roll it back: the outcome of a dry run."""

    def __init__(self, outcome: Outcome[Any]) -> None:
        super().__init__("dry run")
        self.outcome = outcome


def letter_id(record: StreamRecord) -> str:
    """The id of the dead letter a record is kept as (its coordinates, or its bytes)."""
    return DeadLetter("", *record).id


def redrive(
    family: EventFamily[E, S], store: ProjectionStore[S], records: Sequence[StreamRecord], dry_run: bool = False
) -> Outcome[S]:
    """Run dead letters' records (bytes and coordinates as kept) through the rules, in the order
    given, as one commit; the outcome committed, or, for a dry run, what would be (the store's
    commit is rolled back). Raises what the store raises (CommitError: the part committed)."""
    decoded = decode_batch(family, records)
    ids = [letter_id(record) for record in records]
    keys_of = {index: key for index, _, _, key in decoded.events}

    def run(snapshot: Snapshot[S]) -> Outcome[S]:
        outcome = project(family, decoded, snapshot)
        # The records that failed to decode are the batch's dead letters at their own index; those
        # of drained parked events carry the index of the creation that drained them.
        failed = {index for index, _ in decoded.dead_letters}
        outcome.dead_letters_renewed = [(i, letter) for i, letter in outcome.dead_letters if i in failed]
        outcome.dead_letters = [(i, letter) for i, letter in outcome.dead_letters if i not in failed]
        outcome.dead_letters_removed = [
            (index, keys_of.get(index), ids[index]) for index in range(len(records)) if index not in failed
        ]
        return outcome

    project_batch: Callable[[Snapshot[S]], Outcome[S]] = run
    if dry_run:

        def project_batch(snapshot: Snapshot[S]) -> Outcome[S]:
            raise _DryRun(run(snapshot))

    keys: Mapping[str, str] = decoded.partitions
    try:
        return store.apply_batch(keys, project_batch)
    except _DryRun as done:
        result: Outcome[S] = done.outcome
        return result
