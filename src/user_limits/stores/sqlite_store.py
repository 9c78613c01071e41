"""The embedded default store: one SQLite file in WAL mode, schema created on first use.

A batch runs inside ``BEGIN IMMEDIATE``: the read of the touched limits, the projection and the
write of its outcome (limits, parked events, dead letters, counters, checkpoint) form one
serialised transaction, so concurrent writers can neither interleave nor double-count. The upsert
is conditional on the stored sequence number all the same, as a second line of defence.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from user_limits.domain.model import UserLimit
from user_limits.stores.base import StoreError
from user_limits.stores.text import dead_letter_row, row_dead_letter, storable
from user_limits.stream.records import Checkpoint, Counts, DeadLetter, Outcome, ParkedEvent, Snapshot

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS user_limits (
    user_limit_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    brand_id TEXT NOT NULL,
    type TEXT NOT NULL,
    period TEXT NOT NULL,
    status TEXT NOT NULL,
    value TEXT NOT NULL,
    progress TEXT NOT NULL,
    currency_code TEXT NOT NULL,
    active_from INTEGER NOT NULL,
    active_until INTEGER,
    next_reset_time INTEGER,
    created_at INTEGER NOT NULL,
    last_sequence_number INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS user_limits_by_user ON user_limits (user_id, user_limit_id);
CREATE TABLE IF NOT EXISTS parked_events (
    user_limit_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (user_limit_id, position)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dead_letters (
    id TEXT NOT NULL UNIQUE,
    reason TEXT NOT NULL,
    data BLOB NOT NULL,
    sequence_number TEXT,
    sub_sequence_number INTEGER,
    partition_key TEXT,
    arrival_ms INTEGER,
    stream_arn TEXT,
    shard_id TEXT
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
INSERT OR IGNORE INTO counters VALUES ('applied', 0), ('skipped', 0), ('ignored', 0);
CREATE TABLE IF NOT EXISTS checkpoints (
    stream TEXT NOT NULL,
    shard_id TEXT NOT NULL,
    sequence_number TEXT NOT NULL,
    sub_sequence_number INTEGER NOT NULL,
    PRIMARY KEY (stream, shard_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER) WITHOUT ROWID;
"""

_LIMIT_COLUMNS = (
    "user_limit_id, user_id, brand_id, type, period, status, value, progress, currency_code, "
    "active_from, active_until, next_reset_time, created_at, last_sequence_number, updated_at"
)
_UPSERT = f"""
INSERT INTO user_limits ({_LIMIT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (user_limit_id) DO UPDATE SET
    user_id = excluded.user_id, brand_id = excluded.brand_id, type = excluded.type,
    period = excluded.period, status = excluded.status, value = excluded.value,
    progress = excluded.progress, currency_code = excluded.currency_code,
    active_from = excluded.active_from, active_until = excluded.active_until,
    next_reset_time = excluded.next_reset_time, created_at = excluded.created_at,
    last_sequence_number = excluded.last_sequence_number, updated_at = excluded.updated_at
WHERE excluded.last_sequence_number > user_limits.last_sequence_number
"""


def limit_row(limit: UserLimit) -> tuple[Any, ...]:
    return (
        limit.user_limit_id,
        limit.user_id,
        limit.brand_id,
        limit.type,
        limit.period,
        limit.status,
        str(limit.value),
        str(limit.progress),
        limit.currency_code,
        limit.active_from,
        limit.active_until,
        limit.next_reset_time,
        limit.created_at,
        limit.last_sequence_number,
        limit.updated_at,
    )


def row_limit(row: tuple[Any, ...]) -> UserLimit:
    (uid, user, brand, type_, period, status, value, progress, currency, *rest) = row
    return UserLimit(uid, user, brand, type_, period, status, Decimal(value), Decimal(progress), currency, *rest)


def sqlite_path(url: str) -> str:
    """``sqlite:///relative.db`` or ``sqlite:////absolute/path.db`` (as SQLAlchemy spells them)."""
    path = url.removeprefix("sqlite:///")
    if not path or path == url:
        raise StoreError(f"bad SQLite store URL {url!r}: use sqlite:///path/to/file.db")
    return path


