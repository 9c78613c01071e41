"""Reading stream records from files: a JSON array of envelopes, JSON Lines of envelopes, or a
Lambda Kinesis event (``{"Records": [...]}``), told apart by their content.

- JSON Lines is read as a stream, one line at a time, so that a file of any size is applied in
  batches as it is read, in bounded memory. A line is at most :data:`MAX_LINE_BYTES`.
- A JSON array, a Lambda event, or an envelope spread over several lines must be read whole to be
  parsed: at most :data:`MAX_DOCUMENT_BYTES`, checked before reading when the size is known.
- Each envelope keeps its exact bytes, so that an invalid one is dead-lettered as it was written.
  In JSON Lines, a line that is not a valid envelope is still a record (rule 1): bad UTF-8, bad
  JSON between ``{`` and ``}``, nesting too deep. Only a line that is not a record at all (say,
  one cut short) is an error, raised when the reader reaches it.

Whether a line is a record is decided by checks made here (UTF-8, its brackets), never by the
type or text of a parser's exception: those change between versions (msgspec 0.23 reports
invalid UTF-8 as a DecodeError, 0.18 as a UnicodeDecodeError).
"""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import msgspec

from user_limits.errors import UserError
from user_limits.kinesis.records import MalformedEvent, records_from_lambda_event
from user_limits.stream.records import StreamRecord

MIB = 1024 * 1024
# More than any Kinesis record (10 MiB) and its envelope.
MAX_LINE_BYTES = 16 * MIB
MAX_DOCUMENT_BYTES = 128 * MIB
_EXPECTED = "expected a JSON array, JSON Lines or a Lambda Kinesis event"
_BRACKETS = ((b"{", b"}"), (b"[", b"]"))


class InputError(UserError):
    """A file that cannot be read or is not one of the accepted formats."""


LambdaEvent = dict[str, Any]


class Source:
    """One input, read once from the front. ``consumed`` counts the bytes read so far."""

    def __init__(self, stream: io.BufferedReader, name: str, size: int | None = None) -> None:
        self._stream = stream
        self.name = name
        self.size = size  # in bytes, when known (a regular file)
        self.consumed = 0

    def __enter__(self) -> Source:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._stream.close()

    def content(self) -> LambdaEvent | Iterator[bytes]:
        """A Lambda Kinesis event (decoded), or the envelopes' bytes: those of JSON Lines as they
        are read, so that a malformed line raises InputError only once the reader gets there."""
        first = self._skip_space()
        if not first:
            raise InputError(f"{self.name}: empty file: {_EXPECTED}")
        if first == b"[":
            return self._array()
        if first != b"{":
            raise InputError(f"{self.name}: {_EXPECTED}")
        line = self._read_line()
        parts = _split(line)
        if _too_long(line) or _line_problem(parts[0].strip()) is not None:
            # Not one value on the first line (a Lambda event or an envelope over several lines).
            return self._document(line)
        if len(parts) == 1:
            whole = _decoded(line.strip())
            if isinstance(whole, dict) and "Records" in whole and not self._skip_space():
                return whole  # a Lambda event on one line, and nothing after it
        return self._lines(parts)

    def records(self) -> Iterator[StreamRecord]:
        content = self.content()
        if isinstance(content, dict):
            return iter(_lambda_event(content, self.name))
        return (StreamRecord(data) for data in content)

    def _skip_space(self) -> bytes:
        """Skips whitespace; the next byte (left unread), or b"" at the end."""
        while True:
            chunk = self._stream.peek(1)
            if not chunk:
                return b""
            stripped = chunk.lstrip()
            if len(stripped) < len(chunk):
                self.consumed += len(self._stream.read(len(chunk) - len(stripped)))
            if stripped:
                return stripped[:1]

    def _read_line(self) -> bytes:
        line = self._stream.readline(MAX_LINE_BYTES + 1)
        self.consumed += len(line)
        return line

    def _lines(self, first: list[bytes]) -> Iterator[bytes]:
        number = 0
        parts = first
        while True:
            for part in parts:
                number += 1
                stripped = part.strip()
                if not stripped:
                    continue
                problem = _line_problem(stripped)
                if problem is not None:
                    raise InputError(f"{self.name}: line {number}: malformed JSON: {problem}")
                yield stripped
            line = self._read_line()
            if not line:
                return
            if _too_long(line):
                raise InputError(
                    f"{self.name}: line {number + 1} is longer than {MAX_LINE_BYTES // MIB} MiB: not a record"
                )
            parts = _split(line)

    def whole(self) -> bytes:
        """All that is left to read, within :data:`MAX_DOCUMENT_BYTES`."""
        return self._whole()

    def _whole(self, start: bytes = b"") -> bytes:
        limit = MAX_DOCUMENT_BYTES
        too_big = InputError(
            f"{self.name}: more than {limit // MIB} MiB to read whole, the most for a JSON array, a Lambda event "
            "or an envelope over several lines; JSON Lines (one envelope a line) is read as a stream, of any size"
        )
        if self.size is not None and self.size > limit:
            raise too_big
        data = start + self._stream.read(limit + 1 - len(start))
        self.consumed += len(data) - len(start)
        if len(data) > limit:
            raise too_big
        return data

    def _array(self) -> Iterator[bytes]:
        data = self._whole()
        try:
            items = msgspec.json.decode(data, type=list[msgspec.Raw])
        except Exception as error:  # any refusal (RecursionError for JSON nested too deep, too)
            raise InputError(f"{self.name}: malformed JSON: {error}") from None
        return (bytes(item) for item in items)

    def _document(self, start: bytes) -> LambdaEvent | Iterator[bytes]:
        data = self._whole(start)
        try:
            whole = msgspec.json.decode(data)
        except Exception as error:
            raise InputError(f"{self.name}: malformed JSON: {error}") from None
        if isinstance(whole, dict) and "Records" in whole:
            return whole
        return iter([data.strip()])


