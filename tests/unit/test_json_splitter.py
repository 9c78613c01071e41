"""Splitting concatenated JSON objects (a Firehose archive's record data) into pieces of exact bytes.

Properties over any bytes: nothing is lost (every byte that is not whitespace between pieces is in
exactly one piece, at its offset), pieces never exceed the limit, and they do not depend on how the
stream is cut into chunks. Over valid records with any separators: exactly the records. Around a
record cut short: the records before and after it come out whole.
"""

from __future__ import annotations

from collections.abc import Iterator

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from user_limits.operations.json_splitter import Piece, split

SPACE = b" \t\r\n"

json_text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)) | st.sampled_from('{}[]":,\\'))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | json_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(json_text, inner, max_size=4),
    max_leaves=12,
)
records = st.dictionaries(json_text, json_values, max_size=5).map(msgspec.json.encode)
FRAGMENTS = [b"{", b"}", b'"', b'{"a', b"\\", b"\n", b"[", b"]", b":", b","]
separators = st.sampled_from([b"", b"", b"\n", b"\r\n", b" ", b"\n\n", b"\t"])


def chunked(data: bytes, cuts: list[int]) -> Iterator[bytes]:
    points = sorted({min(max(cut, 0), len(data)) for cut in cuts})
    start = 0
    for point in [*points, len(data)]:
        yield data[start:point]
        start = point


def pieces(data: bytes, cuts: list[int] | None = None, max_bytes: int | None = None) -> list[Piece]:
    chunks = chunked(data, cuts or [])
    return list(split(chunks) if max_bytes is None else split(chunks, max_bytes))