class SQLiteStore:
    def __init__(self, url: str) -> None:
        self.url = url
        self.path = sqlite_path(url)
        self._local = threading.local()
        parent = Path(self.path).parent
        if not parent.is_dir():
            raise StoreError(f"cannot open SQLite store {self.path}: folder {parent} does not exist")
        connection = self._connection()
        try:
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(f"SQLite store {self.path} has schema {version}, newer than this version")
            if version < SCHEMA_VERSION:
                connection.execute("BEGIN IMMEDIATE")
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        connection.execute(statement)
                connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                connection.execute("COMMIT")
        except sqlite3.DatabaseError as error:
            raise StoreError(f"cannot open SQLite store {self.path}: {error}") from None

    def _connection(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            try:
                connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
                connection.execute("PRAGMA journal_mode = WAL")
                # WAL with NORMAL survives a process crash; a power loss may lose the last batches
                # together with their checkpoint, so they are applied again, never twice.
                connection.execute("PRAGMA synchronous = NORMAL")
            except sqlite3.DatabaseError as error:
                raise StoreError(f"cannot open SQLite store {self.path}: {error}") from None
            self._local.connection = connection
        return connection

    # -- write side

    def apply_batch(
        self, keys: Mapping[str, str], project: Callable[[Snapshot[UserLimit]], Outcome[UserLimit]]
    ) -> Outcome[UserLimit]:
        db = self._connection()
        db.execute("BEGIN IMMEDIATE")
        try:
            outcome = project(self._snapshot(db, keys))
            self._write(db, outcome)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return outcome

    def _snapshot(self, db: sqlite3.Connection, keys: Mapping[str, str]) -> Snapshot[UserLimit]:
        snapshot: Snapshot[UserLimit] = Snapshot()
        if not keys:
            return snapshot
        ids = json.dumps(list(keys))
        rows = db.execute(
            f"SELECT {_LIMIT_COLUMNS} FROM user_limits WHERE user_limit_id IN (SELECT value FROM json_each(?))",
            (ids,),
        )
        snapshot.states = {row[0]: row_limit(row) for row in rows}
        for key, position, data in db.execute(
            "SELECT user_limit_id, position, data FROM parked_events "
            "WHERE user_limit_id IN (SELECT value FROM json_each(?))",
            (ids,),
        ):
            snapshot.parked.setdefault(key, []).append(ParkedEvent(key, position, data))
        return snapshot

    def _write(self, db: sqlite3.Connection, outcome: Outcome[UserLimit]) -> None:
        checkpoint = outcome.checkpoint
        if checkpoint is not None:
            where = (storable(checkpoint.stream), storable(checkpoint.shard_id))
            row = db.execute(
                "SELECT sequence_number, sub_sequence_number FROM checkpoints WHERE stream = ? AND shard_id = ?", where
            ).fetchone()
            if row is None or (int(row[0]), row[1]) < checkpoint.order():
                db.execute(
                    "INSERT OR REPLACE INTO checkpoints VALUES (?, ?, ?, ?)",
                    (
                        *where,
                        checkpoint.sequence_number,
                        checkpoint.sub_sequence_number,
                    ),
                )
        if outcome.states:
            db.executemany(_UPSERT, [limit_row(limit) for limit in outcome.states.values()])
            newest = max(limit.updated_at for limit in outcome.states.values())
            db.execute(
                "INSERT INTO meta VALUES ('as_of', ?) "
                "ON CONFLICT (name) DO UPDATE SET value = max(value, excluded.value)",
                (newest,),
            )
        if outcome.parked_added:
            db.executemany(
                "INSERT OR IGNORE INTO parked_events VALUES (?, ?, ?)",
                [(event.key, event.position, event.data) for _, event in outcome.parked_added],
            )
        if outcome.parked_removed:
            db.executemany(
                "DELETE FROM parked_events WHERE user_limit_id = ? AND position = ?",
                [(event.key, event.position) for _, event in outcome.parked_removed],
            )
        if outcome.dead_letters:
            db.executemany(
                "INSERT OR IGNORE INTO dead_letters VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [dead_letter_row(letter) for _, letter in outcome.dead_letters],
            )
        counts = outcome.counts
        db.executemany(
            "UPDATE counters SET value = value + ? WHERE name = ?",
            [(counts.applied, "applied"), (counts.skipped, "skipped"), (counts.ignored, "ignored")],
        )

    def checkpoint(self, stream: str, shard_id: str) -> Checkpoint | None:
        row = (
            self._connection()
            .execute(
                "SELECT sequence_number, sub_sequence_number FROM checkpoints WHERE stream = ? AND shard_id = ?",
                (storable(stream), storable(shard_id)),
            )
            .fetchone()
        )
        return None if row is None else Checkpoint(stream, shard_id, row[0], row[1])

    # -- read side

    def user_limits(self, user_id: str) -> list[UserLimit]:
        rows = self._connection().execute(
            f"SELECT {_LIMIT_COLUMNS} FROM user_limits WHERE user_id = ? ORDER BY user_limit_id", (user_id,)
        )
        return [row_limit(row) for row in rows]

    def user_limit(self, user_id: str, user_limit_id: str) -> UserLimit | None:
        row = (
            self._connection()
            .execute(
                f"SELECT {_LIMIT_COLUMNS} FROM user_limits WHERE user_limit_id = ? AND user_id = ?",
                (user_limit_id, user_id),
            )
            .fetchone()
        )
        return None if row is None else row_limit(row)

    def all_limits(self) -> Iterator[UserLimit]:
        rows = self._connection().execute(f"SELECT {_LIMIT_COLUMNS} FROM user_limits ORDER BY user_limit_id")
        return (row_limit(row) for row in rows)

    def parked_events(self) -> list[ParkedEvent]:
        rows = self._connection().execute(
            "SELECT user_limit_id, position, data FROM parked_events ORDER BY user_limit_id, position"
        )
        return [ParkedEvent(*row) for row in rows]

    def dead_letters(self) -> list[DeadLetter]:
        rows = self._connection().execute(
            "SELECT reason, data, sequence_number, sub_sequence_number, partition_key, arrival_ms, stream_arn, "
            "shard_id FROM dead_letters ORDER BY rowid"
        )
        return [row_dead_letter(row) for row in rows]

    def stats(self) -> Counts:
        db = self._connection()
        values = dict(db.execute("SELECT name, value FROM counters").fetchall())
        return Counts(
            applied=values.get("applied", 0),
            skipped=values.get("skipped", 0),
            ignored=values.get("ignored", 0),
            parked=db.execute("SELECT count(*) FROM parked_events").fetchone()[0],
            dead_lettered=db.execute("SELECT count(*) FROM dead_letters").fetchone()[0],
        )

    def as_of(self) -> int | None:
        row = self._connection().execute("SELECT value FROM meta WHERE name = 'as_of'").fetchone()
        return None if row is None else int(row[0])

    def ping(self) -> None:
        self._connection().execute("SELECT 1").fetchone()

    def close(self) -> None:
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None


# -- the store-module contract (bootstrap's scheme table)

READS_IN_PROCESS = True


def open_store(url: str) -> SQLiteStore:
    return SQLiteStore(url)


def initialize(url: str) -> str:
    open_store(url).close()  # the schema is created on first use
    return f"{url}: ready"
