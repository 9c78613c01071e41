"""Reading the archive that Kinesis Data Firehose writes to S3 from a Kinesis source, as a stream of
records for the batch path (``user-limits replay s3://BUCKET/PREFIX``).

- Keys: Firehose writes PREFIX + ``YYYY/MM/DD/HH/`` (the UTC hour it delivered the object) + a
  name that sorts by time. Objects are read in key order, which S3 lists (UTF-8 binary order):
  oldest first. A listing out of that order (an S3 directory bucket) is refused.
- ``since``/``until`` select objects by that hour, both bounds included; an object under the
  prefix without an hour in its key is then left out. Without bounds every object under the prefix
  is read.
- Objects: record data written one after another, with no delimiter or with newlines, split by
  :mod:`user_limits.operations.json_splitter`; gunzipped as it is read when the object starts with gzip's
  magic bytes (a ``.gz`` object, or one stored with ``Content-Encoding: gzip``). Each object is
  streamed (GetObject, the body read in chunks); nothing is read whole, so memory stays bounded
  whatever the archive's size.
- Coordinates: an archive keeps no Kinesis coordinates. Each record's partition key is where it
  came from, ``s3://BUCKET/KEY@OFFSET`` (the byte offset in the object's data, after gunzip), so
  that its dead letter says it. Its dead letter is then kept by its bytes, like one from a file.
- Damage: what cannot be split into records (bytes between objects, an object cut short) goes to
  the batch path as records of its own and is dead-lettered there with its offset. A gzip stream
  that is damaged or ends early is reported to ``warn``; the records before the damage are read,
  and the next object follows.

boto3 is imported only when a client is made.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from user_limits.aws import aws_client
from user_limits.errors import UserError
from user_limits.inputs import InputError
from user_limits.operations.json_splitter import split
from user_limits.stream.records import StreamRecord

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

SCHEME = "s3://"
CHUNK_BYTES = 1024 * 1024
LIST_PAGE_SIZE = 1000
GZIP_MAGIC = b"\x1f\x8b"
_GZIP = 16 + zlib.MAX_WBITS  # a gzip header and trailer, not zlib's
# S3's bucket names (general purpose: 3-63 characters) and the legacy ones botocore still accepts.
_BUCKET = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{2,254}")
_MAX_KEY_BYTES = 1024
_HOUR_KEY = re.compile(r"[0-9]{4}/[0-9]{2}/[0-9]{2}/[0-9]{2}/")
_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})(?:T([0-9]{2}))?")

Warn = Callable[[str], None]


class ArchiveError(InputError):
    """An archive that cannot be listed or read; the message names it and says why."""


class ArchiveUrl(NamedTuple):
    bucket: str
    prefix: str

    def __str__(self) -> str:
        return f"{SCHEME}{self.bucket}/{self.prefix}"


class ArchiveObject(NamedTuple):
    key: str
    size: int


def is_archive_url(text: str) -> bool:
    return text[: len(SCHEME)].lower() == SCHEME


def parse_archive_url(text: str) -> ArchiveUrl:
    """``s3://BUCKET/PREFIX`` (the prefix may be empty); UserError naming what is wrong."""
    usage = f"{text!r}: expected s3://BUCKET/PREFIX, e.g. s3://my-bucket/limit-events/"
    if not is_archive_url(text):
        raise UserError(usage)
    bucket, _, prefix = text[len(SCHEME) :].partition("/")
    if not bucket:
        raise UserError(f"{usage} (no bucket)")
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise UserError(f"{usage} ({bucket!r} is not an S3 bucket name)")
    try:
        too_long = len(prefix.encode("utf-8")) > _MAX_KEY_BYTES
    except UnicodeEncodeError:  # bytes of the command line that are not UTF-8
        too_long = True
    if too_long:
        raise UserError(f"{usage} (the prefix is not an S3 key prefix: UTF-8, at most {_MAX_KEY_BYTES} bytes)")
    return ArchiveUrl(bucket, prefix)