def assert_nothing_lost(data: bytes, found: list[Piece], max_bytes: int) -> None:
    position = 0
    for piece in found:
        assert piece.offset >= position
        assert data[position : piece.offset].strip(SPACE) == b""  # only whitespace between pieces
        assert piece.data and data[piece.offset : piece.offset + len(piece.data)] == piece.data
        assert piece.data[:1] not in (b" ", b"\t", b"\r", b"\n")
        assert len(piece.data) <= max_bytes
        position = piece.offset + len(piece.data)
    assert data[position:].strip(SPACE) == b""


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(records, separators), max_size=8), st.lists(st.integers(0, 4000), max_size=6))
def test_valid_records_with_any_separators_and_chunks_come_out_exactly(
    items: list[tuple[bytes, bytes]], cuts: list[int]
) -> None:
    data = b"".join(record + separator for record, separator in items)
    expected = []
    offset = 0
    for record, separator in items:
        expected.append(Piece(offset, record))
        offset += len(record) + len(separator)
    assert pieces(data, cuts) == expected


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(records | st.binary(max_size=40) | st.sampled_from(FRAGMENTS), max_size=10),
    st.lists(st.integers(0, 600), max_size=6),
    st.sampled_from([16, 64, 4096]),
)
def test_any_bytes_lose_nothing_and_do_not_depend_on_the_chunks(
    parts: list[bytes], cuts: list[int], max_bytes: int
) -> None:
    data = b"".join(parts)
    whole = pieces(data, max_bytes=max_bytes)
    assert_nothing_lost(data, whole, max_bytes)
    assert pieces(data, cuts, max_bytes) == whole
    assert pieces(data, list(range(1, len(data))), max_bytes) == whole  # a byte at a time


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(records, max_size=3),
    records.filter(lambda record: len(record) > 2),
    st.floats(0, 1, exclude_max=True),
    st.lists(records, min_size=1, max_size=3),
    separators,
)
def test_the_records_around_one_cut_short_come_out_whole(
    before: list[bytes], cut: bytes, where: float, after: list[bytes], separator: bytes
) -> None:
    cut_short = cut[: 1 + int(where * (len(cut) - 2))]  # at least "{", never the whole record
    data = separator.join([*before, cut_short, *after])
    found = [piece.data for piece in pieces(data)]
    assert found[: len(before)] == before
    assert found[-len(after) :] == after
    # The cut record is kept, in one piece or more, between them.
    assert len(found) > len(before) + len(after)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b'{"a":1}{"b":2}', [(0, b'{"a":1}'), (7, b'{"b":2}')]),
        (b'{"a":1}\n{"b":2}\n', [(0, b'{"a":1}'), (8, b'{"b":2}')]),
        (b'{"a":"}{"}{"b":"\\"}"}', [(0, b'{"a":"}{"}'), (10, b'{"b":"\\"}"}')]),  # braces and quotes in strings
        (b'{"a":"x} y"}{"b":2}', [(0, b'{"a":"x} y"}'), (12, b'{"b":2}')]),  # a "}" then a space in a string
        # Garbage between objects: a piece up to the next "{" or line end.
        (b'{"a":1}junk{"b":2}', [(0, b'{"a":1}'), (7, b"junk"), (11, b'{"b":2}')]),
        (b'bad 1\r\nbad 2\n{"b":2}', [(0, b"bad 1"), (7, b"bad 2"), (13, b'{"b":2}')]),
        (b'\xff\xfe not utf-8{"b":2}', [(0, b"\xff\xfe not utf-8"), (12, b'{"b":2}')]),
        # A record with bytes that are not UTF-8 inside a string is still one record (to dead-letter).
        (b'{"a":"\xff"}{"b":2}', [(0, b'{"a":"\xff"}'), (9, b'{"b":2}')]),
        # Cut short, then the next record: the cut part alone, then the next record whole.
        (b'{"a":1,"b":"hel{"c":1}{"d":2}', [(0, b'{"a":1,"b":"hel'), (15, b'{"c":1}'), (22, b'{"d":2}')]),
        (b'{"a": "x", {"c":1}', [(0, b'{"a": "x",'), (11, b'{"c":1}')]),
        (b'{"a":{"b":[1,{"c":2}]},"k{"d":3}', [(0, b'{"a":{"b":[1,{"c":2}]},"k'), (25, b'{"d":3}')]),
        # A whole object inside a cut record is taken for a record only if a record may follow it.
        (b'{"a":{"b":1},"c":"x{"d":3}', [(0, b'{"a":{"b":1},"c":"x'), (19, b'{"d":3}')]),
        (b'{"a":{"b":1}{"d":3}', [(0, b'{"a":'), (5, b'{"b":1}'), (12, b'{"d":3}')]),
        # Broken inside, with no record after it before the next "{": one piece.
        (b'{"a":1 xyz}{"b":2}', [(0, b'{"a":1 xyz}'), (11, b'{"b":2}')]),
        (b'{"a": "x\n{"b":1}', [(0, b'{"a": "x'), (9, b'{"b":1}')]),  # a raw newline in a string
        # The stream ends inside a record, or with garbage.
        (b'{"a":1}{"b":[1,', [(0, b'{"a":1}'), (7, b'{"b":[1,')]),
        (b'{"a":1}{"b":tru', [(0, b'{"a":1}'), (7, b'{"b":tru')]),
        (b'{"a":1}  \n \x00\x00', [(0, b'{"a":1}'), (11, b"\x00\x00")]),
        (b"{{{", [(0, b"{"), (1, b"{"), (2, b"{")]),
        (b"", []),
        (b" \n\t ", []),
        (b'[{"a":1}]', [(0, b"["), (1, b'{"a":1}'), (8, b"]")]),
        (b'{"a":1,}{"b":2}', [(0, b'{"a":1,}'), (8, b'{"b":2}')]),
        (b'{"a":NaN}{"b":2}', [(0, b'{"a":NaN}'), (9, b'{"b":2}')]),
    ],
)
def test_examples(data: bytes, expected: list[tuple[int, bytes]]) -> None:
    assert pieces(data) == [Piece(*piece) for piece in expected]
    assert pieces(data, list(range(1, len(data)))) == [Piece(*piece) for piece in expected]


def test_a_piece_is_at_most_max_bytes() -> None:
    long_record = b'{"a":"' + b"x" * 100 + b'"}'
    data = long_record + b'{"b":1}' + b"z" * 50
    found = pieces(data, max_bytes=40)
    assert_nothing_lost(data, found, 40)
    assert found[0] == Piece(0, long_record[:40])
    assert Piece(len(long_record), b'{"b":1}') in found


def test_a_record_as_long_as_the_limit_is_one_piece() -> None:
    record = b'{"a":"' + b"x" * 92 + b'"}'
    assert len(record) == 100
    assert pieces(record + record, [37, 150], max_bytes=100) == [Piece(0, record), Piece(100, record)]


@pytest.mark.parametrize(
    "hostile",
    [
        b"{" * 100_000,
        b'{"a":' * 50_000,
        b'{"a":[' + b"1," * 200_000,
        b'{"' * 100_000,
        b'{"a":[{"b":"}{' * 20_000,
        b'{"a":1}}' * 50_000,
        b'{"a":"' + b"x" * 3_000_000,
        b" " * 3_000_000 + b'{"a":1}',
    ],
    ids=["braces", "nested", "long array", "quotes", "mixed", "closes", "unterminated string", "spaces"],
)
def test_hostile_input_is_split_to_the_end(hostile: bytes) -> None:
    found = pieces(hostile, list(range(65536, len(hostile), 65536)))
    assert_nothing_lost(hostile, found, 16 * 1024 * 1024)
