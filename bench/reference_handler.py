"""The reference: a Kinesis projector written the way the field usually writes one.

Powertools ``BatchProcessor(event_type=EventType.KinesisDataStreams)`` with
``process_partial_response``; per record a pydantic v2 model of the envelope, then of the payload
of its type; per record a read-modify-write on SQLite (SELECT the limit, compute, UPSERT), the
whole batch in one transaction. It implements the product's rules honestly, so that both end with
the same read model: invalid records are dead-lettered once, unknown types ignored, events at or
below the stored sequence number skipped, events for a limit not created yet parked, and parked
events drained in order when the limit is created, and applied events whose figures
(remainingAmount, unusedAmount, resetAmount) disagree counted drifted (it keeps no last drift per
limit, which favours it slightly). Same SQLite settings as the product (WAL,
synchronous NORMAL). It writes no log line and no metric per batch, which favours it slightly.

The same code runs on PostgreSQL (psycopg 3), where each SELECT and UPSERT is a round trip: that
is where a per-record projector usually loses most against a set-based one.
"""

from __future__ import annotations

import contextlib
import functools
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any, Literal, Protocol

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.kinesis_stream_event import KinesisStreamRecord
from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError
from pydantic.alias_generators import to_camel

from user_limits.domain.model import EXPORT_FIELDS

Int64 = Annotated[int, Field(strict=True, ge=0, le=2**63 - 1)]
# The product's amount rule: finite, below 1E38 in size, at most 38 decimal places. (pydantic counts
# decimal places after dropping trailing zeros, the product does not: they part only on amounts
# like 1.000…0 with 39 zeros, which no stream here carries.)
AMOUNT_BOUND = Decimal("1E38")
FiniteDecimal = Annotated[Decimal, Field(allow_inf_nan=False, gt=-AMOUNT_BOUND, lt=AMOUNT_BOUND, decimal_places=38)]
LimitType = Literal["BALANCE", "BET", "DEPOSIT", "LOSS", "SESSION"]
LimitPeriod = Literal[
    "CALENDAR_DAY", "CALENDAR_WEEK", "CALENDAR_MONTH", "DAY", "INDEFINITE", "INSTANCE", "WEEK", "MONTH"
]
LimitStatus = Literal["ACTIVE", "CANCELED", "FUTURE", "IN_COOLDOWN"]


class _Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, frozen=True)


class Envelope(_Camel):
    aggregate_id: StrictStr
    context: dict[str, Any]
    created_at: Int64
    event_id: StrictStr
    payload: dict[str, Any]
    sequence_number: Int64
    source: StrictStr
    type: StrictStr


class _Payload(_Camel):
    brand_id: StrictStr
    currency_code: StrictStr
    user_id: StrictStr
    user_limit_id: StrictStr


class LimitCreated(_Payload):
    active_from: Int64
    period: LimitPeriod
    status: LimitStatus
    type: LimitType
    value: FiniteDecimal
    next_reset_time: Int64 | None = None
    active_until: Int64 | None = None


class ProgressChanged(_Payload):
    amount: FiniteDecimal
    previous_progress: FiniteDecimal
    remaining_amount: FiniteDecimal
    next_reset_time: Int64 | None = None


class LimitReset(_Payload):
    next_reset_time: Int64
    period: LimitPeriod
    reset_amount: FiniteDecimal
    reset_percentage: FiniteDecimal
    type: LimitType
    unused_amount: FiniteDecimal


PAYLOAD_MODELS: dict[str, type[_Payload]] = {
    "USER_LIMIT_CREATED": LimitCreated,
    "USER_LIMIT_PROGRESS_CHANGED": ProgressChanged,
    "USER_LIMIT_RESET": LimitReset,
}

