"""A redrive without a store: which dead letters, in which order, and the DynamoDB plan of its outcome."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from tests.streams import created, encode
from user_limits.domain.model import UserLimit
from user_limits.family import UserLimitFamily
from user_limits.operations.redrive import batches, in_stream_order, missing_ids, record_of, select
from user_limits.stores.dynamodb.layout import TEXTS_INLINE, dead_letter_key
from user_limits.stores.dynamodb.plan import Unit, Writes, fit
from user_limits.stream.engine import decode_batch
from user_limits.stream.records import DeadLetter, Outcome, RejectedRecord

ARN = "arn:aws:kinesis:eu-west-1:123456789012:stream/s"


def letter(sequence: str | None, shard: str = "shard-0", sub: int | None = None, reason: str = "bad") -> DeadLetter:
    data = f"{sequence}/{shard}/{sub}".encode()
    return DeadLetter(reason, data, sequence, sub, None, None, None if sequence is None else ARN, shard)


def test_dead_letters_with_coordinates_come_by_shard_then_sequence_numbers_as_integers() -> None:
    nines, power = str(10**56 - 1), str(10**56)  # as texts power sorts first; as floats they are equal
    kept = [
        letter(None),
        letter(power),
        letter(nines, sub=2),
        letter(nines, sub=None),
        letter("5", shard="shard-1"),
        letter(None, shard="other"),
    ]
    ordered = in_stream_order(kept)
    assert ordered == [kept[3], kept[2], kept[1], kept[4], kept[0], kept[5]]


def test_a_sequence_number_that_is_not_one_orders_as_no_coordinates() -> None:
    odd = [letter("١٢"), letter("1" * 200), letter("-3"), letter("7")]
    assert in_stream_order(odd) == [odd[3], odd[0], odd[1], odd[2]]


def test_selection_by_reason_is_a_substring_and_by_id_exact_and_both_must_match() -> None:
    kept = [letter("1", reason="invalid USER_LIMIT_CREATED payload: x"), letter("2", reason="parked too long")]
    assert select(kept, "USER_LIMIT_CREATED", ()) == [kept[0]]
    assert select(kept, "created", ()) == []  # case sensitive
    assert select(kept, None, [kept[1].id]) == [kept[1]]
    assert select(kept, "parked", [kept[0].id]) == []
    assert select(kept, None, ()) == kept
    assert missing_ids(kept, [kept[0].id, "nope", "nope"]) == ["nope"]


def test_a_record_the_transport_rejected_is_rejected_again_with_its_reason() -> None:
    reason = "KPL aggregate that cannot be de-aggregated: DecodeError: truncated"
    kept = DeadLetter(reason, b'{"aggregateId": 1}', "9", None, "p", 1, ARN, "s")
    again = record_of(kept)
    assert type(again) is RejectedRecord and again.reason == reason
    ((_, dead),) = decode_batch(UserLimitFamily(), [again]).dead_letters
    assert dead == kept
    assert type(record_of(kept._replace(reason="invalid envelope: x"))) is not RejectedRecord


# -- the DynamoDB plan of a redrive's outcome


def limit(key: str) -> UserLimit:
    return UserLimit(
        key, "U1", "B1", "DEPOSIT", "DAY", "ACTIVE", Decimal("1"), Decimal("0"), "SEK", 1, None, None, 1, 3, 1
    )


def plan(outcome: Outcome[UserLimit], pending: set[str] | None = None) -> list[Unit]:
    keys = {"L1": "U1", "L2": "U1"}
    return Writes("t").units(keys, outcome, pending, {}, fit(outcome, {}), stored_at=1)


def kinds(unit: Unit) -> list[tuple[str, Any]]:
    return [next(iter(action.items())) for step in unit.steps for action in step.actions]


def redrive_outcome() -> Outcome[UserLimit]:
    outcome: Outcome[UserLimit] = Outcome(size=3)
    outcome.states["L1"] = limit("L1")
    outcome.touched = {"L1": (None, 0), "L2": (3, 1)}
    outcome.applied_by_key["L1"] = 1
    # Record 0 applied to L1, record 1 skipped for L2 (no write), record 2 ignored.
    outcome.dead_letters_removed = [(0, "L1", "id-0"), (1, "L2", "id-1"), (2, None, "id-2")]
    return outcome


def test_a_redriven_dead_letter_is_deleted_in_the_step_that_commits_its_effect() -> None:
    units = plan(redrive_outcome())
    limit_unit = next(unit for unit in units if unit.key == "L1")
    main = limit_unit.steps[limit_unit.main].actions
    assert {"Delete": {"TableName": "t", "Key": dead_letter_key("id-0")}} in main
    assert any("Put" in action for action in main)
    # Without an effect to wait for, each in a unit of its own.
    alone = [kinds(unit) for unit in units if unit.key is None]
    assert alone == [
        [("Delete", {"TableName": "t", "Key": dead_letter_key("id-1")})],
        [("Delete", {"TableName": "t", "Key": dead_letter_key("id-2")})],
    ]


def test_a_round_for_some_limits_deletes_only_their_dead_letters() -> None:
    units = plan(redrive_outcome(), pending={"L2"})
    assert [kinds(unit) for unit in units] == [[("Delete", {"TableName": "t", "Key": dead_letter_key("id-1")})]]


def test_a_dead_letter_still_failing_gets_todays_reason_in_place_if_still_kept() -> None:
    outcome: Outcome[UserLimit] = Outcome(size=2)
    small = DeadLetter("today", b"x", "1", None, "p", 1, ARN, "s")
    big = small._replace(sequence_number="2", partition_key="k" * (TEXTS_INLINE + 1))
    outcome.dead_letters_renewed = [(0, small), (1, big)]
    first, second = plan(outcome)
    ((kind, update),) = kinds(first)
    assert kind == "Update" and update["ConditionExpression"] == "attribute_exists(PK)"
    assert update["Key"] == dead_letter_key(small.id)
    names = update["ExpressionAttributeNames"]
    values = update["ExpressionAttributeValues"]
    set_part, _, remove_part = update["UpdateExpression"].partition(" REMOVE ")
    assert {names[n.split(" = ")[0]]: values[n.split(" = ")[1]] for n in set_part.removeprefix("SET ").split(", ")} == {
        "reason": {"S": "today"},
        "sequenceNumber": {"S": "1"},
        "partitionKey": {"S": "p"},
        "streamArn": {"S": ARN},
        "shardId": {"S": "s"},
    }
    assert [names[n] for n in remove_part.split(", ")] == ["texts"]
    # Texts too big for the item are packed, as a new dead letter's are; the inline ones go.
    update = kinds(second)[-1][1]
    removed = [
        update["ExpressionAttributeNames"][n] for n in update["UpdateExpression"].split(" REMOVE ")[1].split(", ")
    ]
    assert removed == ["reason", "sequenceNumber", "partitionKey", "streamArn", "shardId"]


def test_no_renewal_in_a_round_for_some_limits() -> None:
    outcome: Outcome[UserLimit] = Outcome(size=1)
    outcome.dead_letters_renewed = [(0, DeadLetter("today", b"x"))]
    assert plan(outcome, pending={"L1"}) == []
    assert len(plan(outcome)) == 1


def test_batches_keep_the_order_and_at_most_so_many_dead_letters_of_one_limit() -> None:
    def of(limit_id: str, seq: int) -> DeadLetter:
        return DeadLetter("x", encode(created(limit_id, seq)), str(seq))

    letters = [of("L1", 1), of("L2", 2), of("L1", 3), DeadLetter("x", b"{"), of("L1", 5), of("L2", 6)]
    cut = list(batches(letters, UserLimitFamily(), size=4, per_key=2))
    assert [list(batch) for batch in cut] == [letters[:4], letters[4:]]
    cut = list(batches(letters, UserLimitFamily(), size=3, per_key=1))
    assert [list(batch) for batch in cut] == [letters[:2], letters[2:4], letters[4:]]
