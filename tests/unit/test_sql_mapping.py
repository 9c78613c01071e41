"""The SQL stores' choice between a whole upsert and an update of the moving columns, alone.

A limit goes by the narrow update only when every column outside MOVING_COLUMNS is the very object
it was read with: the stored row then keeps them, so both writes give the same row. Everything else
(a new limit, a limit created again, a drift, a limit that is only equal) is upserted whole.
"""

from __future__ import annotations

from typing import Any

from msgspec.structs import replace

from tests.streams import created, encode, progress, reset
from user_limits.domain.events import UserLimitEvent
from user_limits.domain.model import UserLimit
from user_limits.family import UserLimitFamily
from user_limits.stores.sql.mapping import (
    LIMIT_FIELDS,
    MOVING_COLUMNS,
    limit_row,
    moved_only,
    moving_row,
    row_limit,
    split_moved,
)

family = UserLimitFamily()


def event(envelope: dict[str, Any]) -> UserLimitEvent:
    decoded = family.decode(encode(envelope))
    assert decoded is not None
    return decoded


def stored_limit() -> UserLimit:
    """A limit as a store reads it back: built from its row, as SQLite and PostgreSQL do."""
    return row_limit(limit_row(family.apply(None, event(created("L1", 1, value="100")))))


def test_a_progress_change_without_drift_moves_only_the_moving_columns() -> None:
    before = stored_limit()
    after = family.apply(before, event(progress("L1", 2, "30", "0", remainingAmount="70")))
    assert moved_only(before, after)
    assert split_moved({"L1": after}, {"L1": before}) == ([], [after])


def test_a_reset_without_drift_moves_only_the_moving_columns() -> None:
    before = stored_limit()
    after = family.apply(before, event(reset("L1", 2, 1_700_100_000_000, unusedAmount="100", resetAmount="0")))
    assert moved_only(before, after)


def test_a_drifted_event_is_written_whole() -> None:
    before = stored_limit()
    after = family.apply(before, event(progress("L1", 2, "30", "0", remainingAmount="999")))
    assert after.drift_sequence_number == 2
    assert not moved_only(before, after)
    assert split_moved({"L1": after}, {"L1": before}) == ([after], [])


def test_a_limit_created_again_is_written_whole_even_with_equal_fields() -> None:
    before = stored_limit()
    again = family.apply(before, event(created("L1", 2, value="100")))
    assert not moved_only(before, again)


def test_a_new_limit_is_written_whole() -> None:
    limit = stored_limit()
    assert split_moved({"L1": limit}, {}) == ([limit], [])


def test_an_equal_limit_that_is_not_the_same_objects_is_written_whole() -> None:
    # Identity is the test: conservative, a whole upsert is always right.
    before = stored_limit()
    after = replace(row_limit(limit_row(before)), last_sequence_number=5)
    assert not moved_only(before, after)


def test_each_field_outside_the_moving_columns_alone_makes_the_write_whole() -> None:
    before = stored_limit()
    for field in LIMIT_FIELDS:
        if field.name in MOVING_COLUMNS:
            continue
        value = getattr(before, field.name)
        changed = replace(before, **{field.name: "x" if isinstance(value, str) else 7})
        assert not moved_only(before, changed), field.name


def test_the_moving_row_holds_the_moving_columns_as_stored_then_the_key() -> None:
    limit = family.apply(stored_limit(), event(progress("L1", 2, "30.50", "0", remainingAmount="69.50")))
    whole = dict(zip([field.name for field in LIMIT_FIELDS], limit_row(limit), strict=True))
    assert moving_row(limit) == (*(whole[name] for name in MOVING_COLUMNS), "L1")
    assert whole["progress"] == "30.50"
