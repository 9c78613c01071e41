"""The Lambda Kinesis handler: partial batch responses, dead letters with their coordinates, KPL
de-aggregation, store failures (nothing lost, nothing reported done that is not) and the log line."""

from __future__ import annotations

import base64
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aws_kinesis_agg.aggregator import RecordAggregator

from tests.streams import (
    KINESIS_BASE,
    SHARD,
    STREAM_ARN,
    created,
    encode,
    export,
    kpl_bytes,
    kpl_message,
    lambda_event,
    lambda_record,
    noise,
    progress,
    reset,
)
from user_limits import aws_lambda
from user_limits.bootstrap import open_store
from user_limits.stores.base import LimitStore
from user_limits.stores.sqlite_store import SQLiteStore
from user_limits.stream.records import CommitError

STREAM = [
    progress("L1", 4, "40", "0"),  # an orphan, parked until its creation
    created("L1", 2, value="1000"),
    noise(3),
    progress("L1", 5, "10", "40"),
    created("L2", 6, user_id="u2"),
    reset("L1", 7, next_reset=123),
    progress("L2", 8, "0.5", "0", user_id="u2"),
]


@pytest.fixture
def store_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'lambda.db'}"
    monkeypatch.setenv("USER_LIMITS_STORE", url)
    aws_lambda.reset()
    yield url
    aws_lambda.reset()


def read(url: str) -> tuple[list[dict[str, object]], dict[str, int], LimitStore]:
    store = open_store(url)
    return export(store), store.stats().as_json(), store


