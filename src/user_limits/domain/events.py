"""The three upstream event types the projection handles, as typed, immutable values.

Field names are snake_case in Python and camelCase on the wire (``rename="camel"``). Amounts are
``Decimal``; timestamps are epoch milliseconds. Unknown fields are tolerated.
"""

from decimal import Decimal
from typing import Annotated, Literal

import msgspec

LimitType = Literal["BALANCE", "BET", "DEPOSIT", "LOSS", "SESSION"]
LimitPeriod = Literal[
    "CALENDAR_DAY", "CALENDAR_WEEK", "CALENDAR_MONTH", "DAY", "INDEFINITE", "INSTANCE", "WEEK", "MONTH"
]
LimitStatus = Literal["ACTIVE", "CANCELED", "FUTURE", "IN_COOLDOWN"]

LIMIT_TYPES: tuple[str, ...] = LimitType.__args__  # type: ignore[attr-defined]
LIMIT_PERIODS: tuple[str, ...] = LimitPeriod.__args__  # type: ignore[attr-defined]
LIMIT_STATUSES: tuple[str, ...] = LimitStatus.__args__  # type: ignore[attr-defined]

# Stores keep positions and timestamps as signed 64-bit integers.
Int64 = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]

CREATED = "USER_LIMIT_CREATED"
PROGRESS_CHANGED = "USER_LIMIT_PROGRESS_CHANGED"
RESET = "USER_LIMIT_RESET"


# Stores key limits by these ids (a DynamoDB sort key holds 1024 bytes, a PostgreSQL index entry
# about 2700): 200 characters, at most 800 bytes of UTF-8, fit every one of them. A longer id would
# fail its batch on every retry; it is refused here, and the record dead-lettered.
MAX_ID_LENGTH = 200
Id = Annotated[str, msgspec.Meta(max_length=MAX_ID_LENGTH)]


class _Payload(msgspec.Struct, frozen=True, gc=False, rename="camel"):
    brand_id: str
    currency_code: str
    user_id: Id
    user_limit_id: Id


class LimitCreated(_Payload, frozen=True, gc=False, rename="camel"):
    active_from: Int64
    period: LimitPeriod
    status: LimitStatus
    type: LimitType
    value: Decimal
    next_reset_time: Int64 | None = None
    active_until: Int64 | None = None


class ProgressChanged(_Payload, frozen=True, gc=False, rename="camel"):
    amount: Decimal
    previous_progress: Decimal
    remaining_amount: Decimal
    next_reset_time: Int64 | None = None


class LimitReset(_Payload, frozen=True, gc=False, rename="camel"):
    next_reset_time: Int64
    period: LimitPeriod
    reset_amount: Decimal
    reset_percentage: Decimal
    type: LimitType
    unused_amount: Decimal


Payload = LimitCreated | ProgressChanged | LimitReset

PAYLOAD_TYPES: dict[str, type[Payload]] = {
    CREATED: LimitCreated,
    PROGRESS_CHANGED: ProgressChanged,
    RESET: LimitReset,
}

# Rule 1: the text of an amount, ASCII only. Decimal() reads far more (" 1", "1_000", "+5", ".5",
# "5.", fullwidth or Arabic-Indic digits, NaN, Infinity); the codec checks the text itself.
AMOUNT_GRAMMAR = r"-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?"

# The Decimal fields of each payload type: each must fit AMOUNT_GRAMMAR, so it is finite.
DECIMAL_FIELDS: dict[type[Payload], tuple[str, ...]] = {
    LimitCreated: ("value",),
    ProgressChanged: ("amount", "previous_progress", "remaining_amount"),
    LimitReset: ("reset_amount", "reset_percentage", "unused_amount"),
}
# Those the read model computes with or stores must also lie within AMOUNT_DIGITS digits either
# side of the point. Outside that, a finite amount such as 1e1000000 overflows Decimal arithmetic
# and numeric columns: every retry of its batch would fail. (The others are only validated.)
AMOUNT_DIGITS = 38
STORED_DECIMAL_FIELDS: dict[type[Payload], tuple[str, ...]] = {
    LimitCreated: ("value",),
    ProgressChanged: ("amount", "previous_progress"),
    LimitReset: (),
}


class UserLimitEvent(msgspec.Struct, frozen=True, gc=False):
    """One handled event: the envelope's position and time, and its typed payload."""

    sequence_number: int
    created_at: int
    payload: Payload
