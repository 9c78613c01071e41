"""Recovering the batches a Kinesis event source mapping gave up on, from its on-failure destination.

- **SQS** (``--queue``): each message names a shard's range (see :mod:`user_limits.operations.invocation_record`);
  its records are read back from the stream (:mod:`user_limits.kinesis.shard_range`), applied through the
  batch path, and the message is deleted only once they are committed.
- **S3** (``--bucket``): each object carries the whole invocation, records included, so it can be
  recovered after the stream's retention too; once its records are committed the object is moved
  (copied, then deleted) to ``recovered/`` + its key, in the same bucket.

Recovering is idempotent: what was committed before is skipped by the sequence guard (rule 3) and a
poison record keeps its dead-letter identity (the stream ARN, shard and sequence number Lambda saw),
so a message or object recovered twice, or whose batch Lambda partly applied, changes nothing more.

Whatever cannot be recovered stays where it is, with one line saying why: a body that is not an
on-failure record, a range aged out of the stream's retention, a store that fails. A message is held
(invisible to other readers) while it is worked on and made visible again at the end of the run
when it is kept; a dry run holds and releases every message, and changes nothing else.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from botocore.exceptions import BotoCoreError, ClientError

from user_limits.aws import aws_client
from user_limits.bootstrap import processor as processor_for
from user_limits.errors import UserError
from user_limits.kinesis.client import kinesis_client
from user_limits.kinesis.records import records_from_get_records
from user_limits.kinesis.shard_range import RangeUnavailable, read_range
from user_limits.operations.invocation_record import (
    BatchInfo,
    MalformedRecord,
    parse_invocation_record,
    payload_records,
)
from user_limits.replay import batches
from user_limits.stores.base import LimitStore
from user_limits.stream.records import Counts, StreamRecord

if TYPE_CHECKING:
    from mypy_boto3_kinesis import KinesisClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import ChangeMessageVisibilityBatchRequestEntryTypeDef

RECOVERED_PREFIX = "recovered/"
# Lambda's invocation payload is at most 6 MB; its JSON text inside the object somewhat more.
MAX_OBJECT_BYTES = 64 * 1024 * 1024
HOLD_SECONDS = 300  # how long a received message stays invisible to other readers while it is recovered
BATCH_RECORDS = 1000
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
# The region in an SQS queue URL's host: sqs.REGION.amazonaws.com[.cn], or the legacy REGION.queue.amazonaws.com.
_QUEUE_REGION = re.compile(r"sqs\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?|([a-z0-9-]+)\.queue\.amazonaws\.com(?:\.cn)?")


@dataclass(frozen=True, slots=True)
class Report:
    """What became of one message or object."""

    name: str  # "message ID" or "object KEY"
    info: BatchInfo | None
    outcome: str  # recovered | kept | aged-out | would-recover
    detail: str = ""
    records: int = 0
    counts: Counts = field(default_factory=Counts)


@dataclass
class Tally:
    messages: int = 0
    recovered: int = 0
    kept: int = 0
    aged_out: int = 0
    records: int = 0
    counts: Counts = field(default_factory=Counts)

    def add(self, report: Report) -> None:
        self.messages += 1
        if report.outcome == "recovered":
            self.recovered += 1
        elif report.outcome in ("kept", "aged-out"):
            self.kept += 1
            self.aged_out += report.outcome == "aged-out"
        self.records += report.records
        self.counts.add(report.counts)


class _Kept(Exception):
    def __init__(self, reason: str, aged_out: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.aged_out = aged_out


@dataclass
class _Applied:
    records: int = 0
    counts: Counts = field(default_factory=Counts)


class Recovery:
    """Recovers messages and objects one at a time into ``store``; with no store, a dry run."""

    def __init__(
        self,
        store: LimitStore | None,
        report: Callable[[Report], None],
        kinesis_endpoint: str | None = None,
        kinesis_factory: Callable[[str | None, str | None], KinesisClient] = kinesis_client,
    ) -> None:
        self.processor = None if store is None else processor_for(store)
        self._report = report
        self._kinesis_endpoint = kinesis_endpoint
        self._kinesis_factory = kinesis_factory
        self._kinesis: dict[str, KinesisClient] = {}
        self.tally = Tally()

    @property
    def dry_run(self) -> bool:
        return self.processor is None

    def emit(self, report: Report) -> None:
        self.tally.add(report)
        self._report(report)

    def from_stream(self, name: str, body: bytes | str) -> Report:
        """An SQS message's batch, read back from the stream and applied (not yet emitted)."""
        try:
            info = parse_invocation_record(body).info
        except MalformedRecord as error:
            return Report(name, None, "kept", f"not the on-failure record of a Kinesis batch: {error}")
        if self.dry_run:
            return Report(name, info, "would-recover", f"would fetch from {info.stream_arn}")
        applied = _Applied()
        try:
            client = self._client(info.region)
            for page in read_range(client, info):
                self._apply(records_from_get_records(page, info.stream_arn, info.shard_id), applied)
        except RangeUnavailable as unavailable:
            outcome = "aged-out" if unavailable.aged_out else "kept"
            return Report(name, info, outcome, unavailable.reason, applied.records, applied.counts)
        except _Kept as kept:
            return Report(name, info, "kept", kept.reason, applied.records, applied.counts)
        return Report(name, info, "recovered", "", applied.records, applied.counts)

    def from_payload(self, name: str, body: bytes) -> Report:
        """An S3 object's records, applied (not yet emitted)."""
        try:
            record = parse_invocation_record(body)
            records = payload_records(record)
        except MalformedRecord as error:
            return Report(name, None, "kept", f"not the on-failure record of a Kinesis batch: {error}")
        info = record.info
        if self.dry_run:
            return Report(name, info, "would-recover", f"would apply the {len(records)} records it holds")
        applied = _Applied()
        try:
            self._apply(records, applied)
        except _Kept as kept:
            return Report(name, info, "kept", kept.reason, applied.records, applied.counts)
        return Report(name, info, "recovered", "", applied.records, applied.counts)

    def _client(self, region: str) -> KinesisClient:
        # The stream's own region, from its ARN: that is where its records are.
        if region not in self._kinesis:
            try:
                self._kinesis[region] = self._kinesis_factory(self._kinesis_endpoint, region)
            except UserError as error:
                raise _Kept(str(error)) from None
        return self._kinesis[region]

    def _apply(self, records: list[StreamRecord], applied: _Applied) -> None:
        assert self.processor is not None
        for batch in batches(records, BATCH_RECORDS):
            result = self.processor.process(batch)
            if result.error is not None:
                committed = applied.records + (result.first_uncommitted or 0)
                raise _Kept(
                    f"the store failed: {type(result.error).__name__}: {result.error} (the first {committed} "
                    "records are committed; recovering again is safe)"
                )
            applied.records += len(batch)
            applied.counts.add(result.counts)


