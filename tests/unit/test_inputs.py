"""Reading records from files: JSON array, JSON Lines, Lambda Kinesis event; and every bad file."""

from __future__ import annotations

import itertools
import json
import os
import threading
from collections.abc import Iterator
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
from user_limits import inputs
from user_limits.bootstrap import open_store
from user_limits.errors import UserError
from user_limits.inputs import InputError, Source, open_input, parse_records, read_records
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


@pytest.mark.parametrize("line", [b"\xff\xfe raw", b'"\xed\xa0\x80"', b'{"type": "\xc3"}', b'["\xf5\x80"]'])
def test_a_json_lines_line_that_is_not_utf8_is_a_record(line: bytes) -> None:
    # Whatever the JSON parser calls it: bytes that are not UTF-8 are a record to dead-letter.
    assert [record.data for record in parse_records(ONE + b"\n" + line + b"\n" + TWO)] == [ONE, line, TWO]


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


# -- JSON Lines is read as a stream; what must be read whole is capped


def pipe_source(chunks: Iterator[bytes], name: str = "pipe") -> Source:
    """A Source reading from a real pipe fed by a thread: no size, no seeking, maybe no end."""
    read_end, write_end = os.pipe()

    def feed() -> None:
        try:
            with os.fdopen(write_end, "wb") as writer:
                for chunk in chunks:
                    writer.write(chunk)
        except BrokenPipeError:
            pass  # the reader is done

    threading.Thread(target=feed, daemon=True).start()
    return Source(os.fdopen(read_end, "rb"), name)


def test_json_lines_that_never_end_are_read_as_they_come() -> None:
    endless = (encode(created(f"L{n}", n + 1)) + b"\n" for n in itertools.count())
    with pipe_source(endless) as source:
        first = list(itertools.islice(source.records(), 5000))
    assert [json.loads(record.data)["payload"]["userLimitId"] for record in first[:3]] == ["L0", "L1", "L2"]
    assert len(first) == 5000


def test_a_malformed_line_is_raised_when_the_reader_gets_there() -> None:
    lines = iter([ONE + b"\n", TWO + b"\n", b"{cut short\n", ONE + b"\n"])
    with pipe_source(lines, "events.jsonl") as source:
        records = source.records()
        assert [next(records).data, next(records).data] == [ONE, TWO]
        with pytest.raises(InputError, match=r"^events\.jsonl: line 3: malformed JSON"):
            next(records)


@pytest.mark.parametrize(
    ("head", "says"),
    [
        (b"[", "more than 1 MiB to read whole"),
        (b'{"Records": [', "more than 1 MiB to read whole"),
        (b"{", "more than 1 MiB to read whole"),  # the first line never ends: not JSON Lines
        (ONE + b"\n{", "line 2 is longer than 1 MiB"),
    ],
)
def test_an_input_without_end_is_refused_within_the_caps(
    monkeypatch: pytest.MonkeyPatch, head: bytes, says: str
) -> None:
    monkeypatch.setattr(inputs, "MAX_LINE_BYTES", 1 << 20)
    monkeypatch.setattr(inputs, "MAX_DOCUMENT_BYTES", 1 << 20)
    spaces = itertools.repeat(b" " * 65536)
    with pipe_source(itertools.chain([head], spaces), "endless") as source:
        with pytest.raises(InputError, match=says):
            list(source.records())
        assert source.consumed <= 2 * (1 << 20) + len(head)


def test_a_document_larger_than_the_cap_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "huge.json"
    with path.open("wb") as file:
        file.write(b"[" + ONE + b",")
        file.truncate(inputs.MAX_DOCUMENT_BYTES + 1)  # sparse: no disk used
    with open_input(path) as source:
        with pytest.raises(InputError, match="MiB to read whole"):
            list(source.records())
        assert source.consumed < 1 << 20


def test_a_line_of_exactly_the_limit_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inputs, "MAX_LINE_BYTES", 64)
    at_limit = b'{"pad": "' + b"x" * (64 - 11) + b'"}'
    assert len(at_limit) == 64
    assert [record.data for record in parse_records(ONE[:0] + b'{"a": 1}\n' + at_limit + b"\n")] == [
        b'{"a": 1}',
        at_limit,
    ]
    with pytest.raises(InputError, match="line 2 is longer than 0 MiB"):
        parse_records(b'{"a": 1}\n' + at_limit + b"x\n")


def test_json_lines_split_on_a_lone_carriage_return_too() -> None:
    assert [record.data for record in parse_records(ONE + b"\r" + TWO + b"\r")] == [ONE, TWO]


@pytest.mark.parametrize("line", [b'{"a": 1,}', b'{"a": 01}', b"[1, 2,]", b'{"type": "USER_LIMIT_CREATED" "x"}'])
def test_bad_json_inside_braces_is_a_record_to_dead_letter(line: bytes) -> None:
    # It was meant as an envelope: rule 1 dead-letters it rather than refuse the whole file.
    assert [record.data for record in parse_records(ONE + b"\n" + line + b"\n" + TWO)] == [ONE, line, TWO]


def test_records_come_in_batches_bounded_in_count_and_bytes() -> None:
    from user_limits.replay import batches
    from user_limits.stream.records import StreamRecord

    records = [StreamRecord(b"x" * size) for size in (10, 10, 10, 30, 5, 50, 1, 1, 1)]
    cut = list(batches(records, 3, max_bytes=40))
    assert [[len(record.data) for record in batch] for batch in cut] == [[10, 10, 10], [30, 5], [50], [1, 1, 1]]
    assert [record for batch in cut for record in batch] == records


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
