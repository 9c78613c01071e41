"""The PostgreSQL store (psycopg 3), for several consumers and API servers sharing one read model.

Schema: versioned SQL files in ``stores/migrations/``, applied by :func:`initialize` (``user-limits
init``) under an advisory lock and recorded in ``schema_migrations``; opening a store only checks
them.

A batch is one READ COMMITTED transaction: it first takes a transaction-scoped advisory lock on
every key it touches (in one sorted order, so two batches cannot deadlock), which serialises
concurrent writers of the same limits, including limits that do not exist yet; then reads those
limits and their parked events, projects, and writes the outcome (:meth:`SqlStore._write`),
pipelined. The upsert is conditional on the stored sequence number all the same, so no writer can
move a limit backwards. Each lock is one entry of the server's shared lock table
(``max_locks_per_transaction`` x ``max_connections``, 6,400 by default): batches touching
thousands of limits from many consumers at once need that raised.

Connections: one per thread (the API serves from a thread pool), in autocommit mode; reads run as
single statements, writes in explicit transactions.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import msgspec
import psycopg
from psycopg import IsolationLevel
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from user_limits.domain.model import UserLimit
from user_limits.stores.base import StoreError
from user_limits.stores.sql.core import Executor, SqlStore, Statements, snapshot_of
from user_limits.stores.sql.mapping import LIMIT_COLUMNS, LIMIT_NAMES, MOVING_FIELDS, moving_row
from user_limits.stores.text import storable
from user_limits.stream.records import Checkpoint, Counts, Outcome, Snapshot

# Advisory lock held while migrating (two-int form: its own space, apart from the per-key locks).
_MIGRATION_LOCK = (0x75736572, 1)  # "user", 1
_CONNECT_TIMEOUT_S = 10

_KINDS = {"text": "text", "integer": "bigint"}
# Bulk parameters travel as one JSON text (msgspec encodes it in C; psycopg adapts a Python list
# element by element, several times slower for 1,000 rows). UserLimit encodes its fields in camelCase.
_KEYS = "ARRAY(SELECT json_array_elements_text(%s::json))"
_RECORD = ", ".join(f'"{column.json_name}" {_KINDS[column.kind]}' for column in LIMIT_COLUMNS)
_UPSERT = f"""
INSERT INTO user_limits ({LIMIT_NAMES})
SELECT {", ".join(f'"{column.json_name}"' for column in LIMIT_COLUMNS)}
FROM json_to_recordset(%s::json) AS r({_RECORD})
ON CONFLICT (user_limit_id) DO UPDATE SET
    {", ".join(f"{column.name} = EXCLUDED.{column.name}" for column in LIMIT_COLUMNS[1:])}
WHERE user_limits.last_sequence_number < EXCLUDED.last_sequence_number
"""
# The limits whose other columns are as stored (mapping.split_moved): MOVING_COLUMNS alone, so
# that no indexed column is set and PostgreSQL can update the row in place (HOT). They travel as
# one JSON array of mapping.moving_row arrays (the moving columns, then the key): parsed once as
# jsonb, with none of the other columns' text, at about half the server's time of whole objects.
_MOVED = {
    column.name: f"(e->>{n})" + ("::bigint" if column.kind == "integer" else "")
    for n, column in enumerate(MOVING_FIELDS)
}
_MOVE = f"""
UPDATE user_limits AS u SET {", ".join(f"{name} = {value}" for name, value in _MOVED.items())}
FROM jsonb_array_elements(%s::jsonb) AS e
WHERE u.user_limit_id = e->>{len(MOVING_FIELDS)} AND u.last_sequence_number < {_MOVED["last_sequence_number"]}
"""
# Locks in hash order; ORDER BY in the subquery fixes the order the locks are taken in.
_LOCK_KEYS = """
SELECT pg_advisory_xact_lock(h)
FROM (SELECT DISTINCT hashtextextended(k, 0) AS h FROM json_array_elements_text(%s::json) AS k ORDER BY h) AS locks
"""
_SELECT_LIMITS = f"SELECT {LIMIT_NAMES} FROM user_limits WHERE user_limit_id = ANY({_KEYS})"
_SELECT_PARKED = (
    f"SELECT user_limit_id, position, data FROM parked_events WHERE user_limit_id = ANY({_KEYS}) "
    "ORDER BY user_limit_id, position"
)
_SQL = Statements("%s")
_INSERT_DEAD_LETTER = _SQL.insert_dead_letter
_UPSERT_CHECKPOINT = """
INSERT INTO checkpoints (stream, shard_id, sequence_number, sub_sequence_number) VALUES (%s, %s, %s, %s)
ON CONFLICT (stream, shard_id) DO UPDATE SET
    sequence_number = EXCLUDED.sequence_number, sub_sequence_number = EXCLUDED.sub_sequence_number
