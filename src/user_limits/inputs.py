"""Reading stream records from files: a JSON array of envelopes, JSON Lines of envelopes, or a
Lambda Kinesis event (``{"Records": [...]}``), told apart by their content.

Each envelope keeps its exact bytes, so that an invalid one is dead-lettered as it was written.
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from user_limits.errors import UserError
from user_limits.stream.kinesis_event import MalformedEvent, records_from_lambda_event
from user_limits.stream.records import StreamRecord


class InputError(UserError):
    """A file that cannot be read or is not one of the accepted formats."""


def read_file(path: str | Path) -> bytes:
    """The bytes of one input file; raises InputError naming the file and what is wrong."""
    try:
        return Path(path).read_bytes()
    except IsADirectoryError:
        raise InputError(f"{path}: is a folder, not a file") from None
    except OSError as error:
        raise InputError(f"{path}: cannot read: {error.strerror or error}") from None


def read_records(path: str | Path) -> list[StreamRecord]:
    """The records of one file; raises InputError naming the file and what is wrong."""
    return parse_records(read_file(path), str(path))


def parse_records(data: bytes, name: str = "input") -> list[StreamRecord]:
    text = data.lstrip()
    if not text:
        raise InputError(f"{name}: empty file: expected a JSON array, JSON Lines or a Lambda Kinesis event")
    if text[:1] == b"[":
        try:
            items = msgspec.json.decode(data, type=list[msgspec.Raw])
        except (msgspec.DecodeError, RecursionError) as error:
            raise InputError(f"{name}: malformed JSON: {error}") from None
        return [StreamRecord(bytes(item)) for item in items]
    if text[:1] != b"{":
        raise InputError(f"{name}: expected a JSON array, JSON Lines or a Lambda Kinesis event")
    try:
        whole = msgspec.json.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        # Not one JSON value: JSON Lines, one envelope a line (blank lines allowed). msgspec raises
        # UnicodeDecodeError for bad UTF-8 inside a string and RecursionError for JSON nested too
        # deep: such a record is dead-lettered later.
        return _json_lines(data.splitlines(), name)
    if isinstance(whole, dict) and "Records" in whole:
        return _lambda_event(whole, name)
    return [StreamRecord(data.strip())]


def _json_lines(lines: list[bytes], name: str) -> list[StreamRecord]:
    records = []
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line:
            continue
        try:
            msgspec.json.decode(line)
        except (UnicodeDecodeError, RecursionError):
            pass  # not UTF-8 or nested too deep: kept, and dead-lettered as rule 1 says
        except msgspec.DecodeError as error:
            raise InputError(f"{name}: line {number}: malformed JSON: {error}") from None
        records.append(StreamRecord(line))
    return records


def _lambda_event(event: dict[str, object], name: str) -> list[StreamRecord]:
    if not isinstance(event["Records"], list):
        raise InputError(f"{name}: `Records` is not a list: not a Lambda Kinesis event")
    try:
        records, _ = records_from_lambda_event(event, strict=True)
    except MalformedEvent as error:
        raise InputError(f"{name}: not a Lambda Kinesis event: {error}") from None
    return records
