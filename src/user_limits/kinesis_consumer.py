"""The standalone Kinesis consumer: every shard of a stream into a store.

Each GetRecords response is one batch through :class:`BatchProcessor` (the Lambda handler's path),
with the shard's checkpoint committed in the same transaction as the batch's outcome, so a crash
at any point replays at most the batch in hand, whose effect the store then skips by sequence.

- Start: from the stored checkpoint (AFTER_SEQUENCE_NUMBER), else ``--from`` (trim-horizon or
  latest). A KPL record is never split across batches, so the checkpoint (its last sub-record) is
  always at a record boundary and AFTER_SEQUENCE_NUMBER resumes exactly after it.
- Resharding: a shard starts only once its parents are finished; a closed shard read to its end is
  marked finished by a checkpoint with sub-sequence ``SHARD_END``, committed through the store.
- Sharing: static assignment (``--worker I --workers N``, by shard number). Two consumers that
  overlap on a shard are safe, only wasteful: checkpoints only move forward and every limit write
  is conditional on its stored sequence number.
- Failures: a commit that fails, a throttled call or an expired iterator stops that shard, backs
  off with jitter and re-reads from the stored checkpoint, never from an older position.
"""

from __future__ import annotations

import random
import re
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

import msgspec
from botocore.exceptions import BotoCoreError, ClientError

from user_limits.errors import UserError
from user_limits.replay import processor_for
from user_limits.stores.base import LimitStore
from user_limits.stream.kinesis_event import KPL_MAGIC, expand_aggregate
from user_limits.stream.records import Checkpoint, Counts, Outcome, Snapshot, StreamRecord

if TYPE_CHECKING:
    from mypy_boto3_kinesis import KinesisClient
    from mypy_boto3_kinesis.type_defs import RecordTypeDef, ShardTypeDef

# Sub-sequence of the checkpoint that marks a shard finished. KPL sub-sequence numbers are small, and
# kinesis-local reports EndingSequenceNumber as 2**63-1, below its real sequence numbers, so the
# marker sits just above the last record applied instead of relying on EndingSequenceNumber.
SHARD_END = 2**31 - 1
THROTTLED = {"ProvisionedThroughputExceededException", "LimitExceededException", "ThrottlingException"}
START_POSITIONS = {"trim-horizon": "TRIM_HORIZON", "latest": "LATEST"}

_encode = msgspec.json.Encoder().encode


# A region is a label of the endpoint's host name (kinesis.REGION.amazonaws.com).
_REGION = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def check_endpoint(endpoint: str | None) -> None:
    """UserError unless ``endpoint`` (``--endpoint``) is an http(s) URL with a host and a valid port."""
    if endpoint is None:
        return
    wrong = f"--endpoint {endpoint!r}: expected an http:// or https:// URL, e.g. http://127.0.0.1:4568"
    if not endpoint or any(char.isspace() or not char.isprintable() for char in endpoint):
        raise UserError(wrong)
    try:
        parts = urlsplit(endpoint)
        port = parts.port  # a port out of 0-65535 or not a number raises
    except ValueError as error:  # also a broken IPv6 address: http://[::1
        raise UserError(f"{wrong} ({error})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or port == 0:
        raise UserError(wrong)


def check_region(region: str | None, source: str = "--region") -> None:
    """UserError unless ``region`` is None or a region name such as eu-west-1."""
    if region is not None and not _REGION.fullmatch(region):
        raise UserError(f"{source} {region!r}: not an AWS region name, such as eu-west-1")


def kinesis_client(endpoint: str | None = None, region: str | None = None) -> KinesisClient:
    """A Kinesis client; UserError (one line) for a bad ``--endpoint`` or ``--region``, checked
    here rather than left to botocore, whose errors for them are tracebacks."""
    check_endpoint(endpoint)
    check_region(region)
    import boto3
    from botocore.config import Config

    # Botocore retries network errors a few times; throttling is backed off here, per shard.
    config = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=30)
    try:
        session = boto3.session.Session()
        if region is None:
            region = session.region_name or "us-east-1"
            check_region(region, "the configured AWS region (AWS_REGION, AWS_DEFAULT_REGION or ~/.aws/config)")
        return session.client("kinesis", endpoint_url=endpoint, region_name=region, config=config)
    except (BotoCoreError, ValueError) as error:
        # Whatever else the configuration holds that botocore refuses (say, a bad AWS_ENDPOINT_URL).
        raise UserError(f"cannot set up the Kinesis client: {error}") from None


