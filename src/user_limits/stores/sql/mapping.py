"""The relational mapping of the read model, shared by the SQL stores: one column per field.

The columns of ``user_limits`` are UserLimit's msgspec fields, in their order and under their
names, so adding a field to the model is one ``ALTER TABLE`` in a migration and nothing here.
Decimals are kept as the exact text of the Decimal (``'9800.00'``, ``'1E+5'``): no SQL numeric
type gives back the text the stream sent. Dead letters are a row of their ``id`` and fields,
their texts storable and their reason bounded (:mod:`user_limits.stores.text`).
"""

from __future__ import annotations

import types
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal, get_args, get_origin, get_type_hints

import msgspec

from user_limits.domain.model import UserLimit
from user_limits.stores.text import bounded_reason, storable, storable_or_none, unstored_or_none
from user_limits.stream.records import DeadLetter


@dataclass(frozen=True, slots=True)
class Column:
    name: str  # the field's name, which is the column's
    json_name: str  # the field's name in UserLimit's JSON (camelCase)
    kind: Literal["text", "integer"]
    nullable: bool


def _column(field: msgspec.structs.FieldInfo) -> Column:
    kind: Any = field.type
    nullable = get_origin(kind) is types.UnionType and type(None) in get_args(kind)
    if nullable:
        (kind,) = (arg for arg in get_args(kind) if arg is not type(None))
    if kind is int:
        return Column(field.name, field.encode_name, "integer", nullable)
    if kind is str or kind is Decimal or get_origin(kind) is Literal:
        return Column(field.name, field.encode_name, "text", nullable)
    raise TypeError(f"UserLimit.{field.name}: no SQL column for {kind!r}")


LIMIT_COLUMNS: tuple[Column, ...] = tuple(_column(field) for field in msgspec.structs.fields(UserLimit))
LIMIT_NAMES = ", ".join(column.name for column in LIMIT_COLUMNS)
_DECIMALS = tuple(index for index, field in enumerate(msgspec.structs.fields(UserLimit)) if field.type is Decimal)


def limit_row(limit: UserLimit) -> list[Any]:
    """The limit's column values, Decimals as their text."""
    row = list(msgspec.structs.astuple(limit))
    for index in _DECIMALS:
        row[index] = str(row[index])
    return row


def row_limit(row: Sequence[Any]) -> UserLimit:
    values = list(row)
    for index in _DECIMALS:
        values[index] = Decimal(values[index])
    return UserLimit(*values)


# -- dead letters: ``id``, then DeadLetter's fields in order

DEAD_LETTER_COLUMNS: tuple[str, ...] = ("id", *DeadLetter._fields)
DEAD_LETTER_NAMES = ", ".join(DEAD_LETTER_COLUMNS)
# Read back without the id (derived from the fields).
DEAD_LETTER_READ = ", ".join(DeadLetter._fields)
# The text fields (the reason and the coordinates): stored so that any str comes back exactly.
_TEXTS = tuple(
    index for index, hint in enumerate(get_type_hints(DeadLetter).values()) if hint is str or str in get_args(hint)
)


def dead_letter_row(letter: DeadLetter) -> tuple[object, ...]:
    """``id`` and the fields of a dead letter as SQL stores keep them (text storable, reason bounded)."""
    row: list[Any] = list(letter._replace(reason=bounded_reason(letter.reason)))
    for index in _TEXTS:
        row[index] = storable_or_none(row[index])
    return (storable(letter.id), *row)


def row_dead_letter(row: Sequence[Any]) -> DeadLetter:
    """The dead letter of a row of :data:`DEAD_LETTER_READ` (its fields, without the id)."""
    values = list(row)
    for index in _TEXTS:
        values[index] = unstored_or_none(values[index])
    values[1] = bytes(values[1])
    return DeadLetter(*values)