def parse_hour(text: str, option: str, last: bool) -> str:
    """A ``--since``/``--until`` date (2026-11-30) or hour (2026-11-30T12), UTC, as the key prefix
    ``YYYY/MM/DD/HH`` of its first hour, or its last when ``last`` (a whole day is included)."""
    match = _DATE.fullmatch(text)
    wrong = UserError(f"{option} {text!r}: expected a UTC date such as 2026-11-30, or an hour such as 2026-11-30T12")
    if match is None:
        raise wrong
    year, month, day, hour = match.groups()
    try:
        when = datetime(int(year), int(month), int(day), int(hour or (23 if last else 0)))
    except ValueError:
        raise wrong from None
    return when.strftime("%Y/%m/%d/%H")


def s3_client(endpoint: str | None = None, region: str | None = None) -> S3Client:
    """An S3 client; UserError (one line) for a bad ``--endpoint`` or ``--region``."""
    # Archive objects are large: more patience per read than the default.
    client: S3Client = aws_client("s3", endpoint, region, max_attempts=5, read_timeout=60)
    return client


class Archive:
    """The objects under an S3 prefix, in key order, and their records.

    ``objects_read`` and ``bytes_read`` (bytes as stored, before gunzip) say how far the reading is.
    """

    def __init__(
        self,
        url: ArchiveUrl,
        client: S3Client,
        since: str | None = None,
        until: str | None = None,
        warn: Warn | None = None,
    ) -> None:
        self.url = url
        self.client = client
        self.since = since
        self.until = until
        self.warn: Warn = warn or (lambda message: None)
        self.objects_read = 0
        self.bytes_read = 0

    def check(self) -> None:
        """ArchiveError unless the archive can be listed and holds an object to read."""
        if next(self.objects(), None) is None:
            between = "".join(
                f" {word} {hour}" for word, hour in (("from", self.since), ("to", self.until)) if hour is not None
            )
            raise ArchiveError(f"{self.url}: no objects{' with keys' + between if between else ''}")

    def objects(self) -> Iterator[ArchiveObject]:
        """The objects to read, in key order, as S3 lists them (a page at a time)."""
        from botocore.exceptions import BotoCoreError, ClientError

        bucket, prefix = self.url
        # Keys sort by their hour only after a prefix that ends at a "/" (or none).
        by_hour = not prefix or prefix.endswith("/")
        arguments: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
        if self.since is not None and by_hour:
            arguments["StartAfter"] = prefix + self.since  # every key of that hour or later sorts after it
        previous = None
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                **arguments, PaginationConfig={"PageSize": LIST_PAGE_SIZE}
            )
            for page in pages:
                for item in page.get("Contents", []):
                    key = item["Key"]
                    if previous is not None and key <= previous:
                        raise ArchiveError(
                            f"{self.url}: S3 lists {key!r} after {previous!r}, not in key order "
                            "(a directory bucket?): the archive cannot be read in order"
                        )
                    previous = key
                    if self.since is None and self.until is None:
                        yield ArchiveObject(key, item["Size"])
                        continue
                    hour = self._hour(key)
                    if hour is None:
                        continue
                    if self.until is not None and hour > self.until:
                        if by_hour:
                            return  # every later key is later still
                        continue
                    if self.since is None or hour >= self.since:
                        yield ArchiveObject(key, item["Size"])
        except ClientError as error:
            raise ArchiveError(f"{self.url}: cannot list the objects: {_client_error(error, bucket)}") from None
        except BotoCoreError as error:  # no credentials, an endpoint that does not answer, ...
            raise ArchiveError(f"{self.url}: cannot list the objects: {error}") from None

    def _hour(self, key: str) -> str | None:
        """The ``YYYY/MM/DD/HH`` a Firehose key starts with after the prefix, if it has one."""
        rest = key[len(self.url.prefix) :]
        if self.url.prefix and not self.url.prefix.endswith("/"):
            rest = rest.removeprefix("/")
        return rest[:13] if _HOUR_KEY.match(rest) else None

    def records(self) -> Iterator[StreamRecord]:
        """Every record of the archive, object after object, as they are read."""
        for item in self.objects():
            yield from self._object(item)
            self.objects_read += 1

    def _object(self, item: ArchiveObject) -> Iterator[StreamRecord]:
        from botocore.exceptions import BotoCoreError, ClientError

        location = f"{SCHEME}{self.url.bucket}/{item.key}"
        try:
            response = self.client.get_object(Bucket=self.url.bucket, Key=item.key)
        except ClientError as error:
            if _error_code(error) == "NoSuchKey":  # deleted since it was listed (a lifecycle rule)
                self.warn(f"{location}: deleted since it was listed; not read")
                return
            raise ArchiveError(f"{location}: cannot read: {_client_error(error, self.url.bucket)}") from None
        except BotoCoreError as error:
            raise ArchiveError(f"{location}: cannot read: {error}") from None
        body = response["Body"]
        try:
            yield from object_records(location, self._chunks(location, body.iter_chunks(CHUNK_BYTES)), self.warn)
        finally:
            body.close()

    def _chunks(self, location: str, chunks: Iterator[bytes]) -> Iterator[bytes]:
        read = 0
        while True:
            try:
                chunk = next(chunks, None)
            except Exception as error:  # whatever the HTTP stack raises mid-body (botocore, urllib3, OSError)
                raise ArchiveError(
                    f"{location}: reading failed after {read} bytes: {type(error).__name__}: {error}"
                ) from None
            if chunk is None:
                return
            read += len(chunk)
            self.bytes_read += len(chunk)
            yield chunk