def log_line(event: str, **fields: object) -> None:
    """One structured log line on stderr."""
    line = {"time": datetime.now(UTC).isoformat(timespec="milliseconds"), "event": event, **fields}
    sys.stderr.write(_encode(line).decode() + "\n")
    sys.stderr.flush()


def shard_number(shard_id: str) -> int:
    """``shardId-000000000007`` -> 7; any other id gets a stable hash."""
    digits = shard_id.rpartition("-")[2]
    return int(digits) if digits.isdigit() else zlib.crc32(shard_id.encode())


def is_finished(checkpoint: Checkpoint | None) -> bool:
    return checkpoint is not None and checkpoint.sub_sequence_number == SHARD_END


def stream_records(records: Iterable[RecordTypeDef], stream_arn: str | None, shard_id: str) -> list[StreamRecord]:
    """GetRecords records as StreamRecords with their Kinesis coordinates, KPL records expanded
    (an aggregate that cannot be read stays whole, to be dead-lettered)."""
    out: list[StreamRecord] = []
    for record in records:
        data = record["Data"]
        sequence_number = record["SequenceNumber"]
        partition_key = record["PartitionKey"]
        arrival = record.get("ApproximateArrivalTimestamp")
        arrival_ms = None if arrival is None else int(arrival.timestamp() * 1000)
        whole = StreamRecord(data, sequence_number, None, partition_key, arrival_ms, stream_arn, shard_id)
        if data.startswith(KPL_MAGIC):
            out.extend(expand_aggregate(whole))
        else:
            out.append(whole)
    return out


@dataclass
class ConsumerOptions:
    stream: str
    start: str = "trim-horizon"
    batch_size: int = 1000
    poll_interval: float = 1.0
    stop_when_idle: float | None = None
    worker: int = 0
    workers: int = 1
    shard_refresh: float = 10.0
    log_interval: float = 10.0

    def __post_init__(self) -> None:
        if self.start not in START_POSITIONS:
            raise UserError(f"--from {self.start!r}: use trim-horizon or latest")
        if not 0 <= self.worker < self.workers:
            raise UserError(f"--worker {self.worker} --workers {self.workers}: need 0 <= worker < workers")
        if not 1 <= self.batch_size <= 10_000:
            raise UserError(f"--batch-size {self.batch_size}: GetRecords takes 1 to 10000")


@dataclass
class ShardReader:
    shard_id: str
    has_parent: bool
    iterator: str | None = None
    not_before: float = 0.0
    failures: int = 0
    behind_ms: int | None = None
    caught_up: bool = False
    # Where to re-read a failed batch from when the shard has no checkpoint yet.
    retry_at: str | None = None


@dataclass
class Progress:
    records: int = 0
    counts: Counts = field(default_factory=Counts)