WHERE (checkpoints.sequence_number, checkpoints.sub_sequence_number)
    < (EXCLUDED.sequence_number, EXCLUDED.sub_sequence_number)
"""
_ADD_COUNTS = """
UPDATE counters SET applied = applied + %s, skipped = skipped + %s, ignored = ignored + %s, drifted = drifted + %s,
    as_of = GREATEST(as_of, %s)
"""


# -- URLs and errors


def masked(url: str) -> str:
    """The URL with its password (in the authority or the query) replaced by ***."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<malformed PostgreSQL URL>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        netloc = f"{user}:***@{hostport}" if colon else netloc
    query = re.sub(r"(^|&)(password=)[^&]*", r"\1\2***", parts.query)
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def _one_line(error: BaseException, url: str) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    password = _password(url)
    return text.replace(password, "***") if password else text


def _password(url: str) -> str | None:
    try:
        password = conninfo_to_dict(url).get("password")
    except psycopg.Error:
        return None
    return None if password is None else str(password)


def _connect(url: str, read_only: bool = False) -> psycopg.Connection[tuple[Any, ...]]:
    try:
        params = conninfo_to_dict(url)
    except psycopg.Error as error:
        raise StoreError(f"bad PostgreSQL store URL {masked(url)}: {_one_line(error, url)}") from None
    params.setdefault("connect_timeout", _CONNECT_TIMEOUT_S)
    params.setdefault("application_name", "user-limits")
    if read_only:
        # The server refuses any write of the session, whatever the role may do.
        params["options"] = f"{params.get('options') or ''} -c default_transaction_read_only=on".strip()
    try:
        connection = psycopg.connect(make_conninfo("", **params), autocommit=True)
    except psycopg.Error as error:
        raise StoreError(f"cannot connect to PostgreSQL store {masked(url)}: {_one_line(error, url)}") from None
    # Each statement of a batch must see what the previous holder of its locks committed.
    connection.isolation_level = IsolationLevel.READ_COMMITTED
    return connection


# -- migrations


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations() -> list[Migration]:
    """The bundled migrations, ``NNNN_name.sql``, in version order."""
    found = []
    for entry in (resources.files("user_limits.stores") / "migrations").iterdir():
        match = re.fullmatch(r"(\d{4})_(\w+)\.sql", entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    return sorted(found, key=lambda migration: migration.version)


LATEST_VERSION = max(migration.version for migration in migrations())


def initialize(url: str) -> str:
    """Apply the missing migrations in order, in one transaction; safe to run twice or concurrently."""
    connection = _connect(url)
    try:
        with connection.transaction():
            connection.execute("SELECT pg_advisory_xact_lock(%s, %s)", _MIGRATION_LOCK)
            connection.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                "version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            applied = {row[0] for row in connection.execute("SELECT version FROM schema_migrations")}
            done = []
            for migration in migrations():
                if migration.version not in applied:
                    # Several statements, no parameters: sent as one simple query.
                    connection.execute(migration.sql.encode())
                    connection.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                        (migration.version, migration.name),
                    )
                    done.append(f"{migration.version:04d}_{migration.name}")
    except psycopg.Error as error:
        raise StoreError(f"cannot initialise PostgreSQL store {masked(url)}: {_one_line(error, url)}") from None
    finally:
        connection.close()
    if not done:
        return f"{masked(url)}: schema up to date (version {LATEST_VERSION})"
    return f"{masked(url)}: applied {', '.join(done)} (schema version {LATEST_VERSION})"


def _check_schema(connection: psycopg.Connection[tuple[Any, ...]], url: str) -> None:
    run_init = "run `user-limits init --store URL`"
    if connection.execute("SELECT to_regclass('schema_migrations')").fetchone() == (None,):
        raise StoreError(f"PostgreSQL store {masked(url)} has no user-limits schema: {run_init}")
    versions = {row[0] for row in connection.execute("SELECT version FROM schema_migrations")}
    known = {migration.version for migration in migrations()}
    if versions - known:
        raise StoreError(
            f"PostgreSQL store {masked(url)} has schema version {max(versions)}, newer than this version of "
            f"user-limits ({LATEST_VERSION}): upgrade user-limits"
        )
    if known - versions:
        raise StoreError(
            f"PostgreSQL store {masked(url)} has schema version {max(versions, default=0)}, older than this "
            f"version of user-limits ({LATEST_VERSION}): {run_init}"
        )


# -- rows

_encode = msgspec.json.Encoder().encode


def _json_text(value: object) -> str:
    return _encode(value).decode()


