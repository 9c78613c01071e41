"""Splitting a byte stream of JSON objects written one after another, with no delimiter or with
whitespace (newlines) between them, into pieces of exact bytes: the record data of a Kinesis Data
Firehose archive. msgspec parses one whole value only and cannot say where a value ends in a
longer buffer, so the split is made here.

This module is hot: every byte of an archive goes through it.

- Fast path: an object is taken to end at the first ``}`` followed by whitespace, ``{`` or the end
  of what is read so far, and that candidate is checked by msgspec (decoded as a ``Raw``, which
  validates the JSON without building any value).
- Otherwise a validating scanner written here (a JSON tokenizer with a nesting stack) finds where
  the object ends, or the first byte at which it cannot be JSON.
- Nothing is dropped: every byte that is not whitespace between pieces is in exactly one piece.
  Bytes between objects are a piece up to the next ``{`` or line end. An object that breaks off
  (cut short, or running into the next record) is a piece up to where the next object starts: the
  first ``{`` after it that opens a whole object followed by something that may follow a record
  (anything but ``,`` ``:`` ``]`` ``}``); where there is none, up to the next ``{`` or line end
  after the break.
- Bounded: a piece is at most ``max_bytes`` (16 MiB, more than a Kinesis record's 10 MiB); the
  buffer holds at most about twice that. The work is linear in the input: past a budget of
  :data:`WORK_PER_BYTE` times the bytes split, the search for the next object after a break is
  given up for the rest of the stream (such input is hostile; pieces then end at the break).
- The pieces depend only on the bytes, never on how they were cut into chunks.

Whether a piece is a whole object is decided by this module's scanner, or by whether msgspec
accepts it at all: never by the type or text of an exception.
"""

from __future__ import annotations

import re
from collections.abc import Generator, Iterable, Iterator
from typing import NamedTuple

import msgspec

MIB = 1024 * 1024
MAX_PIECE_BYTES = 16 * MIB
MAX_DEPTH = 1000
# An object longer than this is scanned by the validating scanner rather than the fast path.
FAST_WINDOW = 256 * 1024
WORK_PER_BYTE = 16
WORK_ALLOWANCE = 64 * MIB

