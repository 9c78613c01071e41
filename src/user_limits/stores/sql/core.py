"""What the SQLite and PostgreSQL stores share: the queries of the read side and the order of a batch's write.

A dialect subclasses :class:`SqlStore` and brings its connection, its transaction and locking
(``apply_batch``), its placeholder and the few statements SQL spells differently: the bulk upsert
of limits, the "newer checkpoint wins" write and the counters. Every driver error a store meets
becomes one :class:`StoreError` line (:meth:`SqlStore._failed`); anything else (a bug, an
injected fault) goes up as it is.

Schema (both dialects, one design): ``user_limits`` (:mod:`.mapping`, indexed by user),
``parked_events`` (limit, position), ``dead_letters`` (listed in ``seq`` order, kept once by
``id``), ``checkpoints`` (stream, shard), one ``counters`` row holding applied, skipped,
ignored, drifted and ``as_of``, the newest event time applied, and ``leases`` (stream, shard:
holder, counter, expiry), the consumer fleet's (:mod:`user_limits.kinesis.leases`). Every lease
write is one statement conditional on the holder and counter read; a batch whose checkpoint
carries a lease guard reads the lease inside its transaction (locked, on PostgreSQL) and commits
nothing if it changed hands.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from user_limits.domain.model import UserLimit
from user_limits.stores.base import StoreError, Totals
from user_limits.stores.sql.mapping import (
    DEAD_LETTER_NAMES,
    DEAD_LETTER_READ,
    LIMIT_NAMES,
    dead_letter_row,
    row_dead_letter,
    row_limit,
    split_moved,
)
from user_limits.stores.text import bounded_reason, storable, unstored
from user_limits.stream.records import Checkpoint, Counts, DeadLetter, Lease, LeaseLost, Outcome, ParkedEvent, Snapshot

# all_limits reads this many limits a query: each limit once, without holding a read open between pages.
_PAGE = 5000


class Executor(Protocol):
    """What a batch writes through: a connection (SQLite) or a pipelined cursor (PostgreSQL)."""

    def execute(self, sql: Any, params: Any = ..., /) -> Any: ...

    def executemany(self, sql: Any, params: Any, /) -> Any: ...


@dataclass(frozen=True)
class Statements:
    """The statements both dialects spell alike, with the dialect's placeholder ``p``."""

    p: str

    def _marks(self, count: int) -> str:
        return ", ".join([self.p] * count)

    @property
    def insert_parked(self) -> str:
        return (
            f"INSERT INTO parked_events (user_limit_id, position, data) VALUES ({self._marks(3)}) "
            "ON CONFLICT DO NOTHING"
        )

    @property
    def delete_parked(self) -> str:
        return f"DELETE FROM parked_events WHERE user_limit_id = {self.p} AND position = {self.p}"

    @property
    def insert_dead_letter(self) -> str:
        return (
            f"INSERT INTO dead_letters ({DEAD_LETTER_NAMES}) VALUES ({self._marks(DEAD_LETTER_NAMES.count(',') + 1)}) "
            "ON CONFLICT (id) DO NOTHING"
        )

    @property
    def delete_dead_letter(self) -> str:
        return f"DELETE FROM dead_letters WHERE id = {self.p}"

    @property
    def renew_dead_letter(self) -> str:
        return f"UPDATE dead_letters SET reason = {self.p} WHERE id = {self.p}"

    @property
    def select_checkpoint(self) -> str:
        return (
            "SELECT sequence_number, sub_sequence_number FROM checkpoints "
            f"WHERE stream = {self.p} AND shard_id = {self.p}"
        )

    @property
    def select_lease(self) -> str:
        return f"SELECT holder, counter FROM leases WHERE stream = {self.p} AND shard_id = {self.p}"

    @property
    def insert_lease(self) -> str:
        return (
            "INSERT INTO leases (stream, shard_id, holder, counter, expires_ms) "
            f"VALUES ({self.p}, {self.p}, NULL, 0, 0) ON CONFLICT DO NOTHING"
        )

    @property
    def write_lease(self) -> str:
        # Conditional on the holder (NULL for a free lease) and the counter read.
        p = self.p
        return (
            f"UPDATE leases SET holder = {p}, counter = {p}, expires_ms = {p} "
            f"WHERE stream = {p} AND shard_id = {p} "
            f"AND (holder = {p} OR (holder IS NULL AND CAST({p} AS TEXT) IS NULL)) AND counter = {p}"
        )

    @property
    def user_limits(self) -> str:
        return f"SELECT {LIMIT_NAMES} FROM user_limits WHERE user_id = {self.p} ORDER BY user_limit_id"

    @property
    def user_limit(self) -> str:
        return f"SELECT {LIMIT_NAMES} FROM user_limits WHERE user_limit_id = {self.p} AND user_id = {self.p}"

    def first_page(self, size: int) -> str:
        # No lower bound: '' is an id like any other.
        return f"SELECT {LIMIT_NAMES} FROM user_limits ORDER BY user_limit_id LIMIT {size}"

    def next_page(self, size: int) -> str:
        return (
            f"SELECT {LIMIT_NAMES} FROM user_limits WHERE user_limit_id > {self.p} ORDER BY user_limit_id LIMIT {size}"
        )