class PostgresStore(SqlStore):
    kind = "PostgreSQL"
    sql = _SQL
    driver_errors = (psycopg.Error,)
    lock_lease = " FOR UPDATE"

    def __init__(self, url: str, read_only: bool = False) -> None:
        self.url = url
        self.read_only = read_only
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[psycopg.Connection[tuple[Any, ...]]] = []
        self._pid = os.getpid()
        connection = self._connection()
        try:
            _check_schema(connection, url)
        except psycopg.Error as error:
            self.close()
            raise StoreError(f"cannot open PostgreSQL store {masked(url)}: {_one_line(error, url)}") from None
        except StoreError:
            self.close()
            raise

    def _connection(self) -> psycopg.Connection[tuple[Any, ...]]:
        if self._pid != os.getpid():
            # A forked child must not touch its parent's sockets (closing them would end the
            # parent's sessions): it forgets them and opens its own.
            self._pid = os.getpid()
            self._local = threading.local()
            self._connections = []
        connection: psycopg.Connection[tuple[Any, ...]] | None = getattr(self._local, "connection", None)
        if connection is None or connection.closed:
            connection = _connect(self.url, self.read_only)
            self._local.connection = connection
            with self._lock:
                self._connections.append(connection)
        return connection

    def _where(self) -> str:
        return masked(self.url)

    def _one_line(self, error: BaseException) -> str:
        return _one_line(error, self.url)

    def _failed(self, error: Exception) -> StoreError:
        """The error as one line for the user; a broken connection is dropped, to reconnect next time."""
        connection = getattr(self._local, "connection", None)
        if connection is not None and (connection.broken or connection.closed):
            self._forget(connection)
        return super()._failed(error)

    def _forget(self, connection: psycopg.Connection[tuple[Any, ...]]) -> None:
        connection.close()
        self._local.connection = None
        with self._lock:
            if connection in self._connections:
                self._connections.remove(connection)

    # -- write side

    def apply_batch(
        self, keys: Mapping[str, str], project: Callable[[Snapshot[UserLimit]], Outcome[UserLimit]]
    ) -> Outcome[UserLimit]:
        db = self._connection()
        try:
            with db.transaction():
                snapshot = self._snapshot(db, list(keys))
                outcome = project(snapshot)
                self._hold_lease(db, outcome.checkpoint)
                self._write(db, outcome, snapshot.states)
        except psycopg.Error as error:  # rolled back by the transaction block
            raise self._failed(error) from error
        return outcome

    def _transaction(self, write: Callable[[Executor], None]) -> None:
        db = self._connection()
        try:
            with db.transaction(), db.pipeline(), db.cursor() as cursor:
                write(cursor)
        except psycopg.Error as error:  # rolled back by the transaction block
            raise self._failed(error) from error

    def _snapshot(self, db: psycopg.Connection[tuple[Any, ...]], keys: list[str]) -> Snapshot[UserLimit]:
        if not keys:
            return Snapshot()
        # One round trip: the locks, then the reads (each statement sees what was committed before it).
        ids = (_json_text(keys),)
        with db.pipeline(), db.cursor() as locks, db.cursor() as limits, db.cursor() as parked:
            locks.execute(_LOCK_KEYS, ids)
            limits.execute(_SELECT_LIMITS, ids)
            parked.execute(_SELECT_PARKED, ids)
            return snapshot_of(limits.fetchall(), parked.fetchall())

    def _write(self, db: Any, outcome: Outcome[UserLimit], stored: Mapping[str, UserLimit]) -> None:
        with db.pipeline(), db.cursor() as cursor:
            super()._write(cursor, outcome, stored)

    def _write_limits(self, db: Executor, whole: Sequence[UserLimit], moved: Sequence[UserLimit]) -> None:
        if whole:
            db.execute(_UPSERT, (_json_text(whole),))
        if moved:
            db.execute(_MOVE, (_json_text([moving_row(limit) for limit in moved]),))

    def _store_checkpoint(self, db: Executor, checkpoint: Checkpoint) -> None:
        where = (storable(checkpoint.stream), storable(checkpoint.shard_id))
        db.execute(_UPSERT_CHECKPOINT, (*where, int(checkpoint.sequence_number), checkpoint.sub_sequence_number))

    def _add_counts(self, db: Executor, counts: Counts, newest: int | None) -> None:
        db.execute(_ADD_COUNTS, (counts.applied, counts.skipped, counts.ignored, counts.drifted, newest))

    def _sequence_text(self, value: Any) -> str:
        return str(int(value))  # numeric: the digits of the number

    def close(self) -> None:
        """Closes every thread's connection; a later call on this store reconnects."""
        with self._lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            connection.close()
        self._local = threading.local()
