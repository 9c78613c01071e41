"""Stream records with their Kinesis coordinates, and the values a batch produces."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, NamedTuple, TypeVar

S = TypeVar("S")


class StreamRecord(NamedTuple):
    """One user record: its bytes and, when it came from Kinesis, where it sits in the stream.

    ``sequence_number`` is the Kinesis sequence number: a decimal string of up to 128 bits, kept
    as text and compared as a Python int, never as a float or a 64-bit integer.
    """

    data: bytes
    sequence_number: str | None = None
    sub_sequence_number: int | None = None
    partition_key: str | None = None
    arrival_ms: int | None = None
    stream_arn: str | None = None
    shard_id: str | None = None


class RejectedRecord(StreamRecord):
    """A record the transport layer already knows is unusable: a KPL aggregate that cannot be
    de-aggregated, a Lambda record of a shape AWS never sends. It is dead-lettered with ``reason``
    and its coordinates, never decoded (its bytes might even look like a valid envelope)."""

    reason: str

    @classmethod
    def of(cls, record: StreamRecord, reason: str) -> RejectedRecord:
        rejected = cls._make(record)
        rejected.reason = reason
        return rejected


class DeadLetter(NamedTuple):
    """A record that can never be applied, kept with its raw bytes and coordinates."""

    reason: str
    data: bytes
    sequence_number: str | None = None
    sub_sequence_number: int | None = None
    partition_key: str | None = None
    arrival_ms: int | None = None
    stream_arn: str | None = None
    shard_id: str | None = None

    @classmethod
    def of(cls, record: StreamRecord, reason: str) -> DeadLetter:
        return cls(reason, *record)

    @property
    def id(self) -> str:
        """Stable identity, so that a re-delivered poison record is kept once."""
        if self.sequence_number is not None:
            return (
                f"{self.stream_arn or ''}|{self.shard_id or ''}|{self.sequence_number}|{self.sub_sequence_number or 0}"
            )
        import hashlib  # here, not at the top: OpenSSL's load is a few ms of every Lambda cold start

        return "sha256:" + hashlib.sha256(self.data).hexdigest()


class ParkedEvent(NamedTuple):
    """An event waiting for the entity it needs; kept whole (its raw bytes)."""

    key: str
    position: int
    data: bytes


class LeaseGuard(NamedTuple):
    """The lease a checkpoint is conditional on: a store commits the checkpoint (and the batch with
    it) only while the shard's lease is still ``holder``'s at ``counter``, checked in the same
    transaction, so a consumer that lost a shard can never checkpoint past its new holder."""

    holder: str
    counter: int


class Lease(NamedTuple):
    """One shard's lease as the store holds it."""

    stream: str
    shard_id: str
    holder: str | None = None
    counter: int = 0
    # Epoch ms after which the lease is free to take; 0 for a free lease.
    expires_ms: int = 0

    def live(self, now_ms: int) -> bool:
        return self.holder is not None and self.expires_ms > now_ms

    def guard(self) -> LeaseGuard:
        assert self.holder is not None
        return LeaseGuard(self.holder, self.counter)

    def renewed(self, until_ms: int) -> Lease:
        return self._replace(expires_ms=until_ms)

    def taken(self, holder: str, until_ms: int) -> Lease:
        return self._replace(holder=holder, counter=self.counter + 1, expires_ms=until_ms)

    def released(self) -> Lease:
        return self._replace(holder=None, counter=self.counter + 1, expires_ms=0)


class Checkpoint(NamedTuple):
    """The last Kinesis record of a shard whose effect is committed.

    ``lease``: when set, the commit is refused with :class:`LeaseLost` unless the lease holds.
    Stores never keep it: a checkpoint read back has none.
    """

    stream: str
    shard_id: str
    sequence_number: str
    sub_sequence_number: int = 0
    lease: LeaseGuard | None = None

    def order(self) -> tuple[int, int]:
        return int(self.sequence_number), self.sub_sequence_number


