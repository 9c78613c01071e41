"""Reading one archive object's bytes (plain, newline-delimited, gzip in one or several members,
damaged), and the archive URL and --since/--until forms. No S3 here: test_archive_replay.py runs
the command against moto's S3."""

from __future__ import annotations

import gzip
import hashlib
import zlib
from collections.abc import Iterator

import pytest

from user_limits.errors import UserError
from user_limits.operations.archive import (
    CHUNK_BYTES,
    ArchiveUrl,
    _data,
    object_records,
    parse_archive_url,
    parse_hour,
)
from user_limits.stream.records import StreamRecord

LOCATION = "s3://bucket/limit-events/2026/11/30/12/stream-1-2026-11-30-12-00-00-abc"
RECORDS = [b'{"a":1}', b'{"b":"}{"}', b'{"c":[1,2,{"d":null}]}']


def chunks(data: bytes, size: int) -> Iterator[bytes]:
    return (data[n : n + size] for n in range(0, len(data), size))


def read(data: bytes, size: int = 7) -> tuple[list[StreamRecord], list[str]]:
    warnings: list[str] = []
    return list(object_records(LOCATION, chunks(data, size), warnings.append)), warnings


def located(records: list[StreamRecord]) -> list[tuple[str | None, bytes]]:
    return [(record.partition_key, record.data) for record in records]


@pytest.mark.parametrize("size", [1, 2, 5, 1000])
@pytest.mark.parametrize(
    "form",
    ["concatenated", "newline-delimited", "gzip", "gzip members", "gzip members in one"],
)
def test_every_form_gives_the_records_with_their_offsets(form: str, size: int) -> None:
    plain = b"".join(RECORDS) if form != "newline-delimited" else b"\n".join(RECORDS) + b"\n"
    if form == "gzip":
        data = gzip.compress(b"".join(RECORDS))
    elif form.startswith("gzip members"):
        # Several gzip members one after another, as `cat a.gz b.gz` makes: one stream of data.
        data = b"".join(gzip.compress(record) for record in RECORDS)
    else:
        data = plain
    records, warnings = read(data, size)
    offsets = [0, 7, 17] if form != "newline-delimited" else [0, 8, 19]
    assert located(records) == [(f"{LOCATION}@{at}", record) for at, record in zip(offsets, RECORDS, strict=True)]
    assert all(record.sequence_number is None and record.shard_id is None for record in records)
    assert warnings == []


def test_garbage_and_a_record_cut_short_are_records_of_their_own_with_their_offsets() -> None:
    data = RECORDS[0] + b"garbage" + RECORDS[1] + b'{"e":"cut'
    records, warnings = read(data)
    assert located(records) == [
        (f"{LOCATION}@0", RECORDS[0]),
        (f"{LOCATION}@7", b"garbage"),
        (f"{LOCATION}@14", RECORDS[1]),
        (f"{LOCATION}@24", b'{"e":"cut'),
    ]
    assert warnings == []