SCHEMA = """
CREATE TABLE IF NOT EXISTS limits (
    user_limit_id TEXT PRIMARY KEY, user_id TEXT NOT NULL, brand_id TEXT NOT NULL, type TEXT NOT NULL,
    period TEXT NOT NULL, status TEXT NOT NULL, value TEXT NOT NULL, progress TEXT NOT NULL,
    currency_code TEXT NOT NULL, active_from BIGINT NOT NULL, active_until BIGINT,
    next_reset_time BIGINT, created_at BIGINT NOT NULL, last_sequence_number BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS limits_by_user ON limits (user_id);
CREATE TABLE IF NOT EXISTS parked (
    user_limit_id TEXT NOT NULL, position BIGINT NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY (user_limit_id, position)
);
CREATE TABLE IF NOT EXISTS dead_letters (id TEXT PRIMARY KEY, reason TEXT NOT NULL, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value BIGINT NOT NULL);
INSERT OR IGNORE INTO counters VALUES ('applied', 0), ('skipped', 0), ('ignored', 0), ('drifted', 0)
"""
COLUMNS = (
    "user_limit_id, user_id, brand_id, type, period, status, value, progress, currency_code, "
    "active_from, active_until, next_reset_time, created_at, last_sequence_number, updated_at"
)
UPSERT = f"""
INSERT INTO limits ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (user_limit_id) DO UPDATE SET
    user_id = excluded.user_id, brand_id = excluded.brand_id, type = excluded.type, period = excluded.period,
    status = excluded.status, value = excluded.value, progress = excluded.progress,
    currency_code = excluded.currency_code, active_from = excluded.active_from,
    active_until = excluded.active_until, next_reset_time = excluded.next_reset_time,
    created_at = excluded.created_at, last_sequence_number = excluded.last_sequence_number,
    updated_at = excluded.updated_at
"""
SELECT_LIMIT = f"SELECT {COLUMNS} FROM limits WHERE user_limit_id = ?"


class Connection(Protocol):
    """What both sqlite3 and psycopg connections offer (``execute`` returning a cursor)."""

    def execute(self, sql: Any, params: Any = ..., /) -> Any: ...

    def cursor(self) -> Any: ...

    def close(self) -> None: ...


def postgres_sql(statement: str) -> str:
    """The SQLite spelling above, in PostgreSQL's."""
    statement = statement.replace("?", "%s").replace(" BLOB ", " BYTEA ").replace("BEGIN IMMEDIATE", "BEGIN")
    if "INSERT OR IGNORE" in statement:
        statement = statement.replace("INSERT OR IGNORE", "INSERT") + " ON CONFLICT DO NOTHING"
    return statement


@dataclass
class Tally:
    applied: int = 0
    skipped: int = 0
    ignored: int = 0
    drifted: int = 0


