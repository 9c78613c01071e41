"""Dead letters back in (``user-limits dead-letters redrive``): which ones, in which order, and the counts.

- **Selection.** ``--reason TEXT`` takes the dead letters whose reason contains TEXT (case
  sensitive: reasons quote field names and values as they are); each ``--id`` one dead letter by
  its id. Both given: a dead letter must match both. Neither: every dead letter.
- **Order.** The stream's: dead letters with Kinesis coordinates first, by stream, shard, then
  sequence number and sub-sequence number compared as integers (decimal strings of up to 128
  bits); then those without (replayed from a file or an archive, moved from the parked events)
  in the order the store keeps them, which is the order they were kept in.
- **Records the transport rejected** (a KPL aggregate that cannot be de-aggregated, a Lambda
  record or event of a shape AWS never sends) are kept whole: their bytes are not an envelope,
  so they go back through the same rejection and stay, with their reason.

Each batch of :data:`BATCH` dead letters (at most :data:`PER_KEY` of one limit) is one commit
(:func:`user_limits.stream.redrive.redrive`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from user_limits.domain.events import UserLimitEvent
from user_limits.domain.model import UserLimit
from user_limits.errors import UserError
from user_limits.family import UserLimitFamily
from user_limits.kinesis.records import TRANSPORT_REASONS
from user_limits.stores.base import LimitStore
from user_limits.stream.engine import EventFamily, InvalidRecord
from user_limits.stream.records import CommitError, DeadLetter, RejectedRecord, StreamRecord
from user_limits.stream.redrive import redrive

BATCH = 1000
# Dead letters of one limit in one batch: their deletions go with the limit's write, in one
# DynamoDB transaction (100 actions, a few of them the limit's own).
PER_KEY = 50

# Kinesis allows sequence numbers of up to 129 digits; anything else (from a record of a shape AWS
# never sends) orders as a dead letter without coordinates.
_MAX_SEQUENCE_DIGITS = 129


@dataclass(slots=True)
class RedriveCounts:
    """What a redrive did (or, for a dry run, would do)."""

    redriven: int = 0  # dead letters run through the rules
    applied: int = 0
    skipped: int = 0
    ignored: int = 0
    parked: int = 0
    still_dead: int = 0  # kept, with today's reason
    dead_lettered: int = 0  # new dead letters: parked events drained by a redriven creation that no longer decode

    def as_json(self) -> dict[str, int]:
        return {
            "redriven": self.redriven,
            "applied": self.applied,
            "skipped": self.skipped,
            "ignored": self.ignored,
            "parked": self.parked,
            "stillDead": self.still_dead,
            "deadLettered": self.dead_lettered,
        }

    def line(self) -> str:
        return (
            f"redriven {self.redriven}: applied {self.applied}, skipped {self.skipped}, ignored {self.ignored}, "
            f"parked {self.parked}, still dead {self.still_dead}"
            + (f", dead-lettered {self.dead_lettered}" if self.dead_lettered else "")
        )


def select(letters: Iterable[DeadLetter], reason: str | None, ids: Sequence[str]) -> list[DeadLetter]:
    """The dead letters a redrive takes (see the module's docstring), in stream order."""
    wanted = set(ids)
    chosen = [
        letter
        for letter in letters
        if (reason is None or reason in letter.reason) and (not wanted or letter.id in wanted)
    ]
    return in_stream_order(chosen)


def in_stream_order(letters: Sequence[DeadLetter]) -> list[DeadLetter]:
    """Those with coordinates by (stream, shard, sequence number, sub-sequence number) as
    integers, then the others as given (sorted() is stable)."""

    def order(item: tuple[int, DeadLetter]) -> tuple[int, str, str, int, int, int]:
        stored, letter = item
        sequence = letter.sequence_number
        if sequence is None or not (sequence.isascii() and sequence.isdigit()) or len(sequence) > _MAX_SEQUENCE_DIGITS:
            return (1, "", "", 0, 0, stored)
        return (0, letter.stream_arn or "", letter.shard_id or "", int(sequence), letter.sub_sequence_number or 0, 0)

    return [letter for _, letter in sorted(enumerate(letters), key=order)]


def missing_ids(letters: Iterable[DeadLetter], ids: Sequence[str]) -> list[str]:
    """The ids asked for that no dead letter has (already redriven, or mistyped)."""
    held = {letter.id for letter in letters}
    return [letter_id for letter_id in dict.fromkeys(ids) if letter_id not in held]


def record_of(letter: DeadLetter) -> StreamRecord:
    """The record a dead letter keeps: its bytes and coordinates (a transport rejection as such)."""
    record = StreamRecord(*letter[1:])
    if letter.reason.startswith(TRANSPORT_REASONS):
        return RejectedRecord.of(record, letter.reason)
    return record


def batches(
    letters: Sequence[DeadLetter],
    family: EventFamily[UserLimitEvent, UserLimit],
    size: int = BATCH,
    per_key: int = PER_KEY,
) -> Iterator[Sequence[DeadLetter]]:
    """The letters in order, cut into batches of at most ``size``, and at most ``per_key`` for one
    limit: each leaves the dead letters with its limit's write, in one DynamoDB transaction of at
    most 100 actions."""
    batch: list[DeadLetter] = []
    per: dict[str, int] = {}
    for letter in letters:
        key = _key(family, letter)
        if len(batch) == size or (key is not None and per.get(key, 0) == per_key):
            yield batch
            batch, per = [], {}
        batch.append(letter)
        if key is not None:
            per[key] = per.get(key, 0) + 1
    if batch:
        yield batch


def _key(family: EventFamily[UserLimitEvent, UserLimit], letter: DeadLetter) -> str | None:
    """The limit a dead letter's record would change, if it decodes now."""
    if letter.reason.startswith(TRANSPORT_REASONS):
        return None
    try:
        event = family.decode(letter.data)
    except InvalidRecord:
        return None
    return None if event is None else family.key(event)


def redrive_all(
    store: LimitStore,
    letters: Sequence[DeadLetter],
    dry_run: bool = False,
    family: EventFamily[UserLimitEvent, UserLimit] | None = None,
    advanced: Callable[[int], None] | None = None,
) -> RedriveCounts:
    """Redrive ``letters`` (in the order given) a batch at a time; UserError when the store fails,
    saying what was committed before (running it again is safe: what left the dead letters is gone)."""
    family = family if family is not None else UserLimitFamily()
    counts = RedriveCounts()
    for batch in batches(letters, family):
        try:
            outcome = redrive(family, store, [record_of(letter) for letter in batch], dry_run)
        except CommitError as error:
            raise UserError(
                f"the store failed: {type(error.cause).__name__}: {error.cause} (before it: {counts.line()}; "
                "running it again is safe: what was committed left the dead letters)"
            ) from None
        counts.redriven += len(batch)
        counts.applied += outcome.counts.applied
        counts.skipped += outcome.counts.skipped
        counts.ignored += outcome.counts.ignored
        counts.parked += outcome.counts.parked
        counts.still_dead += len(outcome.dead_letters_renewed)
        counts.dead_lettered += len(outcome.dead_letters)
        if advanced is not None:
            advanced(len(batch))
    return counts
