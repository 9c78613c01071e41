"""The user-limit event family: where the rules of ``domain/`` are plugged into the engine of ``stream/``.

:class:`UserLimitFamily` is the :class:`~user_limits.stream.engine.EventFamily` the engine runs: it
decodes the upstream envelope into the domain's events and names each event's key, partition and
position, and how it creates and changes a limit (``domain.projection``).

Two-stage decoding with msgspec: the envelope first, with the payload kept raw, so that event
types we ignore cost no payload decoding; then the payload of a handled type into its struct.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Context, Decimal, Inexact, InvalidOperation
from operator import attrgetter
from typing import cast

import msgspec
from msgspec.structs import astuple

from user_limits.domain import projection
from user_limits.domain.events import (
    AMOUNT_DIGITS,
    DECIMAL_FIELDS,
    PAYLOAD_TYPES,
    STORED_DECIMAL_FIELDS,
    Int64,
    Payload,
    UserLimitEvent,
)
from user_limits.domain.model import UserLimit
from user_limits.stream.engine import InvalidRecord


class Envelope(msgspec.Struct, gc=False, rename="camel"):
    aggregate_id: str
    context: msgspec.Raw
    created_at: Int64
    event_id: str
    payload: msgspec.Raw
    sequence_number: Int64
    source: str
    type: str


_envelope = msgspec.json.Decoder(Envelope)
_payloads: dict[str, msgspec.json.Decoder[Payload]] = {
    name: msgspec.json.Decoder(cls) for name, cls in PAYLOAD_TYPES.items()
}
_OPEN_BRACE = ord("{")
_ESCAPED_NUL = b"\\u0000"
# RecursionError: JSON nested deeper than msgspec's stack allows, even in a field it skips. It must
# become a dead letter like any other bad record, or the batch fails and is retried for ever.
_DECODE_ERRORS = (msgspec.DecodeError, msgspec.ValidationError, RecursionError)


def _getter(names: tuple[str, ...]) -> Callable[[Payload], tuple[Decimal, ...]]:
    """The named amounts of a payload as a tuple, fetched in C (attrgetter of one name returns no tuple)."""
    if len(names) > 1:
        return cast("Callable[[Payload], tuple[Decimal, ...]]", attrgetter(*names))
    if not names:
        return lambda payload: ()
    get_one = attrgetter(names[0])
    return lambda payload: (get_one(payload),)


_all_amounts = {kind: _getter(names) for kind, names in DECIMAL_FIELDS.items()}
_stored_amounts = {kind: _getter(names) for kind, names in STORED_DECIMAL_FIELDS.items()}
_is_finite = Decimal.is_finite
_BOUND = Decimal(f"1E{AMOUNT_DIGITS}")
_QUANTUM = Decimal(f"1E-{AMOUNT_DIGITS}")
# Room for AMOUNT_DIGITS digits either side of the point; Inexact flags digits beyond the quantum.
_RANGE = Context(prec=2 * AMOUNT_DIGITS + 2, traps=[Inexact, InvalidOperation])


def _in_range(amount: Decimal) -> bool:
    """Below 1E+AMOUNT_DIGITS in size and no non-zero digit past AMOUNT_DIGITS decimal places."""
    if not -_BOUND < amount < _BOUND:
        return False
    try:
        _RANGE.quantize(amount, _QUANTUM)
    except (Inexact, InvalidOperation):
        return False
    return True


def _first_bad(payload: Payload, names: tuple[str, ...]) -> str:
    name = next(n for n in names if not getattr(payload, n).is_finite())
    return f"`{name}` is not a finite decimal"


def decode_envelope(data: bytes) -> Envelope:
    # msgspec skips unknown fields without checking their UTF-8: check the whole record. ASCII, the
    # usual case, is valid UTF-8: isascii() checks it without building a str.
    if not data.isascii():
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as error:
            raise InvalidRecord(f"not UTF-8: {error.reason} at byte {error.start}") from None
    try:
        envelope = _envelope.decode(data)
    except _DECODE_ERRORS as error:
        raise InvalidRecord(f"invalid envelope: {error}") from None
    if memoryview(envelope.payload)[0] != _OPEN_BRACE:
        raise InvalidRecord("invalid envelope: Expected `object` - at `$.payload`")
    if memoryview(envelope.context)[0] != _OPEN_BRACE:
        raise InvalidRecord("invalid envelope: Expected `object` - at `$.context`")
    return envelope


class UserLimitFamily:
    """The user-limit events as an :class:`~user_limits.stream.engine.EventFamily`."""

    def decode(self, data: bytes) -> UserLimitEvent | None:
        envelope = decode_envelope(data)
        decoder = _payloads.get(envelope.type)
        if decoder is None:
            return None
        try:
            payload = decoder.decode(envelope.payload)
        except _DECODE_ERRORS as error:
            raise InvalidRecord(f"invalid {envelope.type} payload: {error}") from None
        # Valid JSON, but no store's text column can hold a NUL: it would fail every retry.
        if _ESCAPED_NUL in data and any("\x00" in value for value in astuple(payload) if isinstance(value, str)):
            raise InvalidRecord(f"invalid {envelope.type} payload: a string contains the NUL character (\\u0000)")
        kind = type(payload)
        if not all(map(_is_finite, _all_amounts[kind](payload))):
            raise InvalidRecord(f"invalid {envelope.type} payload: {_first_bad(payload, DECIMAL_FIELDS[kind])}")
        for amount in _stored_amounts[kind](payload):
            if not _in_range(amount):
                names = STORED_DECIMAL_FIELDS[kind]
                name = next(n for n in names if getattr(payload, n) is amount)
                raise InvalidRecord(
                    f"invalid {envelope.type} payload: `{name}` is out of range "
                    f"(below 1E+{AMOUNT_DIGITS} with at most {AMOUNT_DIGITS} decimal places)"
                )
        return UserLimitEvent(envelope.sequence_number, envelope.created_at, payload)

    def key(self, event: UserLimitEvent) -> str:
        return event.payload.user_limit_id

    def partition(self, event: UserLimitEvent) -> str:
        return event.payload.user_id

    def position(self, event: UserLimitEvent) -> int:
        return event.sequence_number

    def state_position(self, state: UserLimit) -> int:
        return state.last_sequence_number

    def creates(self, event: UserLimitEvent) -> bool:
        return projection.creates(event)

    def apply(self, state: UserLimit | None, event: UserLimitEvent) -> UserLimit:
        return projection.apply(state, event)