def object_records(location: str, chunks: Iterable[bytes], warn: Warn) -> Iterator[StreamRecord]:
    """The records of one object's bytes, each with its location (``location@offset``) as its
    partition key."""
    for piece in split(_data(location, chunks, warn)):
        yield StreamRecord(piece.data, partition_key=f"{location}@{piece.offset}")


def _data(location: str, chunks: Iterable[bytes], warn: Warn) -> Iterator[bytes]:
    """The object's record data: its bytes, gunzipped when they start with gzip's magic bytes."""
    rest = iter(chunks)
    head = b""
    for chunk in rest:
        head += chunk
        if len(head) >= len(GZIP_MAGIC):
            break
    if not head.startswith(GZIP_MAGIC):
        if head:
            yield head
        yield from rest
        return
    yield from _gunzipped(location, head, rest, warn)


def _gunzipped(location: str, head: bytes, rest: Iterator[bytes], warn: Warn) -> Iterator[bytes]:
    """The data of the gzip stream in ``head`` and ``rest``, a bounded piece at a time (an object
    may hold several gzip members, one after another, as gzip allows)."""
    decompressor = zlib.decompressobj(_GZIP)
    produced = 0
    compressed = 0  # bytes of the stream given to the decompressor so far
    chunk = head
    while True:
        data = chunk
        while data:
            if decompressor.eof:
                decompressor = zlib.decompressobj(_GZIP)  # the next member
            before = len(data)
            try:
                out = decompressor.decompress(data, CHUNK_BYTES)
            except zlib.error:
                warn(
                    f"{location}: not a valid gzip stream at byte {compressed} (its data read up to "
                    f"offset {produced}); the rest of the object is not read"
                )
                return
            data = decompressor.unused_data if decompressor.eof else decompressor.unconsumed_tail
            compressed += before - len(data)
            if out:
                produced += len(out)
                yield out
        next_chunk = next(rest, None)
        if next_chunk is None:
            break
        chunk = next_chunk
    if not decompressor.eof:
        warn(f"{location}: the gzip stream ends early, at offset {produced} of its data: the object is cut short")


def _error_code(error: Any) -> str:
    code: str = error.response.get("Error", {}).get("Code", "")
    return code


def _client_error(error: Any, bucket: str) -> str:
    code = _error_code(error)
    if code == "NoSuchBucket":
        return f"no bucket {bucket!r}"
    message = error.response.get("Error", {}).get("Message") or str(error)
    return f"{code}: {message}" if code else message
