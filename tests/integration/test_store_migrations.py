"""Files and databases made by the previous schema open with every read unchanged, and go on.

The old schema is a copy of its DDL in tests/data (never the bundled steps, which move on), filled
with rows as the old stores wrote them: text stored escaped, Decimals as their text, a checkpoint
beyond 64 bits, dead letters inserted out of id order.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import pytest

from tests.streams import process, progress, record
from user_limits.domain.model import UserLimit
from user_limits.stores.base import LimitStore, StoreError, Totals
from user_limits.stores.postgres_store import PostgresStore, initialize
from user_limits.stores.sqlite_store import SCHEMA_VERSION, SQLiteStore
from user_limits.stores.text import storable
from user_limits.stream.records import Checkpoint, DeadLetter, Outcome, ParkedEvent, Snapshot

DATA = Path(__file__).parents[1] / "data"
STREAM = "arn:aws:kinesis:eu-west-1:123456789012:stream/user-limits"
SHARD = "shardId-000000000000"
SEQUENCE = "49590338271490256608559692538361571095921575989136588898"

LIMITS = [
    UserLimit(
        "L1", "U1", "B1", "DEPOSIT", "DAY", "ACTIVE", Decimal("9800.00"), Decimal("0.10"), "SEK",
        1_700_000_000_000, None, 1_700_086_400_000, 1_700_000_000_000, 3, 1_700_000_000_900,
    ),
    UserLimit(
        "L2", "U1", "Bränd", "LOSS", "WEEK", "CANCELED", Decimal("1E+5"), Decimal("-0"), "EUR",
        1_700_000_000_000, 1_800_000_000_000, None, 1_700_000_000_000, 7, 1_700_000_000_500,
    ),
    UserLimit(
        "L0", "U2", "B1", "BET", "MONTH", "FUTURE", Decimal("5"), Decimal("0"), "SEK",
        1_700_000_000_000, None, None, 1_700_000_000_000, 1, 1_700_000_000_100,
    ),
]  # fmt: skip
PARKED = [ParkedEvent("L9", 4, b'{"later": 1}'), ParkedEvent("L9", 2, b"\x00raw"), ParkedEvent("L8", 1, b"{}")]
LETTERS = [  # in the order they were kept
    DeadLetter("not JSON", b"\xff", SEQUENCE, 0, "pk", 1_700_000_000_000, STREAM, SHARD),
    DeadLetter("a NUL \x00 in the reason", b"{}", None, None, "p\x00k"),
    DeadLetter("\x1bstarts like escaped text", b"[]", "1", 2, None, None, "arn", "shardId-1"),
]
COUNTS = (41, 5, 3)  # applied, skipped, ignored
AS_OF = 1_700_000_000_900
CHECKPOINT = Checkpoint(STREAM, SHARD, SEQUENCE, 3)


def old_limit_row(limit: UserLimit) -> tuple[Any, ...]:
    """A limit as schema 1 and 2 held it, written out here: the test must not follow the mapping."""
    return (
        limit.user_limit_id, limit.user_id, limit.brand_id, limit.type, limit.period, limit.status,
        str(limit.value), str(limit.progress), limit.currency_code, limit.active_from, limit.active_until,
        limit.next_reset_time, limit.created_at, limit.last_sequence_number, limit.updated_at,
    )  # fmt: skip


def old_letter_row(letter: DeadLetter) -> tuple[Any, ...]:
    texts = [None if text is None else storable(text) for text in (letter.sequence_number, letter.partition_key)]
    return (
        storable(letter.id), storable(letter.reason), letter.data, texts[0], letter.sub_sequence_number, texts[1],
        letter.arrival_ms, letter.stream_arn, letter.shard_id,
    )  # fmt: skip


def reads(store: LimitStore) -> dict[str, Any]:
    return {
        "export": list(store.all_limits()),
        "user": store.user_limits("U1"),
        "one": store.user_limit("U1", "L2"),
        "parked": store.parked_events(),
        "dead": store.dead_letters(),
        "stats": store.stats(),
        "as_of": store.as_of(),
        "checkpoint": store.checkpoint(STREAM, SHARD),
    }


EXPECTED = {
    "export": sorted(LIMITS, key=lambda limit: limit.user_limit_id),
    "user": [LIMITS[0], LIMITS[1]],
    "one": LIMITS[1],
    "parked": sorted(PARKED, key=lambda event: (event.key, event.position)),
    "dead": LETTERS,
    "stats": Totals(*COUNTS, waiting=3, dead_letters=3),
    "as_of": AS_OF,
    "checkpoint": CHECKPOINT,
}


def one_more_batch(store: LimitStore) -> None:
    """A batch on the migrated store: counts add up, its dead letter is listed last, as_of moves on."""
    newer = msgspec.structs.replace(LIMITS[2], progress=Decimal("1"), last_sequence_number=2)
    letter = DeadLetter("later", b"!", None, None, "a")

    def project(snapshot: Snapshot[UserLimit]) -> Outcome[UserLimit]:
        assert snapshot.states == {"L0": LIMITS[2]}
        outcome: Outcome[UserLimit] = Outcome(states={"L0": newer}, dead_letters=[(0, letter)])
        outcome.counts.applied, outcome.counts.dead_lettered = 1, 1
        return outcome

    store.apply_batch({"L0": "U2"}, project)
    assert store.dead_letters() == [*LETTERS, letter]
    assert store.stats() == Totals(COUNTS[0] + 1, COUNTS[1], COUNTS[2], waiting=3, dead_letters=4)
    assert store.as_of() == AS_OF


def a_drifting_batch(store: LimitStore) -> None:
    """After one_more_batch: a progress change of L0 (value 5, progress 1) that says 99 remain, not 3.
    The new columns take the last drift, the new counter counts it; old rows have none."""
    process(store, [record(progress("L0", 3, "1", "1", user_id="U2", remainingAmount="99"), 0)])
    assert store.stats().drifted == 1
    [limit] = store.drifted_limits()
    assert (limit.user_limit_id, limit.drift_sequence_number, limit.drift_ours, limit.drift_theirs) == (
        "L0", 3, Decimal("3"), Decimal("99")
    )  # fmt: skip
    assert str(limit.progress) == "2"
    assert [x.drift_sequence_number for x in store.user_limits("U1")] == [None, None]


# -- SQLite: schema 1, migrated when opened


@pytest.fixture
def sqlite_1(tmp_path: Path) -> str:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.executescript(DATA.joinpath("sqlite_schema_1.sql").read_text())
        db.execute("PRAGMA user_version = 1")
        db.executemany(
            "INSERT INTO user_limits VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", map(old_limit_row, LIMITS)
        )
        db.executemany("INSERT INTO parked_events VALUES (?, ?, ?)", PARKED)
        db.executemany("INSERT INTO dead_letters VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", map(old_letter_row, LETTERS))
        db.executemany(
            "UPDATE counters SET value = ? WHERE name = ?", zip(COUNTS, ("applied", "skipped", "ignored"), strict=True)
        )
        db.execute("INSERT INTO meta VALUES ('as_of', ?)", (AS_OF,))
        db.execute("INSERT INTO checkpoints VALUES (?, ?, ?, ?)", (STREAM, SHARD, SEQUENCE, 3))
    db.close()
    return f"sqlite:///{path}"


@pytest.fixture
def sqlite_2(tmp_path: Path) -> str:
    """A file of schema 2: what user-limits made before the drift columns (tests/data)."""
    path = tmp_path / "two.db"
    with sqlite3.connect(path) as db:
        db.executescript(DATA.joinpath("sqlite_schema_2.sql").read_text())
        db.execute("PRAGMA user_version = 2")
        db.executemany(
            "INSERT INTO user_limits VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", map(old_limit_row, LIMITS)
        )
        db.executemany("INSERT INTO parked_events VALUES (?, ?, ?)", PARKED)
        db.executemany(
            "INSERT INTO dead_letters (id, reason, data, sequence_number, sub_sequence_number, partition_key, "
            "arrival_ms, stream_arn, shard_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            map(old_letter_row, LETTERS),
        )
        db.execute("UPDATE counters SET applied = ?, skipped = ?, ignored = ?, as_of = ?", (*COUNTS, AS_OF))
        db.execute("INSERT INTO checkpoints VALUES (?, ?, ?, ?)", (STREAM, SHARD, SEQUENCE, 3))
    db.close()
    return f"sqlite:///{path}"


def user_version(url: str) -> int:
    with sqlite3.connect(url.removeprefix("sqlite:///")) as db:
        version: int = db.execute("PRAGMA user_version").fetchone()[0]
    db.close()
    return version


def test_a_sqlite_file_of_schema_1_is_migrated_on_open_with_every_read_unchanged(sqlite_1: str) -> None:
    store = SQLiteStore(sqlite_1)
    try:
        assert user_version(sqlite_1) == SCHEMA_VERSION
        assert reads(store) == EXPECTED
        one_more_batch(store)
    finally:
        store.close()
    again = SQLiteStore(sqlite_1)  # opened again: nothing left to migrate
    try:
        assert again.stats().applied == COUNTS[0] + 1
    finally:
        again.close()


def test_a_sqlite_file_of_schema_2_gains_the_drift_columns_on_open_with_every_read_unchanged(sqlite_2: str) -> None:
    store = SQLiteStore(sqlite_2)
    try:
        assert user_version(sqlite_2) == SCHEMA_VERSION
        assert reads(store) == EXPECTED
        assert store.drifted_limits() == []
        one_more_batch(store)
        a_drifting_batch(store)
    finally:
        store.close()
    again = SQLiteStore(sqlite_2)  # opened again: nothing left to migrate, the drift kept
    try:
        assert again.stats().drifted == 1
        assert [limit.user_limit_id for limit in again.drifted_limits()] == ["L0"]
    finally:
        again.close()


def test_a_sqlite_file_of_schema_1_without_as_of_reads_none(sqlite_1: str) -> None:
    with sqlite3.connect(sqlite_1.removeprefix("sqlite:///")) as db:
        db.execute("DELETE FROM meta")
    db.close()
    store = SQLiteStore(sqlite_1)
    try:
        assert store.as_of() is None
        assert store.stats() == EXPECTED["stats"]
    finally:
        store.close()


# -- PostgreSQL: schema 2 (migrations 0001 and 0002)


@pytest.fixture
def postgres_2(postgres_database: str) -> Iterator[str]:
    with psycopg.connect(postgres_database) as db:
        db.execute(DATA.joinpath("postgres_schema_2.sql").read_bytes())
        with db.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO user_limits VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                list(map(old_limit_row, LIMITS)),
            )
            cursor.executemany("INSERT INTO parked_events VALUES (%s, %s, %s)", PARKED)
            cursor.executemany(
                "INSERT INTO dead_letters (id, reason, data, sequence_number, sub_sequence_number, partition_key, "
                "arrival_ms, stream_arn, shard_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                list(map(old_letter_row, LETTERS)),
            )
        db.execute("UPDATE counters SET applied = %s, skipped = %s, ignored = %s, as_of = %s", (*COUNTS, AS_OF))
        db.execute("INSERT INTO checkpoints VALUES (%s, %s, %s, %s)", (STREAM, SHARD, int(SEQUENCE), 3))
    yield postgres_database


@pytest.mark.servers
def test_a_postgres_database_of_schema_2_opens_with_every_read_unchanged(postgres_2: str) -> None:
    # The later migrations add what schema 2 lacked (drift, leases) and leave every read as it was.
    applied = initialize(postgres_2)
    assert "0003_drift" in applied and "0004_leases" in applied
    assert "up to date" in initialize(postgres_2)
    store = PostgresStore(postgres_2)
    try:
        assert reads(store) == EXPECTED
        one_more_batch(store)
        a_drifting_batch(store)
    finally:
        store.close()
    again = PostgresStore(postgres_2)
    try:
        assert again.stats().drifted == 1
    finally:
        again.close()


@pytest.mark.servers
def test_a_postgres_database_of_schema_2_is_refused_until_init(postgres_2: str) -> None:
    with pytest.raises(StoreError, match="init"):
        PostgresStore(postgres_2)