class ReferenceProjector:
    """One database, one Powertools batch processor; ``handler`` is the Lambda entry point."""

    def __init__(self, db: Connection, sql: Callable[[str], str] = str) -> None:
        self.db = db
        self.sql = functools.cache(sql)
        for statement in SCHEMA.split(";"):
            db.execute(self.sql(statement.strip()))
        self.processor = BatchProcessor(event_type=EventType.KinesisDataStreams)
        self.tally = Tally()

    @classmethod
    def sqlite(cls, path: str) -> ReferenceProjector:
        db = sqlite3.connect(path, isolation_level=None)
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        return cls(db)

    @classmethod
    def postgres(cls, url: str) -> ReferenceProjector:
        import psycopg

        return cls(psycopg.connect(url, autocommit=True), postgres_sql)

    def handler(self, event: dict[str, Any], context: Any = None) -> dict[str, Any]:
        db = self.db
        self.tally = Tally()
        self.q("BEGIN IMMEDIATE")
        try:
            response = process_partial_response(
                event=event, record_handler=self.record_handler, processor=self.processor, context=context
            )
            tally = self.tally
            db.cursor().executemany(
                self.sql("UPDATE counters SET value = value + ? WHERE name = ?"),
                [
                    (tally.applied, "applied"),
                    (tally.skipped, "skipped"),
                    (tally.ignored, "ignored"),
                    (tally.drifted, "drifted"),
                ],
            )
            db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(Exception):
                db.execute("ROLLBACK")
            raise
        return dict(response)

    def record_handler(self, record: KinesisStreamRecord) -> None:
        data = record.kinesis.data_as_bytes()
        try:
            envelope = Envelope.model_validate_json(data)
            model = PAYLOAD_MODELS.get(envelope.type)
            if model is None:
                self.tally.ignored += 1
                return
            payload = model.model_validate(envelope.payload)
        except ValidationError as error:
            shard = record.event_id.partition(":")[0]
            letter_id = f"{record.event_source_arn}|{shard}|{record.kinesis.sequence_number}|0"
            reason = str(error).encode("utf-8", "replace").decode()  # PostgreSQL text must be valid UTF-8
            self.q("INSERT OR IGNORE INTO dead_letters VALUES (?, ?, ?)", (letter_id, reason, data))
            return
        self.project(envelope, payload, data)

    def project(self, envelope: Envelope, payload: _Payload, data: bytes) -> None:
        key = payload.user_limit_id
        position = envelope.sequence_number
        row = self.q(SELECT_LIMIT, (key,)).fetchone()
        if row is not None and position <= row[13]:
            self.tally.skipped += 1
            return
        if isinstance(payload, LimitCreated):
            self.write(created_row(envelope, payload))
            self.drain(key)
            return
        if row is None:
            parked = self.q("INSERT OR IGNORE INTO parked VALUES (?, ?, ?)", (key, position, data))
            if parked.rowcount == 0:
                self.tally.skipped += 1
            return
        self.change(row, envelope, payload)

    def change(self, row: tuple[Any, ...], envelope: Envelope, payload: _Payload) -> tuple[Any, ...]:
        changed = changed_row(row, envelope, payload)
        if drifted(row, changed, payload):
            self.tally.drifted += 1
        self.write(changed)
        return changed

    def q(self, statement: str, params: Any = ()) -> Any:
        return self.db.execute(self.sql(statement), params)

    def write(self, row: tuple[Any, ...]) -> None:
        self.q(UPSERT, row)
        self.tally.applied += 1

    def drain(self, key: str) -> None:
        """Apply the events parked for a limit just created, in sequence order."""
        waiting = self.q("SELECT position, data FROM parked WHERE user_limit_id = ? ORDER BY position", (key,))
        parked = waiting.fetchall()
        if not parked:
            return
        self.q("DELETE FROM parked WHERE user_limit_id = ?", (key,))
        row = self.q(SELECT_LIMIT, (key,)).fetchone()
        for position, data in parked:
            if position <= row[13]:
                self.tally.skipped += 1
                continue
            envelope = Envelope.model_validate_json(data)
            payload = PAYLOAD_MODELS[envelope.type].model_validate(envelope.payload)
            row = self.change(row, envelope, payload)

    # -- the read model, for the equality check

    def export(self) -> list[dict[str, object]]:
        rows = self.q(f"SELECT {COLUMNS} FROM limits ORDER BY user_limit_id")
        return [export_row(row) for row in rows]

    def stats(self) -> dict[str, int]:
        counters = dict(self.q("SELECT name, value FROM counters").fetchall())
        return {
            "applied": counters["applied"],
            "skipped": counters["skipped"],
            "ignored": counters["ignored"],
            "parked": self.q("SELECT count(*) FROM parked").fetchone()[0],
            "deadLettered": self.q("SELECT count(*) FROM dead_letters").fetchone()[0],
            "drifted": counters["drifted"],
        }

    def close(self) -> None:
        self.db.close()


def created_row(envelope: Envelope, p: LimitCreated) -> tuple[Any, ...]:
    return (
        p.user_limit_id,
        p.user_id,
        p.brand_id,
        p.type,
        p.period,
        p.status,
        str(p.value),
        "0",
        p.currency_code,
        p.active_from,
        p.active_until,
        p.next_reset_time,
        envelope.created_at,
        envelope.sequence_number,
        envelope.created_at,
    )


def changed_row(row: tuple[Any, ...], envelope: Envelope, payload: _Payload) -> tuple[Any, ...]:
    """A progress change or a reset applied to a stored row."""
    progress: Decimal
    if isinstance(payload, ProgressChanged):
        progress = payload.previous_progress + payload.amount
        next_reset = row[11] if payload.next_reset_time is None else payload.next_reset_time
    else:
        assert isinstance(payload, LimitReset)
        progress, next_reset = Decimal(0), payload.next_reset_time
    return (*row[:7], str(progress), *row[8:11], next_reset, row[12], envelope.sequence_number, envelope.created_at)


def drifted(before: tuple[Any, ...], after: tuple[Any, ...], payload: _Payload) -> bool:
    """Whether the producer's figures disagree: remaining after a change, unused and reset before a reset."""
    value = Decimal(before[6])
    if isinstance(payload, ProgressChanged):
        return bool(payload.remaining_amount != value - Decimal(after[7]))
    assert isinstance(payload, LimitReset)
    progress = Decimal(before[7])
    return bool(payload.unused_amount != value - progress or payload.reset_amount != progress)


def export_row(row: tuple[Any, ...]) -> dict[str, object]:
    return dict(zip(EXPORT_FIELDS, row[:13], strict=True))