def clean_export(tmp_path: Path, event: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> list[dict[str, object]]:
    """The export of a clean run of ``event`` on a store of its own."""
    url = f"sqlite:///{tmp_path / 'clean.db'}"
    monkeypatch.setenv("USER_LIMITS_STORE", url)
    aws_lambda.reset()
    assert aws_lambda.handler(event) == {"batchItemFailures": []}
    aws_lambda.reset()
    limits, _, store = read(url)
    store.close()
    return limits


def test_a_clean_batch_reports_no_failures(store_url: str) -> None:
    assert aws_lambda.handler(lambda_event(STREAM), None) == {"batchItemFailures": []}
    limits, counts, store = read(store_url)
    assert [(x["userLimitId"], x["progress"], x["nextResetTime"]) for x in limits] == [
        ("L1", "0", 123),
        ("L2", "0.5", created("L2", 6)["payload"]["nextResetTime"]),
    ]
    # The builders' fixed figures disagree with both limits: their three progress changes and the reset drifted.
    assert counts == {"applied": 6, "skipped": 0, "ignored": 1, "parked": 0, "deadLettered": 0, "drifted": 4}
    store.close()


def test_an_empty_event(store_url: str) -> None:
    assert aws_lambda.handler({"Records": []}) == {"batchItemFailures": []}


def test_poison_records_are_dead_lettered_with_coordinates_and_never_reported(store_url: str) -> None:
    arrival = 1_700_000_123.456
    event = lambda_event([created("L1", 1), b"\xff\xfe", b'{"type": "USER_LIMIT_CREATED"}'], 0, arrival_s=arrival)
    # Data that is not even base64: kept as it came.
    event["Records"].append(lambda_record(b"", 3))
    event["Records"][-1]["kinesis"]["data"] = "!!not base64!!"
    assert aws_lambda.handler(event) == {"batchItemFailures": []}
    assert aws_lambda.handler(event) == {"batchItemFailures": []}  # re-delivered: kept once
    _, counts, store = read(store_url)
    assert counts["deadLettered"] == 3
    assert counts["applied"] == 1
    letters = {letter.sequence_number: letter for letter in store.dead_letters()}
    store.close()
    first = letters[str(KINESIS_BASE + 1)]
    assert first.data == b"\xff\xfe"
    assert (first.stream_arn, first.shard_id, first.partition_key) == (STREAM_ARN, SHARD, "u1")
    assert first.arrival_ms == 1_700_000_123_456
    assert first.sub_sequence_number is None
    assert "UTF-8" in first.reason
    assert letters[str(KINESIS_BASE + 3)].data == b"!!not base64!!"


def aggregated(items: list[tuple[str, bytes]]) -> bytes:
    aggregator = RecordAggregator()
    for partition_key, user_data in items:
        assert aggregator.add_user_record(partition_key, user_data) is None  # all fit in one record
    record = aggregator.clear_and_get()
    assert record is not None
    _, _, contents = record.get_contents()
    data: bytes = contents
    return data


def test_kpl_aggregated_records_are_deaggregated(store_url: str) -> None:
    data = aggregated(
        [("u1", encode(created("L1", 1))), ("u9", b"poison"), ("u1", encode(progress("L1", 2, "3", "0")))]
    )
    event = {"Records": [lambda_record(data, 0, partition_key="kpl"), lambda_record(encode(noise(9)), 1)]}
    assert aws_lambda.handler(event) == {"batchItemFailures": []}
    limits, counts, store = read(store_url)
    [letter] = store.dead_letters()
    store.close()
    assert [x["progress"] for x in limits] == ["3"]
    assert counts == {"applied": 2, "skipped": 0, "ignored": 1, "parked": 0, "deadLettered": 1, "drifted": 1}
    # The sub-record keeps its place in the aggregate and its own partition key.
    assert (letter.sequence_number, letter.sub_sequence_number) == (str(KINESIS_BASE), 1)
    assert letter.partition_key == "u9"
    assert letter.data == b"poison"


def test_a_record_that_only_looks_aggregated_is_dead_lettered_whole(store_url: str) -> None:
    fake = b"\xf3\x89\x9a\xc2" + b"\x00" * 40
    assert aws_lambda.handler({"Records": [lambda_record(fake, 0)]}) == {"batchItemFailures": []}
    _, counts, store = read(store_url)
    [letter] = store.dead_letters()
    store.close()
    assert letter.data == fake
    assert counts["deadLettered"] == 1


def _failing_write(monkeypatch: pytest.MonkeyPatch) -> None:
    """The store fails after writing part of the outcome, inside its transaction."""
    original = SQLiteStore._write

    def write_then_fail(self: SQLiteStore, db: Any, outcome: Any, stored: Any) -> None:
        original(self, db, outcome, stored)
        raise OSError("disk I/O error (injected)")

    monkeypatch.setattr(SQLiteStore, "_write", write_then_fail)


def test_a_store_failure_reports_the_first_uncommitted_record_and_commits_nothing(
    store_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    first = lambda_event(STREAM[:3])
    assert aws_lambda.handler(first) == {"batchItemFailures": []}
    before = read(store_url)
    before[2].close()

    rest = lambda_event([*STREAM[3:], b"\xff poison"], 3)
    with monkeypatch.context() as patch:
        _failing_write(patch)
        response = aws_lambda.handler(rest)
    # One SQLite transaction per batch: nothing of it is committed, so its first record is reported,
    # and nothing after it is reported as done.
    assert response == {"batchItemFailures": [{"itemIdentifier": str(KINESIS_BASE + 3)}]}
    after = read(store_url)
    after[2].close()
    assert after[:2] == before[:2]

    # Lambda re-delivers from the reported record: the same export as a clean run.
    assert aws_lambda.handler(rest) == {"batchItemFailures": []}
    limits, counts, store = read(store_url)
    assert store.dead_letters()[0].data == b"\xff poison"
    store.close()
    assert counts["deadLettered"] == 1
    assert limits == clean_export(tmp_path, lambda_event([*STREAM, b"\xff poison"]), monkeypatch)


def test_a_store_outage_reports_a_poison_record_too(store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Its dead letter was not stored either: reporting it is how it is not lost.
    event = lambda_event([b"poison", created("L1", 1)])
    with monkeypatch.context() as patch:
        _failing_write(patch)
        assert aws_lambda.handler(event) == {"batchItemFailures": [{"itemIdentifier": str(KINESIS_BASE)}]}
    _, counts, store = read(store_url)
    store.close()
    assert counts["deadLettered"] == 0
    assert aws_lambda.handler(event) == {"batchItemFailures": []}
    _, counts, store = read(store_url)
    store.close()
    assert (counts["deadLettered"], counts["applied"]) == (1, 1)


class PartialStore:
    """A store that, like one without a transaction over many items, commits part of a batch."""

    def __init__(self, inner: LimitStore, first_uncommitted: int) -> None:
        self.inner = inner
        self.first_uncommitted = first_uncommitted

    def apply_batch(self, keys: Any, project: Any) -> Any:
        raise CommitError(self.first_uncommitted, OSError("throttled (injected)"))

    def close(self) -> None:
        self.inner.close()


@pytest.mark.parametrize(("failed", "reported"), [(0, 0), (1, 0), (2, 0), (3, 1), (4, 2)])
def test_a_partial_commit_reports_the_lambda_record_of_the_first_uncommitted_one(
    store_url: str, failed: int, reported: int
) -> None:
    # Lambda records: an aggregate of three user records, then two plain records.
    data = aggregated([("u1", encode(created("L1", 1))), ("u1", encode(noise(2))), ("u1", encode(noise(3)))])
    event = {
        "Records": [lambda_record(data, 0), lambda_record(encode(noise(4)), 1), lambda_record(encode(noise(5)), 2)]
    }
    processor = aws_lambda.processor()
    processor.store = PartialStore(processor.store, failed)  # type: ignore[arg-type]
    response = aws_lambda.handler(event)
    assert response == {"batchItemFailures": [{"itemIdentifier": str(KINESIS_BASE + reported)}]}


@pytest.fixture
def log(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """What the handler logs: its handler's stream was bound to stdout when the module was imported."""
    buffer = io.StringIO()
    monkeypatch.setattr(aws_lambda.logger.registered_handler, "stream", buffer)
    return buffer


def log_lines(log: io.StringIO) -> list[dict[str, Any]]:
    lines = []
    for line in log.getvalue().splitlines():
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict) and value.get("message") in ("batch", "batch not committed"):
            lines.append(value)
    return lines


def test_one_structured_log_line_per_batch(store_url: str, log: io.StringIO) -> None:
    arrival = time.time() - 60  # the records waited a minute in the stream
    aws_lambda.handler(lambda_event([*STREAM, b"poison"], arrival_s=arrival))
    [line] = log_lines(log)
    assert line["level"] == "INFO"
    assert line["records"] == len(STREAM) + 1
    assert {key: line[key] for key in ("applied", "skipped", "ignored", "parked", "deadLettered")} == {
        "applied": 6,
        "skipped": 0,
        "ignored": 1,
        "parked": 1,
        "deadLettered": 1,
    }
    assert line["drifted"] == 4  # as in test_a_clean_batch_reports_no_failures
    assert 59_000 <= line["recordAgeMs"]["oldest"] < 3_600_000
    assert line["recordAgeMs"]["newest"] <= line["recordAgeMs"]["oldest"]
    assert line["durationMs"] >= 0


def test_the_log_line_of_a_failed_batch_names_the_reported_record(
    store_url: str, monkeypatch: pytest.MonkeyPatch, log: io.StringIO
) -> None:
    _failing_write(monkeypatch)
    aws_lambda.handler(lambda_event([created("L1", 1)]))
    [line] = log_lines(log)
    assert line["level"] == "ERROR"
    assert line["failedItem"] == str(KINESIS_BASE)
    assert "injected" in line["error"]


def test_sequence_numbers_beyond_64_bits_survive_as_text(store_url: str) -> None:
    huge = 2**127 + 12345
    record = lambda_record(b"poison", 0)
    record["kinesis"]["sequenceNumber"] = str(huge)
    record["eventID"] = f"{SHARD}:{huge}"
    aws_lambda.handler({"Records": [record]})
    _, _, store = read(store_url)
    [letter] = store.dead_letters()
    store.close()
    assert letter.sequence_number == str(huge)
    assert base64.b64decode(record["kinesis"]["data"]) == letter.data


def test_a_deeply_nested_record_is_a_dead_letter_not_a_failed_batch(store_url: str) -> None:
    deep = b'{"a":' * 100_000 + b"1" + b"}" * 100_000
    response = aws_lambda.handler(lambda_event([created("L1", 1), deep, progress("L1", 2, "1", "0")]))
    assert response == {"batchItemFailures": []}
    limits, counts, store = read(store_url)
    store.close()
    assert (counts["deadLettered"], limits[0]["progress"]) == (1, "1")


def test_an_absurd_amount_is_a_dead_letter_not_a_failed_batch(store_url: str) -> None:
    stream = [created("L1", 1), progress("L1", 2, "1e1000000", "0"), progress("L1", 3, "1", "0")]
    assert aws_lambda.handler(lambda_event(stream)) == {"batchItemFailures": []}
    limits, counts, store = read(store_url)
    store.close()
    assert (counts["deadLettered"], limits[0]["progress"]) == (1, "1")


def _tampered_aggregate(how: str) -> bytes:
    items = [(0, encode(created("L1", 1))), (0, b"second"), (0, encode(progress("L1", 2, "1", "0")))]
    message = kpl_message(items)
    if how == "partition key index outside its table":
        # The library stops there: the records after it would vanish.
        message.records[1].partition_key_index = 7
    elif how == "explicit hash key index outside its table":
        # The library raises IndexError from inside its own error report.
        message.explicit_hash_key_table.append("12345")
        message.records[1].explicit_hash_key_index = 3
    elif how == "truncated protobuf":
        return kpl_bytes(message.SerializeToString()[:-3])
    return kpl_bytes(message)


@pytest.mark.parametrize(
    "how",
    [
        "partition key index outside its table",
        "explicit hash key index outside its table",
        "truncated protobuf",
    ],
)
def test_an_aggregate_that_cannot_be_read_is_dead_lettered_whole_and_the_rest_commits(store_url: str, how: str) -> None:
    aggregate = _tampered_aggregate(how)
    arrival = 1_700_000_123.456
    event = {
        "Records": [
            lambda_record(encode(created("L0", 1)), 0),
            lambda_record(aggregate, 1, arrival_s=arrival, partition_key="kpl"),
            lambda_record(encode(created("L9", 1)), 2),
        ]
    }
    assert aws_lambda.handler(event) == {"batchItemFailures": []}
    assert aws_lambda.handler(event) == {"batchItemFailures": []}  # re-delivered: kept once
    limits, counts, store = read(store_url)
    [letter] = store.dead_letters()
    store.close()
    assert [x["userLimitId"] for x in limits] == ["L0", "L9"]
    assert (counts["applied"], counts["deadLettered"]) == (2, 1)
    assert letter.data == aggregate
    assert letter.reason.startswith("KPL aggregate that cannot be de-aggregated")
    coordinates = (letter.sequence_number, letter.sub_sequence_number, letter.partition_key, letter.arrival_ms)
    assert coordinates == (str(KINESIS_BASE + 1), None, "kpl", 1_700_000_123_456)
    assert (letter.stream_arn, letter.shard_id) == (STREAM_ARN, SHARD)


def test_any_exception_from_the_deaggregator_dead_letters_the_aggregate(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aws_kinesis_agg import deaggregator

    class Surprise(Exception):
        """Not an exception type the product could know of."""

    def fail(*args: object, **kwargs: object) -> Any:
        raise Surprise("injected")

    monkeypatch.setattr(deaggregator, "iter_deaggregate_records", fail)
    aggregate = aggregated([("u1", encode(created("L1", 1)))])
    event = {"Records": [lambda_record(aggregate, 0), lambda_record(encode(created("L9", 1)), 1)]}
    assert aws_lambda.handler(event) == {"batchItemFailures": []}
    limits, _, store = read(store_url)
    [letter] = store.dead_letters()
    store.close()
    assert (letter.data, letter.sequence_number) == (aggregate, str(KINESIS_BASE))
    assert "Surprise" in letter.reason
    assert [x["userLimitId"] for x in limits] == ["L9"]


def _mutated(change: str) -> Any:
    """A Lambda record of a shape AWS never sends: the record at position 1, changed."""
    record: Any = lambda_record(encode(created("L5", 1)), 1)
    kinesis = record["kinesis"]
    if change == "not an object":
        return ["a", "list"]
    if change == "no kinesis":
        del record["kinesis"]
    elif change == "kinesis not an object":
        record["kinesis"] = "kinesis"
    elif change.startswith("no "):
        del kinesis[change[3:]]
    else:
        name, _, value = change.partition("=")
        target = record if name in ("eventID", "eventSourceARN") else kinesis
        target[name] = json.loads(value)
    return record


# (change, whether the dead letter keeps the record's sequence number)
SHAPES = [
    ("not an object", False),
    ("no kinesis", False),
    ("kinesis not an object", False),
    ("no data", True),
    ("data=123", True),
    ("data=null", True),
    ('data={"a": 1}', True),
    ("no sequenceNumber", False),
    ("sequenceNumber=123", False),
    ("sequenceNumber=1.5", False),
    ('sequenceNumber=""', False),
    ('sequenceNumber="\\u0661\\u0662"', False),  # Arabic-Indic digits
    ('sequenceNumber="\\ud800"', False),
    ('approximateArrivalTimestamp="yesterday"', True),
    ('approximateArrivalTimestamp="1700000000"', True),
    ("approximateArrivalTimestamp=NaN", True),
    ("approximateArrivalTimestamp=Infinity", True),
    ("approximateArrivalTimestamp=-Infinity", True),
    ("approximateArrivalTimestamp=1e300", True),
    ("approximateArrivalTimestamp=-5.0", True),
    ("approximateArrivalTimestamp=true", True),
    ("approximateArrivalTimestamp=[1]", True),
    ("partitionKey=5", True),
    ('partitionKey="\\ud800"', True),  # a lone surrogate: no store can encode it
    ("eventID=5", True),
    ('eventSourceARN={"arn": 1}', True),
]


@pytest.mark.parametrize(("change", "keeps_sequence"), SHAPES, ids=[change[:40] for change, _ in SHAPES])
def test_a_record_of_a_shape_aws_never_sends_is_dead_lettered_and_the_rest_commits(
    store_url: str, change: str, keeps_sequence: bool
) -> None:
    bad = _mutated(change)
    event = {"Records": [lambda_record(encode(created("L0", 1)), 0), bad, lambda_record(encode(created("L9", 1)), 2)]}
    assert aws_lambda.handler(event) == {"batchItemFailures": []}
    assert aws_lambda.handler(event) == {"batchItemFailures": []}  # re-delivered: kept once
    limits, counts, store = read(store_url)
    [letter] = store.dead_letters()
    store.close()
    assert [x["userLimitId"] for x in limits] == ["L0", "L9"]
    assert (counts["applied"], counts["deadLettered"]) == (2, 1)
    assert letter.reason.startswith("Lambda record of a shape AWS never sends: ")
    assert letter.sequence_number == (str(KINESIS_BASE + 1) if keeps_sequence else None)
    # Kept whole, as JSON: nothing of it is lost (JSON has no NaN, infinity or lone surrogate).
    if not any(word in change for word in ("NaN", "Infinity", "ud800")):
        assert json.loads(letter.data) == bad


def test_a_data_string_with_a_lone_surrogate_is_dead_lettered(store_url: str) -> None:
    record = lambda_record(b"", 1)
    record["kinesis"]["data"] = "\ud800 not base64"
    event = {"Records": [lambda_record(encode(created("L0", 1)), 0), record]}
    assert aws_lambda.handler(event) == {"batchItemFailures": []}
    _, counts, store = read(store_url)
    [letter] = store.dead_letters()
    store.close()
    assert (counts["applied"], counts["deadLettered"]) == (1, 1)
    assert letter.sequence_number == str(KINESIS_BASE + 1)
    assert "UTF-8" in letter.reason


@pytest.mark.parametrize(
    "event",
    [{"Records": {"a": 1}}, {"Records": "records"}, {"Records": 5}, ["not", "an", "object"], "event"],
    ids=["Records an object", "Records a string", "Records a number", "a list", "a string"],
)
def test_an_event_of_a_shape_aws_never_sends_is_one_dead_letter(store_url: str, event: Any) -> None:
    assert aws_lambda.handler(event) == {"batchItemFailures": []}
    _, counts, store = read(store_url)
    [letter] = store.dead_letters()
    store.close()
    assert counts["deadLettered"] == 1
    assert letter.reason.startswith("Lambda event of a shape AWS never sends: ")
    assert json.loads(letter.data) == event


@pytest.mark.parametrize(
    ("records", "failed", "reported"),
    [
        # The bad record has a sequence number: it is reported itself.
        (["good", "bad arrival", "good"], 1, str(KINESIS_BASE + 1)),
        # It has none: the record before it is reported, and Lambda retries from there (safe).
        (["good", "no sequence", "good"], 1, str(KINESIS_BASE)),
        (["good", "no sequence", "good"], 2, str(KINESIS_BASE + 2)),
        # Nothing before it: "" makes Lambda retry the whole batch.
        (["no sequence", "good"], 0, ""),
    ],
)
def test_a_malformed_record_still_gets_a_sensible_item_identifier(
    store_url: str, records: list[str], failed: int, reported: str
) -> None:
    event: dict[str, Any] = {"Records": []}
    for position, kind in enumerate(records):
        record = lambda_record(encode(noise(position + 1)), position)
        if kind == "bad arrival":
            record["kinesis"]["approximateArrivalTimestamp"] = "yesterday"
        elif kind == "no sequence":
            del record["kinesis"]["sequenceNumber"]
        event["Records"].append(record)
    processor = aws_lambda.processor()
    processor.store = PartialStore(processor.store, failed)  # type: ignore[arg-type]
    assert aws_lambda.handler(event) == {"batchItemFailures": [{"itemIdentifier": reported}]}