# -- SQS


def recover_queue(recovery: Recovery, sqs: SQSClient, queue_url: str) -> None:
    """Every message visible in the queue, one at a time, each once."""
    seen: set[str] = set()
    held: list[str] = []  # receipt handles of the messages kept, made visible again at the end
    try:
        for message in _messages(sqs, queue_url, seen):
            name = f"message {message['MessageId']}"
            handle = message["ReceiptHandle"]
            report = recovery.from_stream(name, message.get("Body", ""))
            if report.outcome == "recovered":
                try:
                    sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=handle)
                except (ClientError, BotoCoreError) as error:
                    report = replace(report, outcome="kept", detail=f"applied, but not deleted from the queue: {error}")
                    held.append(handle)
            else:
                held.append(handle)
            recovery.emit(report)
    finally:
        _release(sqs, queue_url, held)


def _messages(sqs: SQSClient, queue_url: str, seen: set[str]) -> Iterator[Any]:
    while True:
        try:
            # One at a time: each message is held from when it is received until it is recovered.
            # Long polling (1 s) asks every SQS server, so an empty answer means an empty queue.
            response = sqs.receive_message(
                QueueUrl=queue_url, MaxNumberOfMessages=1, WaitTimeSeconds=1, VisibilityTimeout=HOLD_SECONDS
            )
        except (ClientError, BotoCoreError) as error:
            raise UserError(f"--queue {queue_url}: cannot receive: {error}") from None
        fresh = [message for message in response.get("Messages", []) if message["MessageId"] not in seen]
        if not fresh:
            return  # empty, or only a message seen already (held longer than HOLD_SECONDS)
        for message in fresh:
            seen.add(message["MessageId"])
            yield message


def _release(sqs: SQSClient, queue_url: str, handles: list[str]) -> None:
    """Make kept messages visible again now, not when their hold runs out."""
    for first in range(0, len(handles), 10):
        entries: list[ChangeMessageVisibilityBatchRequestEntryTypeDef] = [
            {"Id": str(n), "ReceiptHandle": handle, "VisibilityTimeout": 0}
            for n, handle in enumerate(handles[first : first + 10])
        ]
        # If this fails they become visible again all the same, once their hold runs out.
        with contextlib.suppress(ClientError, BotoCoreError):
            sqs.change_message_visibility_batch(QueueUrl=queue_url, Entries=entries)