@dataclass(slots=True)
class Counts:
    applied: int = 0
    skipped: int = 0
    ignored: int = 0
    parked: int = 0
    dead_lettered: int = 0
    # Applied events whose producer's figures disagreed with the read model (counted, not a fate
    # of their own: each is also one of ``applied``).
    drifted: int = 0

    def add(self, other: Counts) -> None:
        self.applied += other.applied
        self.skipped += other.skipped
        self.ignored += other.ignored
        self.parked += other.parked
        self.dead_lettered += other.dead_lettered
        self.drifted += other.drifted

    def as_json(self) -> dict[str, int]:
        return {
            "applied": self.applied,
            "skipped": self.skipped,
            "ignored": self.ignored,
            "parked": self.parked,
            "deadLettered": self.dead_lettered,
            "drifted": self.drifted,
        }


@dataclass(slots=True)
class Snapshot(Generic[S]):
    """What a store holds for the keys a batch touches."""

    states: dict[str, S] = field(default_factory=dict)
    parked: dict[str, list[ParkedEvent]] = field(default_factory=dict)


@dataclass(slots=True)
class Outcome(Generic[S]):
    """Everything a batch changes, to be committed together.

    Each unit carries the index of the earliest batch record it depends on, so that a store that
    cannot commit everything at once can say which record is the first one not committed.
    """

    states: dict[str, S] = field(default_factory=dict)
    # key -> (expected stored position or None, index of the first record touching the key)
    touched: dict[str, tuple[int | None, int]] = field(default_factory=dict)
    parked_added: list[tuple[int, ParkedEvent]] = field(default_factory=list)
    parked_removed: list[tuple[int, ParkedEvent]] = field(default_factory=list)
    dead_letters: list[tuple[int, DeadLetter]] = field(default_factory=list)
    # A redrive (records taken from the dead letters): (record index, entity key or None, dead
    # letter id) of each record that now decodes, whose dead letter goes in the same commit as
    # its effect (the key's write; None: the record changes no entity, it was ignored).
    dead_letters_removed: list[tuple[int, str | None, str]] = field(default_factory=list)
    # A redrive: the dead letters whose records still fail, each as it would be kept today (same
    # id, today's reason); a store updates the reason of the one it holds, and adds none.
    dead_letters_renewed: list[tuple[int, DeadLetter]] = field(default_factory=list)
    counts: Counts = field(default_factory=Counts)
    # Events applied per key, so a store without one transaction per batch can count exactly
    # what each conditional write commits.
    applied_by_key: dict[str, int] = field(default_factory=dict)
    drifted_by_key: dict[str, int] = field(default_factory=dict)
    checkpoint: Checkpoint | None = None
    # The batch's records after the last one that changed anything: committing nothing for them
    # still moves the checkpoint, so their index is the batch length.
    size: int = 0


class LeaseLost(Exception):
    """The shard's lease is no longer the guard's: the store committed nothing of the batch.

    Not a failure to retry: the consumer drops the shard, which its new holder reads on.
    """

    def __init__(self, stream: str, shard_id: str, guard: LeaseGuard) -> None:
        super().__init__(f"lease of {stream}/{shard_id} lost by {guard.holder} (counter {guard.counter})")
        self.stream = stream
        self.shard_id = shard_id
        self.guard = guard


class CommitError(Exception):
    """A store could not commit an outcome; records from ``first_uncommitted`` on had no effect.

    ``committed``: the counts of what the store did commit before it failed (its transactions that
    went through), so that what is logged is what was committed.
    """

    def __init__(
        self, first_uncommitted: int, cause: BaseException | None = None, committed: Counts | None = None
    ) -> None:
        super().__init__(f"commit failed from record {first_uncommitted}: {cause!r}")
        self.first_uncommitted = first_uncommitted
        self.cause = cause
        self.committed = committed if committed is not None else Counts()
