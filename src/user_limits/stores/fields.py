"""UserLimit's fields as the stores keep them, derived once from the msgspec struct.

Every store writes a limit field by field (a SQL column, a DynamoDB attribute) and reads it back
the same way; this is the one list they follow, in the struct's order, so a field added to the
model is added to every store's mapping (the SQL schemas still need their migration).
"""

from __future__ import annotations

import types
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal, get_args, get_origin

import msgspec

from user_limits.domain.model import UserLimit


@dataclass(frozen=True, slots=True)
class Field:
    name: str  # the struct's name, and the SQL column's
    json_name: str  # the name in UserLimit's JSON (camelCase), and the DynamoDB attribute's
    kind: Literal["text", "integer"]
    decimal: bool  # text holding the exact text of a Decimal ('9800.00', '1E+5')
    nullable: bool


def _field(info: msgspec.structs.FieldInfo) -> Field:
    kind = info.type
    nullable = get_origin(kind) is types.UnionType and type(None) in get_args(kind)
    if nullable:
        (kind,) = (arg for arg in get_args(kind) if arg is not type(None))
    if kind is int:
        return Field(info.name, info.encode_name, "integer", False, nullable)
    if kind is str or kind is Decimal or get_origin(kind) is Literal:
        return Field(info.name, info.encode_name, "text", kind is Decimal, nullable)
    raise TypeError(f"UserLimit.{info.name}: no stored form for {kind!r}")


LIMIT_FIELDS: tuple[Field, ...] = tuple(_field(info) for info in msgspec.structs.fields(UserLimit))
