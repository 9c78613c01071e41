"""The embedded default store: one SQLite file in WAL mode, schema created and migrated on open.

A batch runs inside ``BEGIN IMMEDIATE``: the read of the touched limits, the projection and the
write of its outcome (:meth:`SqlStore._write`) form one serialised transaction, so concurrent
writers can neither interleave nor double-count. The upsert is conditional on the stored
sequence number all the same, as a second line of defence.

The file's schema version is ``PRAGMA user_version``: 0 for a new file, which gets every step;
a file of an older version gets the steps after its own, in the transaction that opens it.
Version 1 kept the counters as rows and as_of in a ``meta`` table, and listed dead letters by
rowid; version 2 is the design PostgreSQL has (:mod:`.core`); version 3 adds the last drift per
limit and the drifted counter; version 4 the consumer fleet's leases.

Hot module (see ``bench/handler_bench.py``): each connection keeps the limits and parked events
it last read or wrote (:class:`RowCache`) and reads from the file only the keys it does not hold.
The cache is used only while provably current: under the write lock, ``PRAGMA data_version``
unchanged says no other connection committed since, and ``total_changes`` unchanged says no
other statement of this connection wrote. Otherwise it is dropped whole, as after any failure.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from user_limits.domain.model import UserLimit
from user_limits.stores.base import StoreError
from user_limits.stores.sql.core import Executor, SqlStore, Statements, snapshot_of
from user_limits.stores.sql.mapping import LIMIT_COLUMNS, LIMIT_NAMES, MOVING_COLUMNS, limit_row, moving_row
from user_limits.stores.text import storable
from user_limits.stream.records import Checkpoint, Counts, Outcome, ParkedEvent, Snapshot

# The schema, one step a version: step n brings version n-1 to n. Never edit a step: add one.
STEPS = (
    """
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
    """,
    # 2: the counters and as_of in one row, dead letters listed by seq (as in PostgreSQL).
    """
    CREATE TABLE counters_2 (
        singleton INTEGER PRIMARY KEY DEFAULT 1 CHECK (singleton = 1),
        applied INTEGER NOT NULL DEFAULT 0,
        skipped INTEGER NOT NULL DEFAULT 0,
        ignored INTEGER NOT NULL DEFAULT 0,
        as_of INTEGER
    );
    INSERT INTO counters_2 (applied, skipped, ignored, as_of) VALUES (
        coalesce((SELECT value FROM counters WHERE name = 'applied'), 0),
        coalesce((SELECT value FROM counters WHERE name = 'skipped'), 0),
        coalesce((SELECT value FROM counters WHERE name = 'ignored'), 0),
        (SELECT value FROM meta WHERE name = 'as_of')
    );
    DROP TABLE counters;
    DROP TABLE meta;
    ALTER TABLE counters_2 RENAME TO counters;
    -- seq is the rowid: the order dead letters were kept in, as version 1 listed them.
    CREATE TABLE dead_letters_2 (
        seq INTEGER PRIMARY KEY,
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
    INSERT INTO dead_letters_2 SELECT rowid, * FROM dead_letters ORDER BY rowid;
    DROP TABLE dead_letters;
    ALTER TABLE dead_letters_2 RENAME TO dead_letters;
    """,
    # 3: the last drift per limit and the drifted counter (PostgreSQL's 0003_drift).
    """
    ALTER TABLE user_limits ADD COLUMN drift_sequence_number INTEGER;
    ALTER TABLE user_limits ADD COLUMN drift_event_type TEXT;
    ALTER TABLE user_limits ADD COLUMN drift_figure TEXT;
    ALTER TABLE user_limits ADD COLUMN drift_ours TEXT;
    ALTER TABLE user_limits ADD COLUMN drift_theirs TEXT;
    ALTER TABLE user_limits ADD COLUMN drift_at INTEGER;
    CREATE INDEX user_limits_drifted ON user_limits (user_limit_id) WHERE drift_sequence_number IS NOT NULL;
    ALTER TABLE counters ADD COLUMN drifted INTEGER NOT NULL DEFAULT 0;
    """,
    # 4: the consumer fleet's leases (PostgreSQL's 0004_leases); IF NOT EXISTS: independent of the
    # steps around it.
    """
    CREATE TABLE IF NOT EXISTS leases (
        stream TEXT NOT NULL,
        shard_id TEXT NOT NULL,
        holder TEXT,
        counter INTEGER NOT NULL DEFAULT 0,
        expires_ms INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (stream, shard_id)
    ) WITHOUT ROWID;
    """,
)
SCHEMA_VERSION = len(STEPS)

_SQL = Statements("?")
_KEYS = "(SELECT value FROM json_each(?))"
_SELECT_LIMITS = f"SELECT {LIMIT_NAMES} FROM user_limits WHERE user_limit_id IN {_KEYS}"
_SELECT_PARKED = f"SELECT user_limit_id, position, data FROM parked_events WHERE user_limit_id IN {_KEYS}"
_UPSERT = f"""
INSERT INTO user_limits ({LIMIT_NAMES}) VALUES ({", ".join("?" for _ in LIMIT_COLUMNS)})
ON CONFLICT (user_limit_id) DO UPDATE SET
    {", ".join(f"{column.name} = excluded.{column.name}" for column in LIMIT_COLUMNS[1:])}
WHERE excluded.last_sequence_number > user_limits.last_sequence_number
"""
# Numbered parameters: moving_row gives MOVING_COLUMNS, then the key; last_sequence_number is
# both set and compared.
_MOVE = (
    "UPDATE user_limits SET "
    + ", ".join(f"{name} = ?{number}" for number, name in enumerate(MOVING_COLUMNS, 1))
    + f" WHERE user_limit_id = ?{len(MOVING_COLUMNS) + 1}"
    + f" AND last_sequence_number < ?{MOVING_COLUMNS.index('last_sequence_number') + 1}"
)
# max() of SQLite is NULL if either is: as_of stays when the batch applied nothing.
_ADD_COUNTS = """
UPDATE counters SET applied = applied + ?, skipped = skipped + ?, ignored = ignored + ?, drifted = drifted + ?,
    as_of = coalesce(max(as_of, ?), as_of, ?)
"""


# Limits a connection's cache holds at most (some tens of MB); past that it starts again, empty.
CACHE_LIMITS = 20_000
# SQLite's own page cache for a connection that writes batches, in KiB (the default is 2 MiB): a
# rebuild's B-tree lookups then stay in the process. Read-only connections (the API's threads) keep
# the default.
WRITER_PAGE_CACHE_KIB = 16 * 1024
# The WAL is copied back into the file (a checkpoint, with its fsync) when it reaches this many
# pages, in the commit that crosses it; SQLite's default is 1,000. A batch rewrites the pages of the
# limits it touches, so the same pages come back batch after batch: copied once per 10,000 pages
# of WAL, they cost a third of what they did (about 40 MB of WAL at most, replayed after a crash).
WRITER_WAL_AUTOCHECKPOINT_PAGES = 10_000


class RowCache:
    """What one connection knows the file holds for some keys: the limit (None: absent) and its
    parked events. Valid only at ``version`` and ``changes`` (see the module's docstring)."""

    __slots__ = ("changes", "limits", "parked", "version")

    def __init__(self) -> None:
        self.version: int | None = None
        self.changes = -1
        self.limits: dict[str, UserLimit | None] = {}
        self.parked: dict[str, list[ParkedEvent]] = {}

    def clear(self) -> None:
        self.version = None
        self.limits.clear()
        self.parked.clear()

    def committed(
        self, snapshot: Snapshot[UserLimit], outcome: Outcome[UserLimit], changes: int, every_limit_written: bool
    ) -> None:
        """After the commit of ``outcome``: what the file now holds for the keys it touched.

        Trusted only for an outcome projected from ``snapshot`` (the position it expected for
        each key is the snapshot's) whose every limit the conditional write took; otherwise
        the cache is dropped."""
        states, read = outcome.states, snapshot.states
        if not every_limit_written or len(self.limits) > CACHE_LIMITS:
            self.clear()
            return
        limits, parked = self.limits, self.parked
        for key, (expected, _) in outcome.touched.items():
            before = read.get(key)
            if expected != (None if before is None else before.last_sequence_number):
                self.clear()
                return
            after = states.get(key)
            limits[key] = before if after is None else after
            parked[key] = snapshot.parked.get(key, [])
        if outcome.parked_removed:
            gone = {(event.key, event.position) for _, event in outcome.parked_removed}
            for key in {key for key, _ in gone}:
                parked[key] = [event for event in parked[key] if (key, event.position) not in gone]
        for _, event in outcome.parked_added:
            parked[event.key] = [*parked[event.key], event]
        self.changes = changes


def sqlite_path(url: str) -> str:
    """``sqlite:///relative.db`` or ``sqlite:////absolute/path.db`` (as SQLAlchemy spells them)."""
    path = url.removeprefix("sqlite:///")
    if not path or path == url:
        raise StoreError(f"bad SQLite store URL {url!r}: use sqlite:///path/to/file.db")
    return path


def migrate(connection: sqlite3.Connection, path: str) -> None:
    """Bring the file's schema to :data:`SCHEMA_VERSION`, in one transaction."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        # Read again under the write lock: another process may have migrated the file meanwhile.
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(f"SQLite store {path} has schema {version}, newer than this version")
        for step in STEPS[version:]:
            for statement in step.split(";"):
                if statement.strip():
                    connection.execute(statement)
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise


class SQLiteStore(SqlStore):
    kind = "SQLite"
    sql = _SQL
    driver_errors = (sqlite3.Error,)

    def __init__(self, url: str, read_only: bool = False) -> None:
        """``read_only``: the file must exist at this schema version; it is neither created nor
        migrated, and the connection refuses writes (``mode=ro``)."""
        self.url = url
        self.path = sqlite_path(url)
        self.read_only = read_only
        self._local = threading.local()
        parent = Path(self.path).parent
        if not parent.is_dir():
            raise StoreError(f"cannot open SQLite store {self.path}: folder {parent} does not exist")
        if read_only and not Path(self.path).is_file():
            raise StoreError(f"cannot open SQLite store {self.path}: no such file")
        connection = self._connection()
        try:
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(f"SQLite store {self.path} has schema {version}, newer than this version")
            if version < SCHEMA_VERSION and read_only:
                raise StoreError(
                    f"SQLite store {self.path} has schema {version}, older than this version ({SCHEMA_VERSION}): "
                    f"run `user-limits init --store {url}` to migrate it first"
                )
            if version < SCHEMA_VERSION:
                migrate(connection, self.path)
        except sqlite3.DatabaseError as error:
            raise StoreError(f"cannot open SQLite store {self.path}: {error}") from None

    def _connection(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            try:
                if self.read_only:
                    connection = sqlite3.connect(
                        Path(self.path).resolve().as_uri() + "?mode=ro",
                        uri=True,
                        isolation_level=None,
                        check_same_thread=False,
                        timeout=30,
                    )
                    self._local.connection = connection
                    return connection
                connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
                connection.execute("PRAGMA journal_mode = WAL")
                # WAL with NORMAL survives a process crash; a power loss may lose the last batches
                # together with their checkpoint, so they are applied again, never twice.
                connection.execute("PRAGMA synchronous = NORMAL")
            except sqlite3.DatabaseError as error:
                raise StoreError(f"cannot open SQLite store {self.path}: {error}") from None
            self._local.connection = connection
        return connection

    def _where(self) -> str:
        return self.path

    # -- write side

    def apply_batch(
        self, keys: Mapping[str, str], project: Callable[[Snapshot[UserLimit]], Outcome[UserLimit]]
    ) -> Outcome[UserLimit]:
        db = self._connection()
        cache = self._cache(db)
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                # Under the write lock: no other connection can commit until this one has.
                version = db.execute("PRAGMA data_version").fetchone()[0]
                if version != cache.version or db.total_changes != cache.changes:
                    cache.clear()
                    cache.version = version
                snapshot = self._snapshot(db, keys, cache)
                self._local.every_limit_written = True
                outcome = project(snapshot)
                self._hold_lease(db, outcome.checkpoint)
                self._write(db, outcome, snapshot.states)
                db.execute("COMMIT")
            except BaseException:
                cache.clear()
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        except sqlite3.Error as error:
            raise self._failed(error) from error
        cache.committed(snapshot, outcome, db.total_changes, self._local.every_limit_written)
        return outcome

    def _transaction(self, write: Callable[[Executor], None]) -> None:
        db = self._connection()
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                write(db)
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        except sqlite3.Error as error:
            raise self._failed(error) from error

    def _cache(self, db: sqlite3.Connection) -> RowCache:
        cache: RowCache | None = getattr(self._local, "cache", None)
        if cache is None:
            try:
                db.execute(f"PRAGMA cache_size = -{WRITER_PAGE_CACHE_KIB}")
                db.execute(f"PRAGMA wal_autocheckpoint = {WRITER_WAL_AUTOCHECKPOINT_PAGES}")
            except sqlite3.Error as error:
                raise self._failed(error) from error
            cache = self._local.cache = RowCache()
        return cache

    def _snapshot(self, db: sqlite3.Connection, keys: Mapping[str, str], cache: RowCache) -> Snapshot[UserLimit]:
        """The keys' limits and parked events: those the cache holds, the others read in two statements."""
        if not keys:
            return Snapshot()
        cached_limits, cached_parked = cache.limits, cache.parked
        missing = [key for key in keys if key not in cached_limits]
        snapshot = (
            snapshot_of(
                db.execute(_SELECT_LIMITS, (json.dumps(missing),)), db.execute(_SELECT_PARKED, (json.dumps(missing),))
            )
            if missing
            else Snapshot()
        )
        if len(missing) < len(keys):
            states, parked = snapshot.states, snapshot.parked
            for key in keys:
                if key in cached_limits:
                    limit = cached_limits[key]
                    if limit is not None:
                        states[key] = limit
                    waiting = cached_parked[key]
                    if waiting:
                        parked[key] = waiting
        return snapshot

    def _write_limits(self, db: Executor, whole: Sequence[UserLimit], moved: Sequence[UserLimit]) -> None:
        before = self._connection().total_changes
        if whole:
            db.executemany(_UPSERT, [limit_row(limit) for limit in whole])
        if moved:
            db.executemany(_MOVE, [moving_row(limit) for limit in moved])
        # A limit a conditional write refused (the file held a newer one) is not what the cache would say.
        self._local.every_limit_written = self._connection().total_changes - before == len(whole) + len(moved)

    def _store_checkpoint(self, db: Executor, checkpoint: Checkpoint) -> None:
        # Sequence numbers are text here (beyond 64 bits): compared as numbers in Python.
        where = (storable(checkpoint.stream), storable(checkpoint.shard_id))
        row = db.execute(self.sql.select_checkpoint, where).fetchone()
        if row is None or (int(row[0]), row[1]) < checkpoint.order():
            db.execute(
                "INSERT OR REPLACE INTO checkpoints VALUES (?, ?, ?, ?)",
                (*where, checkpoint.sequence_number, checkpoint.sub_sequence_number),
            )

    def _add_counts(self, db: Executor, counts: Counts, newest: int | None) -> None:
        db.execute(_ADD_COUNTS, (counts.applied, counts.skipped, counts.ignored, counts.drifted, newest, newest))

    def close(self) -> None:
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None
        self._local.cache = None