PARKED_EVENTS = "SELECT user_limit_id, position, data FROM parked_events ORDER BY user_limit_id, position"
DEAD_LETTERS = f"SELECT {DEAD_LETTER_READ} FROM dead_letters ORDER BY seq"
STATS = (
    "SELECT applied, skipped, ignored, (SELECT count(*) FROM parked_events), "
    "(SELECT count(*) FROM dead_letters), drifted FROM counters"
)
# Through the partial index user_limits_drifted: only the limits that drifted are read.
DRIFTED_LIMITS = f"SELECT {LIMIT_NAMES} FROM user_limits WHERE drift_sequence_number IS NOT NULL ORDER BY user_limit_id"
AS_OF = "SELECT as_of FROM counters"
CHECKPOINTS = "SELECT stream, shard_id, sequence_number, sub_sequence_number FROM checkpoints"
COUNTERS = "SELECT * FROM counters"
# The columns of the counters row that are not counters: every other one is (a migration that
# adds a counter adds a column, and migrate copies it by name).
_NOT_COUNTERS = frozenset({"singleton", "as_of"})
LEASES = "SELECT stream, shard_id, holder, counter, expires_ms FROM leases"


def snapshot_of(limit_rows: Iterable[Sequence[Any]], parked_rows: Iterable[Sequence[Any]]) -> Snapshot[UserLimit]:
    """The snapshot of the rows a batch read: its limits, and their parked events."""
    snapshot: Snapshot[UserLimit] = Snapshot()
    snapshot.states = {row[0]: row_limit(row) for row in limit_rows}
    for key, position, data in parked_rows:
        snapshot.parked.setdefault(key, []).append(ParkedEvent(key, position, bytes(data)))
    return snapshot


