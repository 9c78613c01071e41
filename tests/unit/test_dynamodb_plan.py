"""The DynamoDB store's plan of writes, without a table: an outcome as units, units as transactions."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from user_limits.domain.model import UserLimit
from user_limits.stores.dynamodb import plan
from user_limits.stores.dynamodb.plan import NEW_ITEM, Placement, Stored, Unit, Writes, fit, transactions
from user_limits.stream.records import DeadLetter, Outcome, ParkedEvent

TABLE = "limits"


def limit(key: str = "L1", user: str = "U1", sequence: int = 2) -> UserLimit:
    return UserLimit(
        key, user, "B1", "DEPOSIT", "DAY", "ACTIVE", Decimal("9800.00"), Decimal("1.5"), "SEK",
        1_700_000_000_000, None, None, 1_700_000_000_000, sequence, 1_700_000_000_000 + sequence,
    )  # fmt: skip


def outcome_of(*limits: tuple[UserLimit, int | None]) -> Outcome[UserLimit]:
    """The outcome of applying one event to each limit; ``expected``: its stored position (None: new)."""
    outcome: Outcome[UserLimit] = Outcome()
    for index, (state, expected) in enumerate(limits):
        outcome.states[state.user_limit_id] = state
        outcome.touched[state.user_limit_id] = (expected, index)
        outcome.applied_by_key[state.user_limit_id] = 1
    outcome.counts.applied = len(limits)
    return outcome


def units(outcome: Outcome[UserLimit], stored: dict[str, Stored] | None = None) -> list[Unit]:
    stored = stored or {}
    keys = {key: state.user_id for key, state in outcome.states.items()}
    keys.update({event.key: "U1" for _, event in outcome.parked_added})
    return Writes(TABLE).units(keys, outcome, None, stored, fit(outcome, stored), stored_at=1)


def main_actions(unit: Unit) -> list[tuple[str, Any]]:
    return [next(iter(action.items())) for action in unit.steps[unit.main].actions]


def test_a_new_limit_is_put_with_its_owner_only_if_neither_exists() -> None:
    (unit,) = units(outcome_of((limit(), None)))
    (kind, put), (owner_kind, owner) = main_actions(unit)
    assert (kind, owner_kind) == ("Put", "Put")
    assert put["Item"]["PK"] == {"S": "USER#U1"} and put["Item"]["SK"] == {"S": "LIMIT#L1"}
    assert put["Item"]["value"] == {"S": "9800.00"}  # a string: a number would drop the zeros
    assert put["ConditionExpression"] == owner["ConditionExpression"] == NEW_ITEM
    assert owner["Item"]["userId"] == {"S": "U1"}
    assert unit.steps[unit.main].applied == 1


def test_a_stored_limit_is_put_only_if_still_at_the_position_read() -> None:
    (unit,) = units(outcome_of((limit(sequence=5), 4)), {"L1": Stored(home="U1")})
    ((kind, put),) = main_actions(unit)
    assert kind == "Put"
    assert put["ConditionExpression"] == "lastSequenceNumber = :expected"
    assert put["ExpressionAttributeValues"] == {":expected": {"N": "4"}}


def test_a_limit_created_again_for_another_user_moves_to_that_users_partition() -> None:
    (unit,) = units(outcome_of((limit(user="U2", sequence=5), 4)), {"L1": Stored(home="U1")})
    kinds = [kind for kind, _ in main_actions(unit)]
    assert kinds == ["Delete", "Put", "Put"]
    delete = main_actions(unit)[0][1]
    assert delete["Key"]["PK"] == {"S": "USER#U1"} and delete["ConditionExpression"] == "lastSequenceNumber = :expected"


def test_a_record_dead_lettered_twice_in_a_batch_is_one_put_counted_twice() -> None:
    outcome: Outcome[UserLimit] = Outcome()
    letter = DeadLetter("bad", b"x", "1", 0, "pk", 1, "arn", "shard")
    outcome.dead_letters = [(0, letter), (3, letter)]
    (unit,) = units(outcome)
    ((kind, put),) = main_actions(unit)
    assert kind == "Put" and put["ConditionExpression"] == NEW_ITEM
    assert unit.steps[unit.main].dead_letters == 2


def test_units_come_in_record_order() -> None:
    outcome = outcome_of((limit("L1"), None), (limit("L2"), None), (limit("L3"), None))
    outcome.touched["L1"] = (None, 2)
    outcome.touched["L3"] = (None, 0)
    assert [unit.key for unit in units(outcome)] == ["L3", "L2", "L1"]


def test_transactions_keep_within_the_action_limit_and_never_touch_an_item_twice() -> None:
    outcome = outcome_of(*((limit(f"L{n}"), None) for n in range(7)))  # two actions each
    planned = units(outcome)
    groups = transactions(planned, actions=5, budget=10_000_000)
    assert [len([a for _, step in group for a in step.actions]) for group in groups] == [4, 4, 4, 2]
    assert [unit for group in groups for unit, _ in group] == planned  # in order, each once
    for group in groups:
        touched = [item for _, step in group for item in step.items]
        assert len(touched) == len(set(touched))


def test_a_step_that_touches_an_item_of_the_transaction_starts_the_next() -> None:
    first = units(outcome_of((limit("L1"), None)))
    again = units(outcome_of((limit("L1", sequence=3), 2)), {"L1": Stored(home="U1")})
    groups = transactions([*first, *again], actions=100, budget=10_000_000)
    assert len(groups) == 2


def test_transactions_keep_within_the_byte_budget() -> None:
    planned = units(outcome_of(*((limit(f"L{n}"), None) for n in range(3))))
    size = planned[0].steps[0].size
    assert len(transactions(planned, actions=100, budget=2 * size)) == 2


def test_an_event_for_a_full_parked_item_is_dead_lettered_and_the_counts_say_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(plan, "PARKED_INLINE", 100)
    monkeypatch.setattr(plan, "PARKED_ITEM", 300)
    outcome: Outcome[UserLimit] = Outcome()
    events = [ParkedEvent("L9", position, b"e" * 20) for position in range(1, 6)]
    outcome.parked_added = [(index, event) for index, event in enumerate(events)]
    outcome.counts.parked = len(events)
    placement: Placement = fit(outcome, {})
    kept = [event for _, event in outcome.parked_added]
    assert kept and len(kept) < len(events)
    assert [index for _, index, _ in placement.refused] == [index for index, _ in outcome.dead_letters]
    assert outcome.counts.parked == len(kept) and outcome.counts.dead_lettered == len(events) - len(kept)
    assert all("is full" in letter.reason for _, letter in outcome.dead_letters)


def test_parked_events_are_one_conditional_write_of_the_parked_item() -> None:
    outcome: Outcome[UserLimit] = Outcome()
    outcome.parked_added = [(0, ParkedEvent("L9", 1, b"{}")), (1, ParkedEvent("L9", 2, b"[]"))]
    outcome.touched["L9"] = (None, 0)
    (unit,) = units(outcome)
    (check, parked) = main_actions(unit)
    assert check[0] == "ConditionCheck" and check[1]["ConditionExpression"] == NEW_ITEM  # the limit does not exist
    assert parked[0] == "Update" and parked[1]["ConditionExpression"] == NEW_ITEM  # nor its parked item
    assert unit.steps[unit.main].parked == 2
