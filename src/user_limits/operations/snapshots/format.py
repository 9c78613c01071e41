"""The snapshot format: one limit per line, exactly the exported fields plus ``sequenceNumber``.

Every field is required (``activeUntil`` and ``nextResetTime`` may be null) and no other is
allowed. Amounts are decimal text as ``str(Decimal)`` writes it (``100.00``, ``-0``, ``1E+5``),
within the range the stream keeps; ids, types and integers are checked as the stream checks them.
A file is JSON Lines or one JSON array of the same objects. Every problem names its line and field.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from decimal import Context, Decimal, Inexact, InvalidOperation
from typing import IO, Any, get_type_hints

import msgspec

from user_limits.domain.events import (
    AMOUNT_DIGITS,
    LIMIT_PERIODS,
    LIMIT_STATUSES,
    LIMIT_TYPES,
    MAX_ID_LENGTH,
    Id,
    Int64,
    LimitPeriod,
    LimitStatus,
    LimitType,
)
from user_limits.domain.model import EXPORT_FIELDS, UserLimit, export_dict
from user_limits.errors import UserError
from user_limits.inputs import MAX_DOCUMENT_BYTES, MAX_LINE_BYTES, MIB

FIELDS: tuple[str, ...] = (*EXPORT_FIELDS, "sequenceNumber")
_encode = msgspec.json.Encoder().encode


class SnapshotFormatError(UserError):
    """A snapshot file that is not in the format; the message names the line and the field."""


class _Line(msgspec.Struct, frozen=True, gc=False, rename="camel", forbid_unknown_fields=True):
    # No defaults: a missing field is refused, even one that may be null.
    user_limit_id: Id
    user_id: Id
    brand_id: str
    type: LimitType
    period: LimitPeriod
    status: LimitStatus
    value: str
    progress: str
    currency_code: str
    active_from: Int64
    active_until: Int64 | None
    next_reset_time: Int64 | None
    created_at: Int64
    sequence_number: Int64


_decode_line = msgspec.json.Decoder(_Line).decode
_HINTS = get_type_hints(_Line, include_extras=True)
_TYPES: dict[str, Any] = {name: _HINTS[attr] for name, attr in zip(FIELDS, _Line.__struct_fields__, strict=True)}
_INTEGER = "an integer from 0 to 2^63-1"
_EXPECTED: dict[str, str] = {
    "userLimitId": f"a string of at most {MAX_ID_LENGTH} characters",
    "userId": f"a string of at most {MAX_ID_LENGTH} characters",
    "brandId": "a string",
    "type": "one of " + ", ".join(LIMIT_TYPES),
    "period": "one of " + ", ".join(LIMIT_PERIODS),
    "status": "one of " + ", ".join(LIMIT_STATUSES),
    "value": "a decimal string",
    "progress": "a decimal string",
    "currencyCode": "a string",
    "activeFrom": _INTEGER,
    "activeUntil": f"{_INTEGER}, or null",
    "nextResetTime": f"{_INTEGER}, or null",
    "createdAt": _INTEGER,
    "sequenceNumber": _INTEGER,
}
# Decimal text as str(Decimal) writes it: no sign but "-", no spaces, underscores or other digits.
_DECIMAL_TEXT = re.compile(r"-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")
_RANGE = Context(prec=2 * AMOUNT_DIGITS + 4, traps=[Inexact, InvalidOperation])
_QUANTUM = Decimal(f"1E-{AMOUNT_DIGITS}")
# A value is an amount of the stream; a progress is the sum of two: one digit more before the point.
_BOUNDS = {"value": Decimal(f"1E{AMOUNT_DIGITS}"), "progress": Decimal(f"1E{AMOUNT_DIGITS + 1}")}


class Problem(Exception):
    """What is wrong with one line: the field (None for the line as a whole) and why."""

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message

    def at(self, name: str, line: int) -> SnapshotFormatError:
        where = f"{name}: line {line}" + ("" if self.field is None else f": field {self.field}")
        return SnapshotFormatError(f"{where}: {self.message}")


def snapshot_line(limit: UserLimit) -> bytes:
    """The snapshot line of ``limit`` (no line break)."""
    return _encode({**export_dict(limit), "sequenceNumber": limit.last_sequence_number})


def parse_line(data: bytes) -> UserLimit:
    """The limit a snapshot line holds; raises Problem."""
    try:
        line = _decode_line(data)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        raise _diagnosed(data) from None
    value, progress = _amount("value", line.value), _amount("progress", line.progress)
    for name in ("userLimitId", "userId", "brandId", "currencyCode"):
        # No store's text column can hold a NUL; the stream refuses it too.
        if "\x00" in getattr(line, _attr(name)):
            raise Problem(name, "contains the NUL character (\\u0000)")
    return UserLimit(
        user_limit_id=line.user_limit_id,
        user_id=line.user_id,
        brand_id=line.brand_id,
        type=line.type,
        period=line.period,
        status=line.status,
        value=value,
        progress=progress,
        currency_code=line.currency_code,
        active_from=line.active_from,
        active_until=line.active_until,
        next_reset_time=line.next_reset_time,
        created_at=line.created_at,
        last_sequence_number=line.sequence_number,
        # A snapshot does not say when the limit last changed: its creation is the latest time known.
        updated_at=line.created_at,
    )


def _attr(name: str) -> str:
    return _Line.__struct_fields__[FIELDS.index(name)]


def _amount(name: str, text: str) -> Decimal:
    if _DECIMAL_TEXT.fullmatch(text) is None:
        raise Problem(name, f"{_quoted(text)} is not decimal text (such as 100.00, -0 or 1E+5)")
    amount = Decimal(text)
    bound = _BOUNDS[name]
    if not (-bound < amount < bound and _places_fit(amount)):
        limits = f"below {bound} with at most {AMOUNT_DIGITS} decimal places"
        raise Problem(name, f"{_quoted(text)} is out of range ({limits})")
    return amount


def _places_fit(amount: Decimal) -> bool:
    """No non-zero digit past AMOUNT_DIGITS decimal places."""
    try:
        _RANGE.quantize(amount, _QUANTUM)
    except (Inexact, InvalidOperation):
        return False
    return True


def _diagnosed(data: bytes) -> Problem:
    """Why a line the fast decoder refused is not a snapshot line, found field by field (the
    decoder's own message is a library's text, not something to rely on)."""
    try:
        value = msgspec.json.decode(data)
    except Exception as error:  # any refusal: bad UTF-8, bad JSON, nesting too deep
        return Problem(None, f"malformed JSON: {error}")
    if not isinstance(value, dict):
        return Problem(None, "not a JSON object")
    for name in FIELDS:
        if name not in value:
            return Problem(name, "missing")
    for name in value:
        if name not in _TYPES:
            return Problem(str(name), "not a field of the snapshot format (" + ", ".join(FIELDS) + ")")
    for name, kind in _TYPES.items():
        try:
            msgspec.convert(value[name], kind, strict=True)
        except msgspec.ValidationError:
            return Problem(name, f"expected {_EXPECTED[name]}, got {_quoted(value[name])}")
    return Problem(None, "not a snapshot line")  # the fast decoder and the checks disagree: still refused


def _quoted(value: object) -> str:
    text = _encode(value).decode()
    return text if len(text) <= 80 else text[:77] + "..."


class SnapshotFile:
    """A snapshot file, read from the front each time :meth:`lines` is called. ``consumed`` counts
    the bytes read by the current reading."""

    def __init__(self, opener: Callable[[], IO[bytes]], name: str, size: int | None) -> None:
        self.opener = opener
        self.name = name
        self.size = size
        self.consumed = 0

    def lines(self) -> Iterator[tuple[int, bytes]]:
        """Each non-blank line (or array item) with its line number; raises SnapshotFormatError."""
        self.consumed = 0
        with self.opener() as stream:
            first = self._first_byte(stream)
            if first == b"[":
                yield from self._array(stream)
            else:
                yield from self._json_lines(stream)

    def _first_byte(self, stream: IO[bytes]) -> bytes:
        head = stream.read(4096)
        stripped = head.lstrip()
        stream.seek(0)
        return stripped[:1]

    def _json_lines(self, stream: IO[bytes]) -> Iterator[tuple[int, bytes]]:
        number = 0
        while True:
            line = stream.readline(MAX_LINE_BYTES + 1)
            if not line:
                return
            self.consumed += len(line)
            if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
                raise SnapshotFormatError(f"{self.name}: line {number + 1} is longer than {MAX_LINE_BYTES // MIB} MiB")
            # A lone CR ends a line too, as in the stream files replay reads.
            for part in line.splitlines() if b"\r" in line else (line,):
                number += 1
                stripped = part.strip()
                if stripped:
                    yield number, stripped

    def _array(self, stream: IO[bytes]) -> Iterator[tuple[int, bytes]]:
        if self.size is not None and self.size > MAX_DOCUMENT_BYTES:
            raise self._too_big()
        data = stream.read(MAX_DOCUMENT_BYTES + 1)
        self.consumed = len(data)
        if len(data) > MAX_DOCUMENT_BYTES:
            raise self._too_big()
        try:
            items = msgspec.json.decode(data, type=list[msgspec.Raw])
        except Exception as error:  # any refusal, RecursionError too
            raise SnapshotFormatError(f"{self.name}: malformed JSON array: {error}") from None
        # Items come in order, separated by whitespace and commas: each one's first occurrence after
        # the previous one is itself, which gives its line number.
        offset, line = 0, 1
        for item in items:
            text = bytes(item)
            found = data.find(text, offset)
            line += data.count(b"\n", offset, found)
            offset = found
            yield line, text

    def _too_big(self) -> SnapshotFormatError:
        return SnapshotFormatError(
            f"{self.name}: a JSON array is read whole, at most {MAX_DOCUMENT_BYTES // MIB} MiB; "
            "write a larger snapshot as JSON Lines (read as a stream, of any size)"
        )
