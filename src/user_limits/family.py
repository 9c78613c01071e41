"""The user-limit event family: where the rules of ``domain/`` are plugged into the engine of ``stream/``.

:class:`UserLimitFamily` is the :class:`~user_limits.stream.engine.EventFamily` the engine runs: it
decodes the upstream envelope into the domain's events and names each event's key, partition and
position, and how it creates and changes a limit (``domain.projection``), checked against the
producer's own figures (``domain.drift``).

Two-stage decoding with msgspec: the envelope first, with the payload kept raw, so that event
types we ignore cost no payload decoding; then the payload of a handled type into its struct.

Hot module: every record is decoded here; the checks of rule 1 are written for speed
(``bench/handler_bench.py`` and ``bench/decoder_bench.py`` measure them).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Context, Decimal, Inexact, InvalidOperation
from operator import attrgetter
from typing import Any

import msgspec
from msgspec.structs import astuple

from user_limits.domain import drift, projection
from user_limits.domain.events import (
    AMOUNT_DIGITS,
    AMOUNT_GRAMMAR,
    DECIMAL_FIELDS,
    PAYLOAD_TYPES,
    STORED_DECIMAL_FIELDS,
    Int64,
    Payload,
    UserLimitEvent,
)
from user_limits.domain.model import UserLimit
from user_limits.stream.engine import InvalidRecord


class _Object(msgspec.Struct, gc=False):
    """Any JSON object, its members skipped: the decoder itself refuses a value of another kind."""


class Envelope(msgspec.Struct, gc=False, rename="camel"):
    aggregate_id: str
    context: _Object
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
# An int: `in` then runs memchr, where a one-byte bytes needle takes CPython's slower substring search.
_BACKSLASH = ord("\\")
_PAYLOAD_NOT_OBJECT = "invalid envelope: Expected `object` - at `$.payload`"
# RecursionError: JSON nested deeper than msgspec's stack allows, even in a field it skips. It must
# become a dead letter like any other bad record, or the batch fails and is retried for ever.
_DECODE_ERRORS = (msgspec.DecodeError, msgspec.ValidationError, RecursionError)


# Rule 1's grammar, on each amount's JSON text: Decimal() also reads " 1", "1_000", "+5", ".5",
# "5.", fullwidth digits, NaN. A second decoding of the payload keeps the amounts' texts raw
# (msgspec skips the other fields without building them).
_amount_texts: dict[type[Payload], msgspec.json.Decoder[Any]] = {
    kind: msgspec.json.Decoder(
        msgspec.defstruct(f"{kind.__name__}Texts", [(name, msgspec.Raw) for name in names], rename="camel", gc=False)
    )
    for kind, names in DECIMAL_FIELDS.items()
}
_join = b",".join
# The shape of amounts' JSON texts: a digit becomes 0 and a quote a separator; the point and the
# minus stay; anything else (an exponent, a plus, a space, "_", a letter, a backslash, UTF-8) is "!".
_SHAPE = bytes(
    ord("0") if b in b"0123456789" else ord(",") if b in b'",' else b if b in b".-" else ord("!") for b in range(256)
)
# A positional amount (no exponent) whose JSON text, quoted or a number, is at most this many bytes
# has at most AMOUNT_DIGITS digits either side of the point: in range without a Decimal check.
_SHORT = AMOUNT_DIGITS
# The amounts the read model stores, by their place among DECIMAL_FIELDS.
_stored: dict[type[Payload], tuple[tuple[int, str], ...]] = {
    kind: tuple((names.index(name), name) for name in STORED_DECIMAL_FIELDS[kind])
    for kind, names in DECIMAL_FIELDS.items()
}
# Reasons name fields as the upstream writes them.
_wire_names = {
    kind: {field.name: field.encode_name for field in msgspec.structs.fields(kind)} for kind in DECIMAL_FIELDS
}
_text_amount = re.compile(AMOUNT_GRAMMAR).fullmatch


def _positional(texts: bytes) -> bool:
    """Whether amounts' JSON texts, joined by commas, are all -?digits[.digits]: the usual case, told
    with a few byte operations (one regex costs more than decoding the payload). Sound for texts
    Decimal() took, which hold a point once at most and a minus only first: their shape is digits
    once each point between digits and each leading minus are gone. A negative JSON number first,
    an exponent, anything else: False, and left to the exact check."""
    shape = texts.translate(_SHAPE).replace(b"0.0", b"00").replace(b",-", b",")
    return shape.replace(b",", b"").isdigit()


def _fits_grammar(text: msgspec.Raw) -> bool:
    """The exact check of one amount's JSON text. A JSON number always fits; a string's text is what
    it decodes to ("\\u0031" is "1")."""
    raw = bytes(text)
    return raw[:1] != b'"' or _text_amount(msgspec.json.decode(raw, type=str)) is not None


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


def _decode_envelope(data: bytes) -> Envelope:
    """The envelope, its payload raw and not yet checked to be an object."""
    # msgspec skips unknown fields without checking their UTF-8: the whole record is checked. ASCII,
    # the usual case, is valid UTF-8: isascii() tells it without building a str.
    if not data.isascii():
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as error:
            raise InvalidRecord(f"not UTF-8: {error.reason} at byte {error.start}") from None
    try:
        return _envelope.decode(data)
    except _DECODE_ERRORS as error:
        raise InvalidRecord(f"invalid envelope: {error}") from None


def decode_envelope(data: bytes) -> Envelope:
    """The envelope alone, its payload checked to be an object and kept raw."""
    envelope = _decode_envelope(data)
    if memoryview(envelope.payload)[0] != _OPEN_BRACE:
        raise InvalidRecord(_PAYLOAD_NOT_OBJECT)
    return envelope


# Per handled type: its payload's decoder and the decoder of its amounts' texts, in one lookup.
_handled: dict[str, tuple[Callable[[bytes], Payload], Callable[[bytes], Any]]] = {
    name: (_payloads[name].decode, _amount_texts[kind].decode) for name, kind in PAYLOAD_TYPES.items()
}


def _check_amounts(type_: str, payload: Payload, texts: tuple[msgspec.Raw, ...], positional: bool) -> None:
    """Rule 1 on the amounts whose texts are not all short and positional: each text's grammar,
    then the range of the amounts the read model stores."""
    kind = type(payload)
    if not positional:
        for name, text in zip(DECIMAL_FIELDS[kind], texts, strict=True):
            if not _fits_grammar(text):
                raise InvalidRecord(
                    f"invalid {type_} payload: `{_wire_names[kind][name]}` is not a decimal of the form "
                    "-?digits[.digits][(e|E)[+|-]digits] (ASCII digits)"
                )
    for index, name in _stored[kind]:
        # A short positional text needs no check: at most AMOUNT_DIGITS digits either side.
        if positional and len(texts[index]) <= _SHORT:
            continue
        if not _in_range(getattr(payload, name)):
            raise InvalidRecord(
                f"invalid {type_} payload: `{_wire_names[kind][name]}` is out of range "
                f"(below 1E+{AMOUNT_DIGITS} with at most {AMOUNT_DIGITS} decimal places)"
            )


class UserLimitFamily:
    """The user-limit events as an :class:`~user_limits.stream.engine.EventFamily`."""

    def decode(self, data: bytes) -> UserLimitEvent | None:
        # As decode_envelope, except that a handled payload's decoder checks it is an object.
        envelope = _decode_envelope(data)
        raw = envelope.payload
        handled = _handled.get(envelope.type)
        if handled is None:
            if memoryview(raw)[0] != _OPEN_BRACE:
                raise InvalidRecord(_PAYLOAD_NOT_OBJECT)
            return None
        decode_payload, decode_texts = handled
        try:
            payload = decode_payload(raw)
        except _DECODE_ERRORS as error:
            if memoryview(raw)[0] != _OPEN_BRACE:
                raise InvalidRecord(_PAYLOAD_NOT_OBJECT) from None
            raise InvalidRecord(f"invalid {envelope.type} payload: {error}") from None
        # Valid JSON, but no store's text column can hold a NUL: it would fail every retry. (Only
        # an escape writes one: a record without a backslash is passed by one memchr.)
        if (
            _BACKSLASH in data
            and _ESCAPED_NUL in data
            and any("\x00" in value for value in astuple(payload) if isinstance(value, str))
        ):
            raise InvalidRecord(f"invalid {envelope.type} payload: a string contains the NUL character (\\u0000)")
        texts = astuple(decode_texts(raw))
        joined = _join(texts)
        # The usual case: every text positional and, a text being no longer than all of them
        # joined, each short enough to be in range without a check.
        positional = _positional(joined)
        if not (positional and len(joined) <= _SHORT):
            _check_amounts(envelope.type, payload, texts, positional)
        return UserLimitEvent(envelope.sequence_number, envelope.created_at, payload)

    # Called for every event, some more than once: attribute getters run in C, a method does not.
    key: Callable[[UserLimitEvent], str] = attrgetter("payload.user_limit_id")
    partition: Callable[[UserLimitEvent], str] = attrgetter("payload.user_id")
    position: Callable[[UserLimitEvent], int] = attrgetter("sequence_number")
    state_position: Callable[[UserLimit], int] = attrgetter("last_sequence_number")

    # The domain's functions themselves, not methods that call them: one Python call less an event.
    creates: Callable[[UserLimitEvent], bool] = staticmethod(projection.creates)
    drifted: Callable[[UserLimit], bool] = staticmethod(drift.drifted)

    def apply(self, state: UserLimit | None, event: UserLimitEvent) -> UserLimit:
        # The rules, then the check against the producer's figures (reported, never corrected).
        return drift.observe(state, event, projection.apply(state, event))
