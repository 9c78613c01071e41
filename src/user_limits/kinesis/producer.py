"""Putting records on a Kinesis stream with PutRecords, keeping each partition key's order.

A PutRecords call may fail some entries and not others; only those are retried. So that a retry
never puts a record behind a later one of the same partition key (the projection would skip it as
a late copy), a call never holds two records of one key, and a key's next record is only sent once
the previous one is on the stream.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import msgspec
from botocore.exceptions import BotoCoreError, ClientError

from user_limits.errors import UserError
from user_limits.inputs import InputError, Source, check_readable, open_input
from user_limits.kinesis.client import THROTTLED, error_code, full_jitter, kinesis_client

if TYPE_CHECKING:
    from mypy_boto3_kinesis import KinesisClient

MAX_RECORDS = 500
MAX_REQUEST_BYTES = 5 * 1024 * 1024
MAX_RECORD_BYTES = 1024 * 1024  # data + partition key
# Entries planned at a time: 50 full PutRecords calls, or about 64 MiB.
CHUNK_RECORDS = 50 * MAX_RECORDS
CHUNK_BYTES = 64 * 1024 * 1024


class Entry(NamedTuple):
    data: bytes
    partition_key: str

    @property
    def size(self) -> int:
        return len(self.data) + len(self.partition_key.encode())


@dataclass
class PutCounts:
    put: int = 0
    retried: int = 0
    failed: int = 0


class _Aggregate(msgspec.Struct):
    aggregateId: str


_aggregate = msgspec.json.Decoder(_Aggregate)


def partition_key(data: bytes) -> str:
    """The envelope's aggregateId; a record without one gets a stable hash of its bytes."""
    try:
        key = _aggregate.decode(data).aggregateId
    except (msgspec.DecodeError, msgspec.ValidationError):
        key = ""
    if 0 < len(key) <= 256:
        return key
    return hashlib.sha256(data).hexdigest()


def entries(source: Source) -> Iterator[Entry]:
    """The records of an input as ``replay`` reads them (JSON Lines as a stream), except that a
    Lambda event's records are kept as they are (aggregated ones included) with their own
    partition keys."""
    content = source.content()
    if isinstance(content, dict):
        yield from _lambda_entries(content, source.name)
        return
    for data in content:
        yield Entry(data, partition_key(data))


def read_entries(path: str | Path) -> list[Entry]:
    with open_input(path) as source:
        return list(entries(source))


def _lambda_entries(event: dict[str, Any], name: str) -> list[Entry]:
    records = event["Records"]
    if not isinstance(records, list):
        raise InputError(f"{name}: `Records` is not a list: not a Lambda Kinesis event")
    entries = []
    for number, raw in enumerate(records, 1):
        try:
            kinesis = raw["kinesis"]
            data = base64.b64decode(kinesis["data"], validate=True)
        except (KeyError, TypeError) as error:
            raise InputError(f"{name}: not a Lambda Kinesis event: record {number} lacks {error}") from None
        except (binascii.Error, ValueError):
            raise InputError(f"{name}: record {number}: `data` is not base64") from None
        key = kinesis.get("partitionKey")
        entries.append(Entry(data, key if isinstance(key, str) and key else partition_key(data)))
    return entries


def plan(entries: Sequence[Entry]) -> Iterator[list[Entry]]:
    """PutRecords calls: ≤500 entries, ≤5 MiB, one entry per partition key, each key's order kept.

    Records are sent by rank within their key (every key's first record, then every key's second…),
    in input order within a rank, so calls stay full however often a key repeats.
    """
    rank: dict[str, int] = {}
    ranked = []
    for index, entry in enumerate(entries):
        n = rank.get(entry.partition_key, 0)
        rank[entry.partition_key] = n + 1
        ranked.append((n, index))
    ranked.sort()
    batch: list[Entry] = []
    keys: set[str] = set()
    size = 0
    for _, index in ranked:
        entry = entries[index]
        if batch and (
            len(batch) == MAX_RECORDS or size + entry.size > MAX_REQUEST_BYTES or entry.partition_key in keys
        ):
            yield batch
            batch, keys, size = [], set(), 0
        batch.append(entry)
        keys.add(entry.partition_key)
        size += entry.size
    if batch:
        yield batch


class Producer:
    def __init__(
        self,
        client: KinesisClient,
        stream: str,
        max_attempts: int = 10,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.stream = stream
        self.max_attempts = max_attempts
        self.sleep = sleep
        self.counts = PutCounts()

    def put(self, entries: Sequence[Entry]) -> PutCounts:
        too_big = [entry for entry in entries if entry.size > MAX_RECORD_BYTES]
        self.counts.failed += len(too_big)
        for batch in plan([entry for entry in entries if entry.size <= MAX_RECORD_BYTES]):
            self._put_batch(batch)
        return self.counts

    def _put_batch(self, batch: list[Entry]) -> None:
        pending = batch
        for attempt in range(1, self.max_attempts + 1):
            try:
                response = self.client.put_records(
                    StreamName=self.stream,
                    Records=[{"Data": entry.data, "PartitionKey": entry.partition_key} for entry in pending],
                )
                failed = [
                    entry for entry, result in zip(pending, response["Records"], strict=True) if "ErrorCode" in result
                ]
            except ClientError as error:
                if error_code(error) not in THROTTLED:
                    raise UserError(f"stream {self.stream!r}: {error}") from None
                failed = pending  # the whole call was refused: nothing was put
            except BotoCoreError as error:
                raise UserError(f"cannot reach Kinesis: {error}") from None
            self.counts.put += len(pending) - len(failed)
            if not failed:
                return
            if attempt == self.max_attempts:
                break
            self.counts.retried += len(failed)
            self.sleep(full_jitter(attempt, base=0.1, cap=5.0))
            pending = failed
        self.counts.failed += len(failed)


def chunks(items: Iterator[Entry], size: int | None = None, max_bytes: int = CHUNK_BYTES) -> Iterator[list[Entry]]:
    """Entries in lists of at most ``size`` and about ``max_bytes``: planned and put one after the
    other, so that memory stays bounded and each key's order holds across them."""
    size = size or CHUNK_RECORDS
    chunk: list[Entry] = []
    held = 0
    for entry in items:
        chunk.append(entry)
        held += entry.size
        if len(chunk) == size or held >= max_bytes:
            yield chunk
            chunk, held = [], 0
    if chunk:
        yield chunk


def produce(
    paths: Sequence[str | Path], stream: str, endpoint: str | None = None, region: str | None = None
) -> PutCounts:
    """Put the records of ``paths`` on ``stream``, each file read as it is put (JSON Lines as a
    stream). A malformed line stops it there: what was put before it stays on the stream, and
    putting the file again is safe (the projection skips the copies)."""
    for path in paths:  # a missing or unreadable file stops the run before anything is put
        check_readable(path)
    producer = Producer(kinesis_client(endpoint, region), stream)
    for path in paths:
        with open_input(path) as source:
            before = producer.counts.put
            try:
                for chunk in chunks(entries(source)):
                    producer.put(chunk)
            except InputError as error:
                put = producer.counts.put - before
                done = f"{put} records of it were put before it" if put else "nothing of the file was put"
                raise InputError(f"{error} ({done}; putting the file again is safe)") from None
    return producer.counts