_WHITESPACE = re.compile(rb"[ \t\r\n]*")
# The fast path's guess at an object's end: a } followed by whitespace, { or the end.
_CLOSE = re.compile(rb"\}(?=[ \t\r\n{]|\Z)")
# A string's body after its opening quote; it stops before the closing quote, or at a byte that
# is not allowed there (a control character, a bad escape), or at the end.
_STRING_BODY = re.compile(rb'(?:[^"\\\x00-\x1f]+|\\["\\/bfnrt]|\\u[0-9A-Fa-f]{4})*')
_NUMBER = re.compile(rb"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_LITERALS = (b"true", b"false", b"null")
_LBRACE, _RBRACE, _LBRACKET, _RBRACKET = ord("{"), ord("}"), ord("["), ord("]")
_QUOTE, _COLON, _COMMA = ord('"'), ord(":"), ord(",")
_NUMBER_START = frozenset(b"-0123456789")
_LITERAL_START = frozenset(b"tfn")
_NOT_AFTER_RECORD = frozenset(b",:]}")
_SPACE = frozenset(b" \t\r\n")
# A failure this close to the end of the data read so far may be a token cut by the chunking
# (``tru``, ``1.``, ``\u12``): more data decides.
_LOOKAHEAD = 8

_validate = msgspec.json.Decoder(msgspec.Raw).decode

# Scanner outcomes.
_WHOLE, _NEED, _BROKEN = 0, 1, 2
# What the scanner expects next.
_VALUE, _VALUE_OR_CLOSE, _KEY, _KEY_OR_CLOSE, _COLON_NEXT, _COMMA_OR_CLOSE = range(6)


class Piece(NamedTuple):
    """Bytes of the stream at ``offset``: a whole JSON object, or bytes that are not one."""

    offset: int
    data: bytes


def split(chunks: Iterable[bytes], max_bytes: int = MAX_PIECE_BYTES) -> Iterator[Piece]:
    """The pieces of the stream that ``chunks`` make up, in order, as they are read."""
    splitter = _Splitter(max_bytes)
    buffer = b""
    base = 0  # stream offset of buffer[0]
    position = 0
    wanted = 0  # more data is read before retrying until the buffer holds this much
    for chunk in chunks:
        if not chunk:
            continue
        buffer = buffer[position:] + chunk if position else buffer + chunk
        base += position
        position = 0
        if len(buffer) < wanted:
            continue
        position = yield from splitter.pieces(buffer, base, position, eof=False)
        # Retry only once what is left has doubled (or reaches the most a decision can need), so
        # that a long object read in many chunks is scanned a bounded number of times.
        wanted = min(2 * (len(buffer) - position), splitter.horizon)
    yield from splitter.pieces(buffer, base, position, eof=True)


class _Splitter:
    """The split's state between chunks: only the work done so far."""

    def __init__(self, max_bytes: int) -> None:
        self.max = max_bytes
        # The most data after a piece's start that deciding it may need: a break up to max bytes
        # in, an object starting there of up to max bytes, and whitespace after it.
        self.horizon = 3 * max_bytes + _LOOKAHEAD
        self.cost = 0
        self.work = 0
        self.done = 0
        # Hostile input (past the work budget): no fast path, and no search for the next object
        # after a break, for the rest of the stream; each byte is then scanned about once.
        self.hostile = False

    def pieces(self, buffer: bytes, base: int, position: int, eof: bool) -> Generator[Piece, None, int]:
        """The pieces of ``buffer`` from ``position``; returns where the next one starts."""
        end = len(buffer)
        while True:
            start = _matched(_WHITESPACE, buffer, position, len(buffer))
            if start == end:
                return start
            self.cost = 0
            step = self.step(buffer, start, eof)
            if step is None:
                return start
            stop, resume = step
            self.work += self.cost
            self.done += resume - start
            if self.work > WORK_PER_BYTE * self.done + WORK_ALLOWANCE:
                self.hostile = True
            yield Piece(base + start, buffer[start:stop])
            position = resume

    def step(self, buffer: bytes, start: int, eof: bool) -> tuple[int, int] | None:
        """The piece at ``start`` (not whitespace): (its end, where to go on), or None for more data."""
        if buffer[start] != _LBRACE:
            return self.run(buffer, start, start, eof)
        found, at = self.object_at(buffer, start, eof)
        if found == _NEED:
            return None
        if found == _WHOLE:
            return at, at
        return self.broken(buffer, start, at, eof)

    def object_at(self, buffer: bytes, start: int, eof: bool) -> tuple[int, int]:
        """Whether an object opens at ``start``: (_WHOLE, its end), (_NEED, 0) or (_BROKEN, where)."""
        if not self.hostile:
            window = min(len(buffer), start + min(self.max, FAST_WINDOW))
            close = _CLOSE.search(buffer, start + 1, window)
            if close is not None:
                end = close.end()
                self.cost += end - start
                try:
                    _validate(memoryview(buffer)[start:end])
                except Exception:  # not JSON as a whole: the scanner decides
                    pass
                else:
                    return _WHOLE, end
            else:
                self.cost += window - start
        found, at = scan(buffer, start, min(len(buffer), start + self.max), eof or start + self.max <= len(buffer))
        self.cost += at - start
        return found, at

    def broken(self, buffer: bytes, start: int, failed: int, eof: bool) -> tuple[int, int] | None:
        """The piece of an object that breaks off at ``failed``: up to the next object, if one starts
        at a ``{`` after ``start`` and up to ``failed``, else up to the next ``{`` or line end."""
        if not self.hostile:
            candidate = buffer.find(b"{", start + 1, failed + 1)
            while candidate != -1:
                found, at = self.object_at(buffer, candidate, eof)
                if found == _NEED:
                    return None
                if found == _WHOLE:
                    after = _matched(_WHITESPACE, buffer, at, at + self.max)
                    if after == len(buffer) and not eof and after - at < self.max:
                        return None
                    if after == len(buffer) or buffer[after] not in _NOT_AFTER_RECORD:
                        return _rstrip(buffer, start, candidate), candidate
                candidate = buffer.find(b"{", candidate + 1, failed + 1)
        return self.run(buffer, start, failed, eof)

    def run(self, buffer: bytes, start: int, frm: int, eof: bool) -> tuple[int, int] | None:
        """A piece from ``start`` that is not an object, up to the next ``{`` or line end at or after
        ``frm``, at most ``max`` bytes."""
        limit = start + self.max
        brace = buffer.find(b"{", frm, limit)
        newline = buffer.find(b"\n", frm, brace if brace != -1 else limit)
        stop = newline if newline != -1 else brace
        self.cost += (stop if stop != -1 else min(limit, len(buffer))) - frm
        if stop == -1:
            if len(buffer) >= limit:
                stop = limit
            elif eof:
                stop = len(buffer)
            else:
                return None
        if stop == start:  # a { that breaks off at once, as in "{{"
            stop = start + 1
        return _rstrip(buffer, start, stop), stop


def _rstrip(buffer: bytes, start: int, stop: int) -> int:
    while stop > start + 1 and buffer[stop - 1] in b" \t\r\n":
        stop -= 1
    return stop


def scan(buffer: bytes, start: int, limit: int, final: bool) -> tuple[int, int]:
    """Scan the JSON object at ``buffer[start]`` (a ``{``) up to ``limit``.

    (_WHOLE, its end), (_BROKEN, the first byte at which it cannot be JSON, or ``limit`` if it is
    not closed by then), or (_NEED, bytes scanned) when it may go on past ``limit`` and ``final``
    is false (``limit`` is the end of the data read so far, and more may come).
    """
    stack = [_LBRACE]
    position = start + 1
    expect = _KEY_OR_CLOSE
    while True:
        if position >= limit:
            return (_BROKEN, limit) if final else (_NEED, limit)
        byte = buffer[position]
        if byte in _SPACE:
            position = _matched(_WHITESPACE, buffer, position, limit)
            continue
        if expect == _COMMA_OR_CLOSE:
            top = stack[-1]
            if byte == _COMMA:
                expect = _KEY if top == _LBRACE else _VALUE
                position += 1
                continue
            if (byte == _RBRACE and top == _LBRACE) or (byte == _RBRACKET and top == _LBRACKET):
                stack.pop()
                position += 1
                if not stack:
                    return _WHOLE, position
                continue
            return _failed(position, limit, final)
        if expect == _COLON_NEXT:
            if byte != _COLON:
                return _failed(position, limit, final)
            expect = _VALUE
            position += 1
            continue
        if expect in (_KEY, _KEY_OR_CLOSE):
            if byte == _QUOTE:
                position = _string_end(buffer, position, limit)
                if position < 0:
                    return _failed(-position, limit, final)
                expect = _COLON_NEXT
                continue
            if byte == _RBRACE and expect == _KEY_OR_CLOSE:
                stack.pop()
                position += 1
                if not stack:
                    return _WHOLE, position
                expect = _COMMA_OR_CLOSE
                continue
            return _failed(position, limit, final)
        # _VALUE or _VALUE_OR_CLOSE
        if byte in (_LBRACE, _LBRACKET):
            if len(stack) >= MAX_DEPTH:
                return _BROKEN, position
            stack.append(byte)
            expect = _KEY_OR_CLOSE if byte == _LBRACE else _VALUE_OR_CLOSE
            position += 1
            continue
        if byte == _RBRACKET and expect == _VALUE_OR_CLOSE:
            stack.pop()
            position += 1
            expect = _COMMA_OR_CLOSE
            continue
        if byte == _QUOTE:
            position = _string_end(buffer, position, limit)
            if position < 0:
                return _failed(-position, limit, final)
        elif byte in _NUMBER_START:
            number = _NUMBER.match(buffer, position, limit)
            if number is None:
                return _failed(position, limit, final)
            position = number.end()
            if position >= limit:  # the number may go on
                return (_BROKEN, limit) if final else (_NEED, limit)
        elif byte in _LITERAL_START:
            for literal in _LITERALS:
                if buffer.startswith(literal, position, limit):
                    position += len(literal)
                    break
            else:
                return _failed(position, limit, final)
        else:
            return _failed(position, limit, final)
        expect = _COMMA_OR_CLOSE


def _string_end(buffer: bytes, quote: int, limit: int) -> int:
    """The position after the string opening at ``quote``, or minus the position where it fails."""
    end = _matched(_STRING_BODY, buffer, quote + 1, limit)
    if end < limit and buffer[end] == _QUOTE:
        return end + 1
    return -end


def _matched(pattern: re.Pattern[bytes], buffer: bytes, position: int, limit: int) -> int:
    """Where ``pattern`` (which matches the empty string too) stops matching from ``position``."""
    match = pattern.match(buffer, position, limit)
    return position if match is None else match.end()


def _failed(position: int, limit: int, final: bool) -> tuple[int, int]:
    if not final and limit - position < _LOOKAHEAD:
        return _NEED, position
    return _BROKEN, position