def _split(line: bytes) -> list[bytes]:
    # A lone CR ends a line too, as it did when a file was split with bytes.splitlines().
    return line.splitlines() or [line] if b"\r" in line else [line]


def _too_long(line: bytes) -> bool:
    """A line read with readline(MAX_LINE_BYTES + 1) that did not end within the limit."""
    return len(line) > MAX_LINE_BYTES and not line.endswith(b"\n")


def _decoded(data: bytes) -> object:
    try:
        return msgspec.json.decode(data)
    except Exception:  # not one JSON value: not a Lambda event
        return None


def _line_problem(line: bytes) -> str | None:
    """Why a (stripped, non-blank) JSON Lines line is not a record; None when it is one."""
    if (line[:1], line[-1:]) in _BRACKETS:
        return None  # a JSON object or array, or meant as one: the codec dead-letters what is wrong inside
    if not _is_utf8(line):
        return None  # bytes, not text: a record to dead-letter
    try:
        msgspec.json.decode(line)
    except Exception as error:  # any refusal: not one JSON value
        return str(error)
    return None


def _is_utf8(data: bytes) -> bool:
    if data.isascii():
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def open_input(path: str | Path) -> Source:
    """The input file at ``path``, opened; raises InputError naming the file and what is wrong."""
    try:
        stream = open(path, "rb")  # noqa: SIM115 - the Source owns and closes it
    except IsADirectoryError:
        raise InputError(f"{path}: is a folder, not a file") from None
    except OSError as error:
        raise InputError(f"{path}: cannot read: {error.strerror or error}") from None
    info = os.fstat(stream.fileno())
    return Source(stream, str(path), info.st_size if stat.S_ISREG(info.st_mode) else None)


def read_file(path: str | Path) -> bytes:
    """A whole file that is not a stream of records (a template, a mapping's JSON), at most
    :data:`MAX_DOCUMENT_BYTES`; raises InputError naming the file and what is wrong."""
    with open_input(path) as source:
        return source.whole()


def check_readable(path: str | Path) -> None:
    """InputError unless ``path`` can be opened: checked for every file before any is applied."""
    open_input(path).close()


def read_records(path: str | Path) -> list[StreamRecord]:
    """The records of one file; raises InputError naming the file and what is wrong."""
    with open_input(path) as source:
        return list(source.records())


def parse_records(data: bytes, name: str = "input") -> list[StreamRecord]:
    with Source(io.BufferedReader(io.BytesIO(data)), name, len(data)) as source:
        return list(source.records())


def _lambda_event(event: dict[str, object], name: str) -> list[StreamRecord]:
    if not isinstance(event["Records"], list):
        raise InputError(f"{name}: `Records` is not a list: not a Lambda Kinesis event")
    try:
        records, _ = records_from_lambda_event(event, strict=True)
    except MalformedEvent as error:
        raise InputError(f"{name}: not a Lambda Kinesis event: {error}") from None
    return records
