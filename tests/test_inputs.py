"""Reading records from files: JSON array, JSON Lines, Lambda Kinesis event; and every bad file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.streams import (
    KINESIS_BASE,
    SHARD,
    STREAM_ARN,
    created,
    encode,
    kpl_bytes,
    kpl_message,
    lambda_event,
    lambda_record,
    noise,
)
from user_limits.bootstrap import open_store
from user_limits.errors import UserError
from user_limits.inputs import InputError, parse_records, read_records
from user_limits.replay import replay

ONE, TWO = encode(created("L1", 1)), encode(noise(2))


def test_a_json_array_keeps_each_envelopes_exact_bytes() -> None:
    text = b'[\n  {"b": 1,  "a": [1, 2]},\n  ' + ONE + b" ,\n" + TWO + b"]"
    assert [record.data for record in parse_records(text)] == [b'{"b": 1,  "a": [1, 2]}', ONE, TWO]
    assert all(record.sequence_number is None for record in parse_records(text))


def test_an_empty_array_is_no_records() -> None:
    assert parse_records(b"[]") == []


def test_json_lines_with_blank_lines_and_crlf() -> None:
    text = ONE + b"\r\n\r\n   \n" + TWO + b"\r\n"
    assert [record.data for record in parse_records(text)] == [ONE, TWO]


def test_a_single_envelope_is_one_record() -> None:
    assert [record.data for record in parse_records(b"  " + ONE + b"\n")] == [ONE]


def test_a_lambda_event_gives_records_with_coordinates() -> None:
    event = lambda_event([created("L1", 1), b"\xff"], 5, arrival_s=1_700_000_000.25)
    records = parse_records(json.dumps(event).encode())
    assert [record.data for record in records] == [ONE, b"\xff"]
    first = records[0]
    assert first.sequence_number == str(KINESIS_BASE + 5)
    assert (first.stream_arn, first.shard_id, first.partition_key) == (STREAM_ARN, SHARD, "u1")
    assert first.arrival_ms == 1_700_000_000_250


def test_invalid_utf8_inside_a_record_is_kept_for_a_dead_letter() -> None:
    # Rule 1: a record with bad UTF-8 is dead-lettered, not a reason to refuse the whole file.
    bad = b'{"type": "\xff"}'
    assert [record.data for record in parse_records(b"[" + bad + b"]")] == [bad]
    assert [record.data for record in parse_records(ONE + b"\n" + bad + b"\n")] == [ONE, bad]
    assert [record.data for record in parse_records(bad)] == [bad]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (b"", "empty file"),
        (b" \n\t ", "empty file"),
        (b"[" + ONE + b",", "malformed JSON"),
        (ONE + b"\n{bad\n", "line 2: malformed JSON"),
        (b"42", "expected a JSON array, JSON Lines or a Lambda Kinesis event"),
        (b"\xff\xfe", "expected a JSON array, JSON Lines or a Lambda Kinesis event"),
        (b'{"Records": 5}', "not a Lambda Kinesis event"),
        (b'{"Records": [{"x": 1}]}', "not a Lambda Kinesis event"),
        (b'{"Records": [1]}', "not a Lambda Kinesis event"),
        (b'{"Records": [{"kinesis": {"data": "e30="}}]}', "not a Lambda Kinesis event"),
    ],
)
def test_bad_content_is_one_clear_error(text: bytes, expected: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_records(text, "events.json")
    message = str(caught.value)
    assert message.startswith("events.json: ")
    assert expected in message
    assert "\n" not in message


def test_a_lambda_event_with_a_bad_arrival_time_is_one_clear_error() -> None:
    event = lambda_event([created("L1", 1)])
    event["Records"][0]["kinesis"]["approximateArrivalTimestamp"] = "yesterday"
    with pytest.raises(InputError, match="not a Lambda Kinesis event"):
        parse_records(json.dumps(event).encode(), "event.json")


def test_read_records_of_a_file(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(ONE + b"\n" + TWO + b"\n")
    assert [record.data for record in read_records(path)] == [ONE, TWO]


def test_files_that_cannot_be_read(tmp_path: Path) -> None:
    cases = {
        tmp_path / "missing.json": "cannot read: No such file",
        tmp_path: "is a folder",
    }
    plain = tmp_path / "plain.json"
    plain.write_bytes(b"[]")
    # A path through a file: refused by the kernel even for root, unlike a chmod 000 file.
    cases[plain / "child.json"] = "cannot read: Not a directory"
    for path, expected in cases.items():
        with pytest.raises(UserError) as caught:
            read_records(path)
        assert str(caught.value).startswith(str(path))
        assert expected in str(caught.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_a_file_without_read_permission(tmp_path: Path) -> None:
    path = tmp_path / "secret.json"
    path.write_bytes(b"[]")
    path.chmod(0)
    with pytest.raises(InputError, match="cannot read: Permission denied"):
        read_records(path)


DEEP = b'{"a":' * 100_000 + b"1" + b"}" * 100_000


def test_a_deeply_nested_record_in_json_lines_is_kept_for_a_dead_letter() -> None:
    assert [record.data for record in parse_records(ONE + b"\n" + DEEP + b"\n")] == [ONE, DEEP]
    assert [record.data for record in parse_records(DEEP)] == [DEEP]


def test_a_deeply_nested_json_array_is_one_clear_error() -> None:
    with pytest.raises(InputError, match=r"^events\.json: malformed JSON"):
        parse_records(b"[" + ONE + b", " + DEEP + b"]", "events.json")


def test_a_lambda_event_with_an_aggregate_that_cannot_be_read_is_replayed_with_it_dead_lettered() -> None:
    # A sub-record's explicit hash key index points outside its table: the de-aggregator raises.
    message = kpl_message([(0, ONE)])
    message.explicit_hash_key_table.append("12345")
    message.records[0].explicit_hash_key_index = 4
    aggregate = kpl_bytes(message)
    event = {"Records": [lambda_record(aggregate, 0), lambda_record(TWO, 1)]}
    records = parse_records(json.dumps(event).encode(), "event.json")
    store = open_store("memory://")
    counts = replay(store, records)
    assert (counts.dead_lettered, counts.ignored) == (1, 1)
    [letter] = store.dead_letters()
    assert (letter.data, letter.sequence_number) == (aggregate, str(KINESIS_BASE))