class SqlStore:
    """The read side and the outcome write of a SQL store; the dialect fills in the rest."""

    url: str
    kind: str  # "SQLite", "PostgreSQL": how errors name the store
    sql: Statements
    driver_errors: tuple[type[Exception], ...]

    # -- what a dialect provides

    def _connection(self) -> Any:
        """This thread's open connection (DB-API: ``execute(sql, params).fetchall()``)."""
        raise NotImplementedError

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """The rows of one statement, outside any batch; a driver error becomes a StoreError."""
        try:
            rows: list[tuple[Any, ...]] = self._connection().execute(sql, params).fetchall()
        except self.driver_errors as error:
            raise self._failed(error) from error
        return rows

    def _where(self) -> str:
        """The store as error messages name it (a path, a masked URL)."""
        raise NotImplementedError

    def _one_line(self, error: BaseException) -> str:
        return " ".join(str(error).split()) or type(error).__name__

    def _write_limits(self, db: Executor, whole: Sequence[UserLimit], moved: Sequence[UserLimit]) -> None:
        """Write the limits, each only over an older stored one (by sequence number): ``whole`` as
        an upsert of every column, ``moved`` as an update of MOVING_COLUMNS (``mapping.split_moved``)."""
        raise NotImplementedError

    def _store_checkpoint(self, db: Executor, checkpoint: Checkpoint) -> None:
        """Write the checkpoint unless a later one is stored."""
        raise NotImplementedError

    def _add_counts(self, db: Executor, counts: Counts, newest: int | None) -> None:
        """Add the batch's counts; move as_of up to ``newest`` (None: unchanged)."""
        raise NotImplementedError

    def _sequence_text(self, value: Any) -> str:
        return str(value)

    def _transaction(self, write: Callable[[Executor], None]) -> None:
        """Run ``write`` in one transaction of the dialect; a driver error becomes a StoreError."""
        raise NotImplementedError

    # Appended to the guard's read of a lease: PostgreSQL locks the row until the batch commits.
    lock_lease = ""

    # -- errors

    def _failed(self, error: Exception) -> StoreError:
        """A driver error as one line for the user."""
        return StoreError(f"{self.kind} store {self._where()}: {self._one_line(error)}")

    # -- write side

    def _write(self, db: Executor, outcome: Outcome[UserLimit], stored: Mapping[str, UserLimit]) -> None:
        """The outcome, in the order every SQL store writes it, inside the dialect's transaction;
        ``stored``: the limits the batch read (its snapshot's), which the transaction still holds."""
        sql = self.sql
        if outcome.states:
            self._write_limits(db, *split_moved(outcome.states, stored))
        if outcome.parked_added:
            db.executemany(
                sql.insert_parked, [(event.key, event.position, event.data) for _, event in outcome.parked_added]
            )
        if outcome.parked_removed:
            db.executemany(sql.delete_parked, [(event.key, event.position) for _, event in outcome.parked_removed])
        # A redrive's dead letters leave, or take today's reason, with the effect of their records.
        if outcome.dead_letters_removed:
            db.executemany(sql.delete_dead_letter, [(storable(i),) for _, _, i in outcome.dead_letters_removed])
        if outcome.dead_letters_renewed:
            db.executemany(
                sql.renew_dead_letter,
                [
                    (storable(bounded_reason(letter.reason)), storable(letter.id))
                    for _, letter in outcome.dead_letters_renewed
                ],
            )
        if outcome.dead_letters:
            db.executemany(sql.insert_dead_letter, [dead_letter_row(letter) for _, letter in outcome.dead_letters])
        if outcome.checkpoint is not None:
            self._store_checkpoint(db, outcome.checkpoint)
        # Last: every batch updates this one row, so its lock is held the shortest.
        newest = max((limit.updated_at for limit in outcome.states.values()), default=None)
        self._add_counts(db, outcome.counts, newest)

    def _hold_lease(self, db: Any, checkpoint: Checkpoint | None) -> None:
        """Inside the batch's transaction: raise LeaseLost unless the checkpoint's lease still holds."""
        if checkpoint is None or checkpoint.lease is None:
            return
        guard = checkpoint.lease
        where = (storable(checkpoint.stream), storable(checkpoint.shard_id))
        row = db.execute(self.sql.select_lease + self.lock_lease, where).fetchone()
        if row is None or (row[0], row[1]) != (guard.holder, guard.counter):
            raise LeaseLost(checkpoint.stream, checkpoint.shard_id, guard)

    # -- leases (kinesis.leases.LeaseTable)

    def leases(self, stream: str | None = None) -> list[Lease]:
        if stream is None:
            rows = self._query(LEASES + " ORDER BY stream, shard_id")
        else:
            rows = self._query(LEASES + f" WHERE stream = {self.sql.p} ORDER BY shard_id", (storable(stream),))
        return [
            Lease(stream_, shard_id, holder, int(counter), int(expires))
            for stream_, shard_id, holder, counter, expires in rows
        ]

    def create_lease(self, stream: str, shard_id: str) -> None:
        self._statement(self.sql.insert_lease, (storable(stream), storable(shard_id)))

    def write_lease(self, expected: Lease, new: Lease) -> bool:
        params = (
            new.holder, new.counter, new.expires_ms, storable(expected.stream), storable(expected.shard_id),
            expected.holder, expected.holder, expected.counter,
        )  # fmt: skip
        return self._statement(self.sql.write_lease, params) == 1

    def _statement(self, sql: str, params: Sequence[Any]) -> int:
        """One write statement outside any batch (autocommit); the rows it changed."""
        try:
            rowcount: int = self._connection().execute(sql, params).rowcount
        except self.driver_errors as error:
            raise self._failed(error) from error
        return rowcount

    def checkpoint(self, stream: str, shard_id: str) -> Checkpoint | None:
        rows = self._query(self.sql.select_checkpoint, (storable(stream), storable(shard_id)))
        if not rows:
            return None
        sequence_number, sub_sequence_number = rows[0]
        return Checkpoint(stream, shard_id, self._sequence_text(sequence_number), sub_sequence_number)

    def load_state(self, counters: Mapping[str, int], checkpoints: Sequence[Checkpoint], as_of: int | None) -> None:
        names = [name for name in self._counter_row() if name not in _NOT_COUNTERS]
        unknown = sorted(set(counters) - set(names))
        if unknown:
            raise StoreError(f"{self.kind} store {self._where()} keeps no counter {', '.join(unknown)}")
        # The names are this store's own columns.
        update = "UPDATE counters SET " + ", ".join(f"{name} = {self.sql.p}" for name in [*names, "as_of"])
        values = (*(counters.get(name, 0) for name in names), as_of)

        def write(db: Executor) -> None:
            db.execute(update, values)
            for checkpoint in checkpoints:
                self._store_checkpoint(db, checkpoint)

        self._transaction(write)

    # -- read side

    def user_limits(self, user_id: str) -> list[UserLimit]:
        return [row_limit(row) for row in self._query(self.sql.user_limits, (user_id,))]

    def user_limit(self, user_id: str, user_limit_id: str) -> UserLimit | None:
        rows = self._query(self.sql.user_limit, (user_limit_id, user_id))
        return row_limit(rows[0]) if rows else None

    def all_limits(self) -> Iterator[UserLimit]:
        """Pages by primary key: each limit once, without holding a read open between pages."""
        page = _PAGE
        rows = self._query(self.sql.first_page(page))
        while True:
            for row in rows:
                yield row_limit(row)
            if len(rows) < page:
                return
            rows = self._query(self.sql.next_page(page), (rows[-1][0],))

    def drifted_limits(self) -> list[UserLimit]:
        return [row_limit(row) for row in self._query(DRIFTED_LIMITS)]

    def parked_events(self) -> list[ParkedEvent]:
        return [ParkedEvent(key, position, bytes(data)) for key, position, data in self._query(PARKED_EVENTS)]

    def dead_letters(self) -> list[DeadLetter]:
        return [row_dead_letter(row) for row in self._query(DEAD_LETTERS)]

    def stats(self) -> Totals:
        ((applied, skipped, ignored, waiting, dead_letters, drifted),) = self._query(STATS)
        return Totals(applied, skipped, ignored, waiting, dead_letters, drifted)

    def as_of(self) -> int | None:
        ((as_of,),) = self._query(AS_OF)
        return None if as_of is None else int(as_of)

    def _counter_row(self) -> dict[str, Any]:
        """The counters row by column name."""
        try:
            cursor = self._connection().execute(COUNTERS)
            row = cursor.fetchone()
            names = [column[0] for column in cursor.description]
        except self.driver_errors as error:
            raise self._failed(error) from error
        return dict(zip(names, row, strict=True))

    def counters(self) -> dict[str, int]:
        return {name: int(value) for name, value in self._counter_row().items() if name not in _NOT_COUNTERS}

    def checkpoints(self) -> list[Checkpoint]:
        return sorted(
            Checkpoint(unstored(stream), unstored(shard_id), self._sequence_text(sequence_number), sub_sequence_number)
            for stream, shard_id, sequence_number, sub_sequence_number in self._query(CHECKPOINTS)
        )

    def ping(self) -> None:
        self._query("SELECT 1")