# -- S3


def recover_bucket(recovery: Recovery, s3: S3Client, bucket: str, prefix: str) -> None:
    """Every object under ``prefix`` (except those already under ``recovered/``), in key order."""
    for key in _keys(s3, bucket, prefix):
        name = f"object {key}"
        try:
            body = _read_object(s3, bucket, key)
        except _Kept as kept:
            recovery.emit(Report(name, None, "kept", kept.reason))
            continue
        report = recovery.from_payload(name, body)
        if report.outcome == "recovered":
            target = RECOVERED_PREFIX + key
            try:
                s3.copy_object(Bucket=bucket, Key=target, CopySource={"Bucket": bucket, "Key": key})
                s3.delete_object(Bucket=bucket, Key=key)
            except (ClientError, BotoCoreError) as error:
                report = replace(report, outcome="kept", detail=f"applied, but not moved to {target}: {error}")
            else:
                report = replace(report, detail=f"moved to {target}")
        recovery.emit(report)


def _keys(s3: S3Client, bucket: str, prefix: str) -> Iterator[str]:
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for entry in page.get("Contents", []):
                if not entry["Key"].startswith(RECOVERED_PREFIX):
                    yield entry["Key"]
    except (ClientError, BotoCoreError) as error:
        raise UserError(f"--bucket s3://{bucket}/{prefix}: cannot list: {error}") from None


def _read_object(s3: S3Client, bucket: str, key: str) -> bytes:
    try:
        response = s3.get_object(Bucket=bucket, Key=key)
        size = response.get("ContentLength")
        if size is not None and size > MAX_OBJECT_BYTES:
            raise _Kept(f"{size} bytes: larger than an on-failure record can be ({MAX_OBJECT_BYTES} at most)")
        body = response["Body"].read(MAX_OBJECT_BYTES + 1)
    except (ClientError, BotoCoreError) as error:
        raise _Kept(f"cannot read it: {error}") from None
    if len(body) > MAX_OBJECT_BYTES:
        raise _Kept(f"larger than an on-failure record can be ({MAX_OBJECT_BYTES} bytes at most)")
    return body


# -- arguments and clients


def check_url(option: str, value: str | None, example: str) -> None:
    """UserError unless ``value`` (of ``option``) is None or an http(s) URL with a host and a valid port."""
    if value is None:
        return
    wrong = f"{option} {value!r}: expected an http:// or https:// URL, e.g. {example}"
    if not value or any(char.isspace() or not char.isprintable() for char in value):
        raise UserError(wrong)
    try:
        parts = urlsplit(value)
        port = parts.port  # a port out of 0-65535 or not a number raises
    except ValueError as error:
        raise UserError(f"{wrong} ({error})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or port == 0:
        raise UserError(wrong)


def check_queue_url(queue_url: str) -> None:
    check_url("--queue", queue_url, "https://sqs.eu-west-1.amazonaws.com/123456789012/failed-batches")
    if urlsplit(queue_url).path.strip("/") == "":
        raise UserError(f"--queue {queue_url!r}: a queue URL ends with /ACCOUNT/QUEUE_NAME")


def parse_bucket(url: str) -> tuple[str, str]:
    """``s3://BUCKET/PREFIX`` -> (bucket, prefix); UserError (one line) for anything else."""
    scheme, sep, rest = url.partition("://")
    bucket, _, prefix = rest.partition("/")
    if scheme != "s3" or not sep or not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise UserError(
            f"--bucket {url!r}: expected s3://BUCKET or s3://BUCKET/PREFIX (a bucket name: a-z, 0-9, . and -)"
        )
    if any(not char.isprintable() for char in prefix):
        raise UserError(f"--bucket {url!r}: the prefix holds characters that are not printable")
    return bucket, prefix


def queue_region(queue_url: str) -> str | None:
    """The region an AWS queue URL names, if it names one."""
    host = urlsplit(queue_url).hostname or ""
    match = _QUEUE_REGION.fullmatch(host)
    return None if match is None else match.group(1) or match.group(2)


def sqs_client(endpoint: str | None, region: str | None) -> SQSClient:
    client: SQSClient = aws_client("sqs", endpoint, region)
    return client


def s3_client(endpoint: str | None, region: str | None) -> S3Client:
    client: S3Client = aws_client("s3", endpoint, region)
    return client
