"""The relational mapping of the read model, shared by the SQL stores: one column per field.

The columns of ``user_limits`` are UserLimit's msgspec fields, in their order and under their
names, so adding a field to the model is one ``ALTER TABLE`` in a migration and nothing here.
Decimals are kept as the exact text of the Decimal (``'9800.00'``, ``'1E+5'``): no SQL numeric
type gives back the text the stream sent. Dead letters are a row of their ``id`` and fields,
their texts storable and their reason bounded (:mod:`user_limits.stores.text`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any, get_args, get_type_hints

from user_limits.domain.model import UserLimit
from user_limits.stores.fields import LIMIT_FIELDS, Field
from user_limits.stores.text import bounded_reason, storable, storable_or_none, unstored_or_none
from user_limits.stream.records import DeadLetter

# The columns of user_limits: UserLimit's fields, under the same names.
LIMIT_COLUMNS = LIMIT_FIELDS
LIMIT_NAMES = ", ".join(column.name for column in LIMIT_COLUMNS)


# The conversions and the test the batch makes for every limit, written out from the fields once,
# at import: a tuple display and a call with positional arguments are about twice as fast as a
# generic loop over the fields.


def _compiled(name: str, body: str, doc: str, arguments: str = "value") -> Any:
    namespace: dict[str, Any] = {"Decimal": Decimal, "UserLimit": UserLimit}
    exec(f"def {name}({arguments}):\n    return {body}", namespace)
    function = namespace[name]
    function.__doc__ = doc
    return function


def _column_values(fields: Sequence[Field]) -> str:
    """The expressions of those fields' column values, each followed by a comma: Decimals as text."""
    return "".join(
        (f"None if value.{f.name} is None else str(value.{f.name}), " if f.nullable else f"str(value.{f.name}), ")
        if f.decimal
        else f"value.{f.name}, "
        for f in fields
    )


limit_row: Callable[[UserLimit], tuple[Any, ...]] = _compiled(
    "limit_row", f"({_column_values(LIMIT_FIELDS)})", "The limit's column values, Decimals as their text."
)
row_limit: Callable[[Sequence[Any]], UserLimit] = _compiled(
    "row_limit",
    "UserLimit("
    + ", ".join(
        (f"None if value[{i}] is None else Decimal(value[{i}])" if f.nullable else f"Decimal(value[{i}])")
        if f.decimal
        else f"value[{i}]"
        for i, f in enumerate(LIMIT_FIELDS)
    )
    + ")",
    "The limit of a row of the limit columns, in their order.",
)


# The columns an event moves on a limit that exists, in the usual case: a progress change or a
# reset that did not drift. A limit whose other fields are those it was read with is written by an
# UPDATE of these columns alone, which touches no index: a full upsert also sets the indexed
# user_id and drift columns, whose index entries SQLite then rewrites, at about three times the cost.
MOVING_COLUMNS: tuple[str, ...] = ("progress", "next_reset_time", "last_sequence_number", "updated_at")
MOVING_FIELDS = tuple(f for f in LIMIT_FIELDS if f.name in MOVING_COLUMNS)
assert len(MOVING_FIELDS) == len(MOVING_COLUMNS), "a moving column that is no field of UserLimit"

moved_only: Callable[[UserLimit, UserLimit], bool] = _compiled(
    "moved_only",
    # Identity, not equality: the projection and the drift check change a limit with msgspec's
    # replace, which keeps the other fields' objects, and an identity test is all but free. A limit
    # built anew (created again) counts as changed even where it is equal: a full upsert, as before.
    " and ".join(f"stored.{f.name} is after.{f.name}" for f in LIMIT_FIELDS if f.name not in MOVING_COLUMNS),
    "Whether ``after`` differs from ``stored`` in MOVING_COLUMNS at most (conservative: see above).",
    arguments="stored, after",
)
moving_row: Callable[[UserLimit], tuple[Any, ...]] = _compiled(
    "moving_row",
    f"({_column_values(MOVING_FIELDS)}value.user_limit_id)",
    "The MOVING_COLUMNS values of the limit, Decimals as their text, then its key.",
)


def split_moved(
    limits: Mapping[str, UserLimit], stored: Mapping[str, UserLimit]
) -> tuple[list[UserLimit], list[UserLimit]]:
    """The limits a batch writes, as (to upsert whole, to update in MOVING_COLUMNS only), against
    the limits stored when the batch read them."""
    whole: list[UserLimit] = []
    moved: list[UserLimit] = []
    for key, limit in limits.items():
        before = stored.get(key)
        (moved if before is not None and moved_only(before, limit) else whole).append(limit)
    return whole, moved


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
