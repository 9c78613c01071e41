"""The pure projection rules 4-6: ``apply(state, event) -> state``."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from tests.streams import created, encode, progress, reset
from user_limits.domain.events import UserLimitEvent
from user_limits.domain.model import EXPORT_FIELDS, UserLimit, export_dict
from user_limits.domain.projection import LimitNotFound, apply, creates
from user_limits.family import UserLimitFamily

family = UserLimitFamily()


def event(envelope: dict[str, Any]) -> UserLimitEvent:
    decoded = family.decode(encode(envelope))
    assert decoded is not None
    return decoded


def fold(*envelopes: dict[str, Any]) -> UserLimit:
    state: UserLimit | None = None
    for envelope in envelopes:
        state = apply(state, event(envelope))
    assert state is not None
    return state


def test_created_keeps_every_payload_field_with_progress_zero() -> None:
    envelope = created(
        "L1", 3, "u7", value="10000", type_="BET", period="WEEK", status="IN_COOLDOWN", next_reset=42, activeUntil=99
    )
    limit = fold(envelope)
    assert export_dict(limit) == {
        "userLimitId": "L1",
        "userId": "u7",
        "brandId": "brand-1",
        "type": "BET",
        "period": "WEEK",
        "status": "IN_COOLDOWN",
        "value": "10000",
        "progress": "0",
        "currencyCode": "SEK",
        "activeFrom": envelope["payload"]["activeFrom"],
        "activeUntil": 99,
        "nextResetTime": 42,
        "createdAt": envelope["createdAt"],  # the envelope's, not the payload's activeFrom
    }
    assert list(export_dict(limit)) == list(EXPORT_FIELDS)
    assert (limit.last_sequence_number, limit.updated_at) == (3, envelope["createdAt"])


def test_created_without_next_reset_time() -> None:
    assert fold(created("L1", 1, next_reset=None)).next_reset_time is None


def test_progress_is_previous_progress_plus_amount_in_decimal() -> None:
    limit = fold(created("L1", 1), progress("L1", 2, "0.1", "0.2"))
    assert limit.progress == Decimal("0.3")  # never 0.30000000000000004
    assert str(limit.progress) == "0.3"


def test_progress_takes_the_producers_previous_progress_not_ours() -> None:
    # Rule 5 reads previousProgress from the event, so a missed event does not skew the result.
    limit = fold(created("L1", 1), progress("L1", 2, "10", "0"), progress("L1", 4, "5", "100"))
    assert str(limit.progress) == "105"


@pytest.mark.parametrize(
    ("amount", "previous", "expected"),
    [("200", "0", "200"), ("-50.25", "100", "49.75"), ("0.001", "9800.00", "9800.001"), ("0", "0", "0")],
)
def test_progress_amounts(amount: str, previous: str, expected: str) -> None:
    assert str(fold(created("L1", 1), progress("L1", 2, amount, previous)).progress) == expected


def test_progress_updates_next_reset_time_only_when_present() -> None:
    limit = fold(created("L1", 1, next_reset=100), progress("L1", 2, "1", "0"))
    assert limit.next_reset_time == 100
    limit = fold(created("L1", 1, next_reset=100), progress("L1", 2, "1", "0", next_reset=200))
    assert limit.next_reset_time == 200


def test_progress_changes_nothing_else() -> None:
    before = fold(created("L1", 1, value="500"))
    after = apply(before, event(progress("L1", 2, "7", "0", next_reset=9)))
    unchanged = set(EXPORT_FIELDS) - {"progress", "nextResetTime"}
    assert {k: v for k, v in export_dict(after).items() if k in unchanged} == {
        k: v for k, v in export_dict(before).items() if k in unchanged
    }
    assert (after.last_sequence_number, after.updated_at) == (2, progress("L1", 2, "7", "0")["createdAt"])


def test_reset_sets_progress_zero_and_the_payloads_next_reset_time() -> None:
    limit = fold(created("L1", 1, next_reset=100), progress("L1", 2, "80", "0"), reset("L1", 3, next_reset=300))
    assert str(limit.progress) == "0"
    assert limit.next_reset_time == 300
    assert limit.last_sequence_number == 3
    # The reset's type and period fields describe the limit; they do not change it.
    assert (limit.type, limit.period, str(limit.value)) == ("DEPOSIT", "DAY", "100.00")


def test_a_later_creation_replaces_the_limit() -> None:
    limit = fold(created("L1", 1, value="5"), progress("L1", 2, "3", "0"), created("L1", 3, value="9"))
    assert (str(limit.value), str(limit.progress), limit.last_sequence_number) == ("9", "0", 3)


@pytest.mark.parametrize("envelope", [progress("L1", 2, "1", "0"), reset("L1", 2, next_reset=1)])
def test_a_change_without_a_limit_is_an_error_for_the_engine(envelope: dict[str, Any]) -> None:
    assert not creates(event(envelope))
    with pytest.raises(LimitNotFound):
        apply(None, event(envelope))


def test_apply_does_not_mutate_the_state() -> None:
    before = fold(created("L1", 1))
    snapshot = export_dict(before)
    apply(before, event(progress("L1", 2, "1", "0")))
    assert export_dict(before) == snapshot


def test_remaining_and_used_percent() -> None:
    limit = fold(created("L1", 1, value="10000"), progress("L1", 2, "200", "0"))
    assert (str(limit.remaining), str(limit.used_percent)) == ("9800", "2.00")
    assert str(fold(created("L1", 1, value="0")).used_percent) == "0.00"


def test_progress_is_exact_at_the_edge_of_the_amount_range() -> None:
    # 77 significant digits: the default Decimal context (28) would round this silently.
    big, tiny = "99999999999999999999999999999999999999", "0.00000000000000000000000000000000000001"
    limit = fold(created("L1", 1, value=big), progress("L1", 2, tiny, big))
    assert str(limit.progress) == big + tiny[1:]
    assert limit.remaining == -Decimal(tiny)
    assert str(limit.used_percent) == "100.00"


def test_used_percent_of_a_huge_progress_does_not_raise() -> None:
    limit = fold(created("L1", 1, value="0.00000000000000000000000000000000000001"), progress("L1", 2, "1E+37", "0"))
    assert limit.used_percent == Decimal("1E+77")
