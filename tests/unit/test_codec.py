"""Decoding the upstream envelope (rules 1 and 2): every way a record is dead-lettered, and what passes."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.streams import created, encode, noise, progress, reset
from user_limits.domain.events import (
    LIMIT_PERIODS,
    LIMIT_STATUSES,
    LIMIT_TYPES,
    MAX_ID_LENGTH,
    LimitCreated,
    LimitReset,
    ProgressChanged,
)
from user_limits.family import UserLimitFamily
from user_limits.stream.engine import InvalidRecord

family = UserLimitFamily()


def reason(data: bytes) -> str:
    with pytest.raises(InvalidRecord) as caught:
        family.decode(data)
    return str(caught.value)


def with_field(envelope: dict[str, Any], name: str, value: Any) -> bytes:
    return encode({**envelope, name: value})


def without_field(envelope: dict[str, Any], name: str) -> bytes:
    return encode({key: value for key, value in envelope.items() if key != name})


def with_payload(envelope: dict[str, Any], **fields: Any) -> bytes:
    return encode({**envelope, "payload": {**envelope["payload"], **fields}})


def without_payload_field(envelope: dict[str, Any], name: str) -> bytes:
    payload = {key: value for key, value in envelope["payload"].items() if key != name}
    return encode({**envelope, "payload": payload})


# -- not a valid envelope

ENVELOPE = created("L1", 3)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"\xff\xfe{}", "not UTF-8"),
        (b"", "invalid envelope"),
        (b"{not json", "invalid envelope"),
        (b"null", "invalid envelope"),
        (b"[1, 2]", "invalid envelope"),
        (b'"USER_LIMIT_CREATED"', "invalid envelope"),
        (b"42", "invalid envelope"),
        (b"\xef\xbb\xbf" + encode(ENVELOPE), "invalid envelope"),  # a byte order mark is not JSON
        (encode(ENVELOPE) + b" trailing", "invalid envelope"),
    ],
)
def test_records_that_are_not_json_objects(data: bytes, expected: str) -> None:
    assert expected in reason(data)


@pytest.mark.parametrize(
    "name", ["aggregateId", "context", "createdAt", "eventId", "payload", "sequenceNumber", "source", "type"]
)
def test_every_envelope_field_is_required(name: str) -> None:
    assert name in reason(without_field(ENVELOPE, name))


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("aggregateId", 5),
        ("aggregateId", None),
        ("context", []),
        ("context", None),
        ("context", "ctx"),
        ("createdAt", "1647946090594"),
        ("createdAt", 1.5),
        ("createdAt", True),  # a bool is not an int, whatever Python thinks
        ("eventId", 7),
        ("payload", []),
        ("payload", "{}"),
        ("payload", None),
        ("sequenceNumber", True),
        ("sequenceNumber", "3"),
        ("sequenceNumber", 3.0),
        ("sequenceNumber", -1),
        ("sequenceNumber", 2**63),  # out of the 64-bit range stores keep
        ("sequenceNumber", 2**64 + 1),
        ("source", {}),
        ("type", None),
        ("type", ["USER_LIMIT_CREATED"]),
    ],
)
def test_mistyped_envelope_fields(name: str, value: Any) -> None:
    assert name in reason(with_field(ENVELOPE, name, value))


@pytest.mark.parametrize(
    "envelope", [ENVELOPE, progress("L1", 4, "5", "0"), reset("L1", 5, 10), noise(6)], ids=lambda e: e["type"]
)
@pytest.mark.parametrize("value", [[], "{}", None, 5, True])
def test_a_payload_that_is_not_an_object_is_refused_whatever_the_type(envelope: dict[str, Any], value: Any) -> None:
    # A handled type's payload decoder refuses it, an ignored type's payload is checked alone: the
    # same reason either way, never an ignored record.
    assert reason(with_field(envelope, "payload", value)) == "invalid envelope: Expected `object` - at `$.payload`"


def test_bad_utf8_in_a_field_the_decoder_would_skip() -> None:
    # msgspec skips unknown fields without validating them; the record is still not valid UTF-8.
    data = encode({**ENVELOPE, "extra": "PLACEHOLDER"}).replace(b"PLACEHOLDER", b"\xc3\x28")
    assert "not UTF-8" in reason(data)
    # The same inside the raw payload of a type we ignore: still a dead letter, not an ignored record.
    other = encode(noise(1)).replace(b'"200"', b'"\xff"')
    assert "not UTF-8" in reason(other)


def test_lone_surrogate_escape_is_malformed() -> None:
    data = encode(noise(1)).replace(b'"200"', b'"\\ud800"')
    assert "invalid envelope" in reason(data)


def test_extreme_sequence_numbers_within_64_bits_pass() -> None:
    for seq in (0, 2**63 - 1):
        event = family.decode(with_field(ENVELOPE, "sequenceNumber", seq))
        assert event is not None and event.sequence_number == seq


# -- invalid payloads of our three types

PAYLOADS = {
    "USER_LIMIT_CREATED": created("L1", 1),
    "USER_LIMIT_PROGRESS_CHANGED": progress("L1", 2, "200", "0", next_reset=5),
    "USER_LIMIT_RESET": reset("L1", 3, next_reset=9),
}
REQUIRED = {
    "USER_LIMIT_CREATED": [
        "activeFrom", "brandId", "currencyCode", "period", "status", "type", "userId", "userLimitId", "value"
    ],
    "USER_LIMIT_PROGRESS_CHANGED": [
        "amount", "brandId", "currencyCode", "previousProgress", "remainingAmount", "userId", "userLimitId"
    ],
    "USER_LIMIT_RESET": [
        "brandId", "currencyCode", "nextResetTime", "period", "resetAmount", "resetPercentage", "type",
        "unusedAmount", "userId", "userLimitId",
    ],
}  # fmt: skip
DECIMALS = {
    "USER_LIMIT_CREATED": ["value"],
    "USER_LIMIT_PROGRESS_CHANGED": ["amount", "previousProgress", "remainingAmount"],
    "USER_LIMIT_RESET": ["resetAmount", "resetPercentage", "unusedAmount"],
}
# The amounts the read model computes with or stores: these must also fit exact arithmetic.
STORED_DECIMALS = {
    "USER_LIMIT_CREATED": ["value"],
    "USER_LIMIT_PROGRESS_CHANGED": ["amount", "previousProgress"],
}


@pytest.mark.parametrize(("type_", "name"), [(t, n) for t, names in REQUIRED.items() for n in names])
def test_missing_payload_field(type_: str, name: str) -> None:
    message = reason(without_payload_field(PAYLOADS[type_], name))
    assert f"invalid {type_} payload" in message
    assert name in message


@pytest.mark.parametrize(("type_", "name"), [(t, n) for t, names in DECIMALS.items() for n in names])
@pytest.mark.parametrize("bad", ["NaN", "nan", "-NaN", "sNaN", "Infinity", "-Infinity", "inf", "abc", "", True, None])
def test_amounts_that_are_not_finite_decimals(type_: str, name: str, bad: Any) -> None:
    message = reason(with_payload(PAYLOADS[type_], **{name: bad}))
    assert f"invalid {type_} payload" in message


# Rule 1: an amount is ASCII -?digits[.digits][(e|E)[+|-]digits]. Decimal() takes each of these.
OUTSIDE_THE_GRAMMAR = [
    " 1",
    "1 ",
    "1_000",
    "\uff11",  # fullwidth 1
    "\uff11\uff10.\uff15",
    "\u0663",  # Arabic-Indic 3
    "\u0661.\u0665",
    "+5",
    ".5",
    "5.",
    "-.5",
    "5.e3",
    "NaN",
    "Infinity",
    "\u00a01",  # a no-break space
    "1\n",
]


@pytest.mark.parametrize(("type_", "name"), [(t, n) for t, names in DECIMALS.items() for n in names])
@pytest.mark.parametrize("bad", OUTSIDE_THE_GRAMMAR)
def test_an_amount_outside_the_grammar_is_dead_lettered(type_: str, name: str, bad: str) -> None:
    message = reason(with_payload(PAYLOADS[type_], **{name: bad}))
    assert f"invalid {type_} payload" in message
    assert f"`{name}`" in message


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("12.50", "12.50"),
        ("-1", "-1"),
        ("0", "0"),
        ("-0", "-0"),
        ("007", "7"),
        ("0.50", "0.50"),
        ("1E+5", "1E+5"),
        ("1e5", "1E+5"),
        ("5E-8", "5E-8"),
        ("-2.5e-3", "-0.0025"),
        ("\\u0031\\u0032", "12"),  # JSON escapes: the text they stand for is what must fit
    ],
)
def test_amounts_in_the_grammar_pass_with_their_value(text: str, value: str) -> None:
    data = json.dumps(PAYLOADS["USER_LIMIT_PROGRESS_CHANGED"]).replace('"amount": "200"', f'"amount": "{text}"')
    event = family.decode(data.encode())
    assert event is not None and isinstance(event.payload, ProgressChanged)
    assert str(event.payload.amount) == value


@pytest.mark.parametrize("number", ["5", "-5", "0.1", "-2.5e3", "1E+5"])
def test_json_number_amounts_fit_the_grammar_first_or_not(number: str) -> None:
    # A JSON number is always written in the grammar, wherever it stands among the amounts.
    payload = PAYLOADS["USER_LIMIT_PROGRESS_CHANGED"]["payload"]
    for name in ("amount", "previousProgress", "remainingAmount"):
        fields = {key: value for key, value in payload.items() if key != name}
        data = json.dumps({**PAYLOADS["USER_LIMIT_PROGRESS_CHANGED"], "payload": {name: 0, **fields}})
        data = data.replace(f'"{name}": 0', f'"{name}": {number}')
        event = family.decode(data.encode())
        assert event is not None
        assert getattr(
            event.payload, {"amount": "amount", "previousProgress": "previous_progress"}.get(name, "remaining_amount")
        ) == Decimal(number)


_GRAMMAR = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?")


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("0123456789.-+eE _\uff11\u0663 \u00a0N"), max_size=8))
def test_an_amount_passes_exactly_when_its_text_fits_the_grammar(text: str) -> None:
    # remainingAmount is validated and never computed with: no range applies to it.
    data = with_payload(PAYLOADS["USER_LIMIT_PROGRESS_CHANGED"], remainingAmount=text)
    try:
        event = family.decode(data)
    except InvalidRecord:
        event = None
    assert (event is not None) == (_GRAMMAR.fullmatch(text) is not None)


@pytest.mark.parametrize(
    ("type_", "name", "value"),
    [
        ("USER_LIMIT_CREATED", "type", "POKER"),
        ("USER_LIMIT_CREATED", "type", "deposit"),  # enums are case-sensitive
        ("USER_LIMIT_CREATED", "period", "YEAR"),
        ("USER_LIMIT_CREATED", "status", "DELETED"),
        ("USER_LIMIT_RESET", "type", "POKER"),
        ("USER_LIMIT_RESET", "period", "FORTNIGHT"),
    ],
)
def test_unknown_enum_values(type_: str, name: str, value: str) -> None:
    message = reason(with_payload(PAYLOADS[type_], **{name: value}))
    assert f"invalid {type_} payload" in message
    assert value in message


@pytest.mark.parametrize(
    ("type_", "name", "value"),
    [
        ("USER_LIMIT_CREATED", "userLimitId", 5),
        ("USER_LIMIT_CREATED", "activeFrom", "1647946090592"),
        ("USER_LIMIT_CREATED", "activeFrom", True),
        ("USER_LIMIT_CREATED", "nextResetTime", 2**64),
        ("USER_LIMIT_PROGRESS_CHANGED", "userId", None),
        ("USER_LIMIT_PROGRESS_CHANGED", "nextResetTime", "soon"),
        ("USER_LIMIT_RESET", "nextResetTime", None),  # required for a reset
    ],
)
def test_mistyped_payload_fields(type_: str, name: str, value: Any) -> None:
    message = reason(with_payload(PAYLOADS[type_], **{name: value}))
    assert f"invalid {type_} payload" in message
    assert name in message


# -- what passes


def test_other_types_are_ignored_without_decoding_their_payload() -> None:
    assert family.decode(encode(noise(1))) is None
    # Whatever the payload object holds, as long as the envelope is valid.
    assert family.decode(encode({**noise(2), "payload": {"userLimitId": 5, "amount": "NaN"}})) is None


@pytest.mark.parametrize("type_", LIMIT_TYPES)
@pytest.mark.parametrize("period", LIMIT_PERIODS)
def test_every_limit_type_and_period(type_: str, period: str) -> None:
    event = family.decode(encode(created("L1", 1, type_=type_, period=period)))
    assert event is not None and isinstance(event.payload, LimitCreated)
    assert (event.payload.type, event.payload.period) == (type_, period)


@pytest.mark.parametrize("status", LIMIT_STATUSES)
def test_every_status(status: str) -> None:
    event = family.decode(encode(created("L1", 1, status=status)))
    assert event is not None and isinstance(event.payload, LimitCreated) and event.payload.status == status


def test_each_type_decodes_to_its_payload_with_extra_fields_tolerated() -> None:
    extra: dict[str, Any] = {"jurisdiction": "SGA", "nested": {"a": [1, 2]}}
    first = family.decode(encode({**created("L1", 3, value="10000", **extra), "extraEnvelopeField": 1}))
    second = family.decode(with_payload(PAYLOADS["USER_LIMIT_PROGRESS_CHANGED"], **extra))
    third = family.decode(with_payload(PAYLOADS["USER_LIMIT_RESET"], **extra))
    assert first is not None and isinstance(first.payload, LimitCreated)
    assert (first.sequence_number, first.created_at) == (3, created("L1", 3)["createdAt"])
    assert first.payload.value == Decimal("10000")
    assert second is not None and isinstance(second.payload, ProgressChanged)
    assert (second.payload.amount, second.payload.previous_progress) == (Decimal("200"), Decimal("0"))
    assert second.payload.next_reset_time == 5
    assert third is not None and isinstance(third.payload, LimitReset) and third.payload.next_reset_time == 9
    assert family.key(first) == "L1"
    assert family.partition(first) == "u1"
    assert family.position(first) == 3
    assert family.creates(first) and not family.creates(second) and not family.creates(third)


def test_amounts_keep_their_exact_digits() -> None:
    event = family.decode(
        with_payload(PAYLOADS["USER_LIMIT_PROGRESS_CHANGED"], amount="9800.00", previousProgress="0.10")
    )
    assert event is not None and isinstance(event.payload, ProgressChanged)
    assert str(event.payload.amount) == "9800.00"
    assert str(event.payload.previous_progress) == "0.10"


def test_json_number_amounts_are_decimals_not_floats() -> None:
    data = json.dumps(PAYLOADS["USER_LIMIT_PROGRESS_CHANGED"]).replace('"amount": "200"', '"amount": 0.1')
    event = family.decode(data.encode())
    assert event is not None and isinstance(event.payload, ProgressChanged)
    assert event.payload.amount == Decimal("0.1")


def test_optional_next_reset_time_may_be_absent_or_null() -> None:
    for data in (encode(created("L1", 1, next_reset=None)), with_payload(created("L1", 1), nextResetTime=None)):
        event = family.decode(data)
        assert event is not None and isinstance(event.payload, LimitCreated)
        assert event.payload.next_reset_time is None


DEEP = b'{"a":' * 100_000 + b"1" + b"}" * 100_000  # 1.1 MB at most in a Kinesis record; this is 600 kB


@pytest.mark.parametrize(
    "data",
    [
        DEEP,
        encode(noise(1)).replace(b'"payload": {', b'"payload": {"deep": ' + DEEP + b", "),
        encode(created("L1", 1)).replace(b'"payload": {', b'"payload": {"deep": ' + DEEP + b", "),
        encode(noise(1)).replace(b'"context": {}', b'"context": {"deep": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
    ],
)
def test_deeply_nested_json_is_dead_lettered_not_a_crash(data: bytes) -> None:
    # Anything but InvalidRecord would fail the whole batch, and Lambda would retry it for ever.
    assert "invalid" in reason(data)


@pytest.mark.parametrize(("type_", "name"), [(t, n) for t, names in STORED_DECIMALS.items() for n in names])
@pytest.mark.parametrize(
    "bad", ["1e1000000", "-1E+999999999", "1E+38", "-100000000000000000000000000000000000000", "1E-39"]
)
def test_amounts_beyond_what_stores_and_arithmetic_hold_exactly(type_: str, name: str, bad: str) -> None:
    # 1e1000000 is finite, but adding it overflows Decimal and numeric columns: the batch would fail for ever.
    message = reason(with_payload(PAYLOADS[type_], **{name: bad}))
    assert f"invalid {type_} payload" in message
    assert "out of range" in message


def test_a_huge_but_finite_amount_the_read_model_never_uses_is_valid() -> None:
    # Rule 1 refuses amounts that are not finite; remainingAmount is validated, never computed with.
    event = family.decode(with_payload(PAYLOADS["USER_LIMIT_PROGRESS_CHANGED"], remainingAmount="1e1000000"))
    assert event is not None


@pytest.mark.parametrize(
    "good", ["99999999999999999999999999999999999999", "-0.00000000000000000000000000000000000001"]
)
def test_amounts_at_the_edge_of_the_range_pass(good: str) -> None:
    event = family.decode(with_payload(PAYLOADS["USER_LIMIT_PROGRESS_CHANGED"], amount=good))
    assert event is not None and isinstance(event.payload, ProgressChanged)
    assert event.payload.amount == Decimal(good)


@pytest.mark.parametrize("type_", list(PAYLOADS))
@pytest.mark.parametrize("name", ["userId", "userLimitId"])
def test_ids_longer_than_any_store_can_key_are_dead_lettered(type_: str, name: str) -> None:
    longest = family.decode(with_payload(PAYLOADS[type_], **{name: "😀" * MAX_ID_LENGTH}))
    assert longest is not None
    message = reason(with_payload(PAYLOADS[type_], **{name: "x" * (MAX_ID_LENGTH + 1)}))
    assert f"invalid {type_} payload" in message and name in message