def test_a_gzip_stream_that_ends_early_keeps_the_records_before_and_the_cut_one() -> None:
    whole = gzip.compress(b"".join(RECORDS) * 200)
    records, warnings = read(whole[: len(whole) // 2], 100)
    assert records[:-1] == read(gzip.compress(b"".join(RECORDS) * 200))[0][: len(records) - 1]
    assert len(warnings) == 1
    assert warnings[0].startswith(f"{LOCATION}: the gzip stream ends early, at offset ")
    produced = int(warnings[0].split("at offset ")[1].split(" ")[0])
    last = records[-1]
    assert last.partition_key is not None
    offset = int(last.partition_key.rpartition("@")[2])
    assert offset + len(last.data) <= produced


def test_a_gzip_stream_cut_between_records_is_a_warning_and_no_record_is_lost() -> None:
    records, warnings = read(gzip.compress(b"".join(RECORDS))[:-8], 5)  # without its trailer
    assert [record.data for record in records] == RECORDS
    assert warnings == [f"{LOCATION}: the gzip stream ends early, at offset 39 of its data: the object is cut short"]


def test_a_damaged_gzip_stream_stops_the_object_with_a_warning() -> None:
    many = [b'{"n":%d,"h":"%s"}' % (n, hashlib.sha256(b"%d" % n).hexdigest().encode()) for n in range(3000)]
    whole = bytearray(gzip.compress(b"".join(many)))
    whole[len(whole) // 2 : len(whole) // 2 + 64] = b"\xff" * 64
    records, warnings = read(bytes(whole), 4096)
    assert len(warnings) == 1 and warnings[0].startswith(f"{LOCATION}: not a valid gzip stream at byte ")
    # What zlib gave before it stopped is read: the records up to the damage (about half), then
    # whatever it made of the damaged bytes, as records of their own.
    assert [record.data for record in records[:1000]] == many[:1000]
    assert len(records) < len(many)


def test_bytes_after_a_gzip_stream_are_a_damage_not_records() -> None:
    records, warnings = read(gzip.compress(RECORDS[0]) + b"trailing bytes", 3)
    assert located(records) == [(f"{LOCATION}@0", RECORDS[0])]
    assert len(warnings) == 1 and "not a valid gzip stream" in warnings[0]


def test_an_object_that_is_not_gzip_is_read_as_it_is_whatever_its_name() -> None:
    records, warnings = read(b"\x1f not gzip, one byte of the magic", 1)
    assert [record.data for record in records] == [b"\x1f not gzip, one byte of the magic"]
    assert warnings == []


def test_empty_objects_have_no_records() -> None:
    assert read(b"") == ([], [])
    assert read(gzip.compress(b"")) == ([], [])


def test_gunzip_works_a_bounded_piece_at_a_time() -> None:
    # 64 MiB of data in 64 KiB of gzip: never held whole.
    bomb = zlib.compressobj(9, zlib.DEFLATED, 31)
    compressed = b"".join(bomb.compress(b" " * (1024 * 1024)) for _ in range(64)) + bomb.flush()
    sizes = [len(piece) for piece in _data(LOCATION, chunks(compressed, 65536), lambda message: None)]
    assert sum(sizes) == 64 * 1024 * 1024
    assert max(sizes) <= CHUNK_BYTES


@pytest.mark.parametrize(
    ("text", "url"),
    [
        ("s3://bucket/limit-events/", ArchiveUrl("bucket", "limit-events/")),
        ("s3://bucket", ArchiveUrl("bucket", "")),
        ("s3://bucket/", ArchiveUrl("bucket", "")),
        ("S3://my.bucket-1/a b?c#d", ArchiveUrl("my.bucket-1", "a b?c#d")),  # a key may hold ? and #
    ],
)
def test_archive_urls(text: str, url: ArchiveUrl) -> None:
    assert parse_archive_url(text) == url


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("s3://", "no bucket"),
        ("s3:///prefix", "no bucket"),
        ("s3://ab/x", "not an S3 bucket name"),
        ("s3://bad_bucket!/x", "not an S3 bucket name"),
        ("s3://a..b/x", "not an S3 bucket name"),
        ("s3://bucket:9000/x", "not an S3 bucket name"),
        ("s3://user@bucket/x", "not an S3 bucket name"),
        ("s3://bucket/" + "k" * 1025, "not an S3 key prefix"),
        ("s3://bucket/\udcff", "not an S3 key prefix"),
        ("http://bucket/x", "expected s3://BUCKET/PREFIX"),
    ],
)
def test_bad_archive_urls(text: str, says: str) -> None:
    with pytest.raises(UserError, match=says):
        parse_archive_url(text)


@pytest.mark.parametrize(
    ("text", "first", "last"),
    [
        ("2026-11-30", "2026/11/30/00", "2026/11/30/23"),
        ("2026-11-30T12", "2026/11/30/12", "2026/11/30/12"),
        ("2024-02-29T00", "2024/02/29/00", "2024/02/29/00"),
    ],
)
def test_since_and_until_forms(text: str, first: str, last: str) -> None:
    assert parse_hour(text, "--since", last=False) == first
    assert parse_hour(text, "--until", last=True) == last


@pytest.mark.parametrize(
    "text",
    ["", "yesterday", "2026-13-01", "2026-11-31", "2025-02-29", "2026-11-30T24", "2026-11-30T12:00", "2026-1-30"],
)
def test_bad_since_and_until(text: str) -> None:
    with pytest.raises(UserError, match=r"--since .*expected a UTC date such as 2026-11-30"):
        parse_hour(text, "--since", last=False)