class Consumer:
    def __init__(
        self,
        client: KinesisClient,
        store: LimitStore,
        options: ConsumerOptions,
        log: Callable[..., None] = log_line,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.store = store
        self.options = options
        self.log = log
        self.clock = clock
        self.processor = processor_for(store)
        self.readers: dict[str, ShardReader] = {}
        self.finished: set[str] = set()
        self.progress = Progress()
        self._stop = threading.Event()
        self.stream_arn: str | None = None
        self.listed = False  # a consumer that could not list the shards yet is not idle

    def stop(self) -> None:
        """Stop after the batch in hand (safe from a signal handler)."""
        self._stop.set()

    # -- the loop

    def run(self) -> Progress:
        options = self.options
        self.stream_arn = self._describe()
        self.log("started", stream=options.stream, worker=options.worker, workers=options.workers)
        next_refresh = 0.0
        last_activity = self.clock()
        next_log = self.clock() + options.log_interval
        logged = (self.clock(), 0)
        while not self._stop.is_set():
            now = self.clock()
            if now >= next_refresh:
                if self._refresh_shards():
                    last_activity = now
                next_refresh = now + options.shard_refresh
            for reader in [r for r in self.readers.values() if r.not_before <= now]:
                if self._stop.is_set():
                    break
                if self._poll(reader):
                    last_activity = self.clock()
                if reader.shard_id in self.finished:
                    next_refresh = 0.0  # its children may start now
            now = self.clock()
            if now >= next_log:
                logged = self._log_progress(logged)
                next_log = now + options.log_interval
            if (
                options.stop_when_idle is not None
                and self.listed
                and now - last_activity >= options.stop_when_idle
                and all(reader.caught_up for reader in self.readers.values())
            ):
                self.log("idle", seconds=options.stop_when_idle)
                break
            wake = min([r.not_before for r in self.readers.values()] + [next_refresh, next_log])
            if wake > now:
                self._stop.wait(wake - now)
        self._log_progress(logged)
        self.log("stopped", records=self.progress.records, **self.progress.counts.as_json())
        return self.progress

    def _log_progress(self, since: tuple[float, int]) -> tuple[float, int]:
        now, records = self.clock(), self.progress.records
        elapsed = max(now - since[0], 1e-9)
        self.log(
            "progress",
            records=records,
            recordsPerSecond=round((records - since[1]) / elapsed, 1),
            **self.progress.counts.as_json(),
            millisBehindLatest={r.shard_id: r.behind_ms for r in self.readers.values()},
        )
        return now, records

    # -- shards

    def _describe(self) -> str | None:
        try:
            summary = self.client.describe_stream_summary(StreamName=self.options.stream)
        except ClientError as error:
            raise UserError(f"stream {self.options.stream!r}: {error}") from None
        except BotoCoreError as error:
            raise UserError(f"cannot reach Kinesis: {error}") from None
        return summary["StreamDescriptionSummary"]["StreamARN"]

    def list_shards(self) -> list[ShardTypeDef]:
        # boto3's ListShards paginator resends StreamName with NextToken, which ListShards rejects.
        response = self.client.list_shards(StreamName=self.options.stream)
        shards = list(response["Shards"])
        while token := response.get("NextToken"):
            response = self.client.list_shards(NextToken=token)
            shards.extend(response["Shards"])
        return shards

    def _refresh_shards(self) -> bool:
        """Start the shards this worker owns whose parents are finished; True if any started."""
        try:
            shards = self.list_shards()
        except (ClientError, BotoCoreError) as error:
            self.log("list-shards-failed", error=str(error))
            return False
        self.listed = True
        listed = {shard["ShardId"] for shard in shards}
        started = False
        for shard in shards:
            shard_id = shard["ShardId"]
            if shard_id in self.readers or shard_id in self.finished or not self._owns(shard_id):
                continue
            if is_finished(self.store.checkpoint(self.options.stream, shard_id)):
                self.finished.add(shard_id)
                continue
            # Parents gone past the retention period are as good as finished.
            parents = [p for p in (shard.get("ParentShardId"), shard.get("AdjacentParentShardId")) if p in listed]
            if not all(p in self.finished or self._parent_finished(p) for p in parents):
                continue
            self.readers[shard_id] = ShardReader(shard_id, has_parent=bool(parents))
            self.log("shard-started", shard=shard_id)
            started = True
        return started

    def _owns(self, shard_id: str) -> bool:
        return shard_number(shard_id) % self.options.workers == self.options.worker

    def _parent_finished(self, shard_id: str) -> bool:
        if is_finished(self.store.checkpoint(self.options.stream, shard_id)):
            if self._owns(shard_id):
                self.finished.add(shard_id)
            return True
        return False

    def _iterator(self, reader: ShardReader) -> str:
        """A fresh iterator just after the stored checkpoint (or at the start position)."""
        args: dict[str, Any] = {"StreamName": self.options.stream, "ShardId": reader.shard_id}
        checkpoint = self.store.checkpoint(self.options.stream, reader.shard_id)
        if checkpoint is not None:
            args.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=checkpoint.sequence_number)
        elif reader.retry_at is not None:
            args.update(ShardIteratorType="AT_SEQUENCE_NUMBER", StartingSequenceNumber=reader.retry_at)
        elif reader.has_parent:
            args.update(ShardIteratorType="TRIM_HORIZON")  # a child holds only what came after its parents
        else:
            args.update(ShardIteratorType=START_POSITIONS[self.options.start])
        return self.client.get_shard_iterator(**args)["ShardIterator"]

    def _back_off(self, reader: ShardReader, reason: str, **fields: object) -> None:
        """Full jitter, so consumers throttled together do not come back together."""
        reader.failures += 1
        delay = random.uniform(0, min(10.0, 0.2 * 2**reader.failures))
        reader.not_before = self.clock() + delay
        reader.iterator = None  # re-read from the stored checkpoint
        self.log(reason, shard=reader.shard_id, retryInSeconds=round(delay, 3), attempt=reader.failures, **fields)

    def _poll(self, reader: ShardReader) -> bool:
        """One GetRecords and its batch; True if records were applied or the shard finished."""
        try:
            if reader.iterator is None:
                reader.iterator = self._iterator(reader)
            response = self.client.get_records(ShardIterator=reader.iterator, Limit=self.options.batch_size)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code == "ExpiredIteratorException":
                reader.iterator = None
                self.log("iterator-expired", shard=reader.shard_id)
            elif code == "ResourceNotFoundException":
                raise UserError(f"stream {self.options.stream!r}: {error}") from None
            else:
                self._back_off(reader, "throttled" if code in THROTTLED else "get-records-failed", error=str(error))
            return False
        except BotoCoreError as error:
            self._back_off(reader, "get-records-failed", error=str(error))
            return False
        reader.behind_ms = response.get("MillisBehindLatest")
        records = stream_records(response["Records"], self.stream_arn, reader.shard_id)
        if records:
            last = records[-1]
            assert last.sequence_number is not None
            checkpoint = Checkpoint(
                self.options.stream, reader.shard_id, last.sequence_number, last.sub_sequence_number or 0
            )
            result = self.processor.process(records, checkpoint=checkpoint)
            if result.error is not None:
                if self.store.checkpoint(self.options.stream, reader.shard_id) is None:
                    reader.retry_at = records[0].sequence_number
                self._back_off(
                    reader, "commit-failed", error=f"{type(result.error).__name__}: {result.error}",
                    firstFailed=result.first_failed,
                )  # fmt: skip
                return False
            self.progress.records += len(records)
            self.progress.counts.add(result.counts)
        reader.failures = 0
        reader.retry_at = None
        # Absent once a closed shard is read to its end (the stubs type it as always present).
        next_iterator = cast("str | None", response.get("NextShardIterator"))
        if next_iterator is None:
            return self._finish(reader)
        reader.iterator = next_iterator
        reader.caught_up = not records and not reader.behind_ms
        if reader.caught_up:
            reader.not_before = self.clock() + self.options.poll_interval
        return bool(records)

    def _finish(self, reader: ShardReader) -> bool:
        """The shard is closed and read to its end: mark it finished so its children may start."""
        stored = self.store.checkpoint(self.options.stream, reader.shard_id)
        last = stored.sequence_number if stored is not None else "0"
        marker = Checkpoint(self.options.stream, reader.shard_id, last, SHARD_END)

        def only_checkpoint(snapshot: Snapshot[Any]) -> Outcome[Any]:
            return Outcome(checkpoint=marker)

        try:
            self.store.apply_batch({}, only_checkpoint)
        except Exception as error:
            self._back_off(reader, "commit-failed", error=f"{type(error).__name__}: {error}")
            return False
        del self.readers[reader.shard_id]
        self.finished.add(reader.shard_id)
        self.log("shard-finished", shard=reader.shard_id)
        return True


def consume(
    store: LimitStore,
    options: ConsumerOptions,
    endpoint: str | None = None,
    region: str | None = None,
    on_consumer: Callable[[Consumer], None] | None = None,
) -> Progress:
    consumer = Consumer(kinesis_client(endpoint, region), store, options)
    if on_consumer is not None:
        on_consumer(consumer)
    return consumer.run()


__all__ = ["SHARD_END", "Consumer", "ConsumerOptions", "Progress", "consume", "is_finished", "stream_records"]
