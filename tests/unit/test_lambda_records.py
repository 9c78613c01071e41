"""Reading a Lambda Kinesis event: the fast path (every record converted by msgspec in one call,
base64 included) gives exactly what the careful path gives, record by record, for any event."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from tests.contract.test_handler_fuzz import lambda_events
from tests.streams import created, encode, lambda_event, lambda_record
from user_limits.kinesis import records
from user_limits.kinesis.records import MalformedEvent, records_from_lambda_event
from user_limits.stream.records import RejectedRecord


def read(event: Any, strict: bool = False) -> Any:
    """What the event gives: its records (with a RejectedRecord's reason) and their parents, or the
    reason a strict read refuses it."""
    try:
        found, parents = records_from_lambda_event(event, strict)
    except MalformedEvent as error:
        return ("refused", str(error))
    return [(type(record), tuple(record), getattr(record, "reason", None)) for record in found], parents


def careful_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fault injection: the one-call conversion fails, so every record takes the careful path."""

    def refuse(raw_records: object) -> list[Any]:
        raise ValueError("the fast path is off")

    monkeypatch.setattr(records, "_as_lambda_records", refuse)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(drawn=lambda_events(0))
def test_the_fast_path_reads_any_event_as_the_careful_path_does(drawn: tuple[Any, int]) -> None:
    event, _ = drawn
    fast = (read(event), read(event, strict=True))
    with pytest.MonkeyPatch.context() as patch:
        careful_only(patch)
        careful = (read(event), read(event, strict=True))
    assert fast == careful


def test_base64_that_only_binascii_accepts_is_decoded_as_binascii_does(monkeypatch: pytest.MonkeyPatch) -> None:
    # msgspec refuses padding past the end ("Zm9v===="), binascii's strict mode takes it: the event
    # then takes the careful path, and the record is what binascii makes of it.
    event = lambda_event([created("L1", 1)])
    event["Records"].append(lambda_record(b"", 2))
    event["Records"][1]["kinesis"]["data"] = "Zm9v===="
    found, _ = records_from_lambda_event(event)
    assert [record.data for record in found] == [encode(created("L1", 1)), b"foo"]
    assert not any(type(record) is RejectedRecord for record in found)


def test_data_that_is_not_base64_is_kept_as_it_came() -> None:
    event = lambda_event([created("L1", 1)])
    event["Records"][0]["kinesis"]["data"] = "not base64!"
    (record,), _ = records_from_lambda_event(event)
    assert record.data == b"not base64!"
    assert record.sequence_number == event["Records"][0]["kinesis"]["sequenceNumber"]


def test_a_usual_event_keeps_every_coordinate() -> None:
    event = lambda_event([created("L1", 1), created("L2", 2)], partition_key="ü")
    found, parents = records_from_lambda_event(event)
    for record, raw in zip(found, event["Records"], strict=True):
        kinesis = raw["kinesis"]
        assert record.data == base64.b64decode(kinesis["data"])
        assert record.sequence_number == kinesis["sequenceNumber"]
        assert record.partition_key == "ü"  # not ASCII: read by the careful path, the same
        assert record.arrival_ms == int(kinesis["approximateArrivalTimestamp"] * 1000)
        assert record.stream_arn == raw["eventSourceARN"]
        assert record.shard_id == raw["eventID"].partition(":")[0]
    assert parents == [raw["kinesis"]["sequenceNumber"] for raw in event["Records"]]
