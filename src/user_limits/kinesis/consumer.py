"""The standalone Kinesis consumer: every shard of a stream into a store.

Each GetRecords response is one batch through the batch processor (the Lambda handler's path),
with the shard's checkpoint committed in the same transaction as the batch's outcome, so a crash
at any point replays at most the batch in hand, whose effect the store then skips by sequence.

Split along the seam the Kinesis Client Library draws:

- :class:`Consumer`, the loop: lists the shards, starts those :func:`~user_limits.kinesis.shards.plan`
  says, polls each reader when due, reports, stops when idle or told to. It knows no payloads.
- :class:`ShardReader`, one per shard: its iterator, GetRecords, backoff; it hands each response's
  records to the :class:`RecordProcessor` with the checkpoint of the last one, and checkpoints the
  end of a closed shard through :meth:`RecordProcessor.commit_checkpoint`.

- Start: from the stored checkpoint (AFTER_SEQUENCE_NUMBER), else the initial position
  (TRIM_HORIZON or LATEST). A KPL record is never split across batches, so the checkpoint (its last
  sub-record) is always at a record boundary and AFTER_SEQUENCE_NUMBER resumes exactly after it.
- Resharding: a shard starts only once its parents are finished; a closed shard read to its end is
  marked finished by a checkpoint with sub-sequence ``SHARD_END``, committed through the store.
- Sharing: static assignment (worker I of N, by shard number), or leases in the store
  (:mod:`.fleet`): the loop reads the shards whose leases it holds, each checkpoint carries the
  lease's guard, and a commit refused as :class:`LeaseLost` drops the shard, never retried. Two
  consumers that overlap on a shard are safe, only wasteful: checkpoints only move forward and
  every limit write is conditional on its stored sequence number.
- Failures: a commit that fails, a throttled call or an expired iterator stops that shard, backs
  off with jitter and re-reads from the stored checkpoint, never from an older position.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, cast

import msgspec
from botocore.exceptions import BotoCoreError, ClientError

from user_limits.errors import UserError
from user_limits.kinesis.client import THROTTLED, error_code, full_jitter
from user_limits.kinesis.fleet import LeaseKeeper, LeaseObserver, LeaseOptions
from user_limits.kinesis.leases import LeaseTable
from user_limits.kinesis.records import records_from_get_records
from user_limits.kinesis.shards import Assignment, Shard, end_of_shard, is_finished, plan
from user_limits.stream.batch import BatchResult
from user_limits.stream.records import Checkpoint, Counts, LeaseGuard, LeaseLost, StreamRecord

if TYPE_CHECKING:
    from mypy_boto3_kinesis import KinesisClient

INITIAL_POSITIONS = ("TRIM_HORIZON", "LATEST")

_encode = msgspec.json.Encoder().encode


class RecordProcessor(Protocol):
    """What a reader hands its records to (the shared batch processor)."""

    def process(self, records: Sequence[StreamRecord], checkpoint: Checkpoint | None = None) -> BatchResult: ...

    def commit_checkpoint(self, checkpoint: Checkpoint) -> None: ...


class Checkpoints(Protocol):
    """Where a reader finds a shard's stored checkpoint (the store)."""

    def checkpoint(self, stream: str, shard_id: str) -> Checkpoint | None: ...


def log_line(event: str, **fields: object) -> None:
    """One structured log line on stderr."""
    line = {"time": datetime.now(UTC).isoformat(timespec="milliseconds"), "event": event, **fields}
    sys.stderr.write(_encode(line).decode() + "\n")
    sys.stderr.flush()


@dataclass(frozen=True)
class ConsumerOptions:
    stream: str
    # Where a shard without a checkpoint starts: TRIM_HORIZON or LATEST.
    initial_position: str = "TRIM_HORIZON"
    # GetRecords' Limit: the most records one batch holds.
    max_records: int = 1000
    # Seconds between reads of a shard that is caught up.
    idle_time_between_reads: float = 1.0
    # Stop once every shard has been caught up this many seconds; None: run until stopped.
    stop_after_idle: float | None = None
    assignment: Assignment = field(default_factory=Assignment)
    # Seconds between shard listings (resharding).
    shard_sync_interval: float = 10.0
    # Seconds between report lines.
    report_interval: float = 10.0
    # Shards shared by leases in the store instead of the static assignment.
    lease: LeaseOptions | None = None

    def __post_init__(self) -> None:
        if self.initial_position not in INITIAL_POSITIONS:
            raise ValueError(f"initial position {self.initial_position!r}: expected one of {INITIAL_POSITIONS}")
        if not 0 <= self.assignment.worker < self.assignment.workers:
            raise ValueError(f"worker {self.assignment.worker} of {self.assignment.workers}")
        if not 1 <= self.max_records <= 10_000:
            raise ValueError(f"max_records {self.max_records}: GetRecords takes 1 to 10000")


@dataclass
class Tally:
    """What a consumer has applied so far: records read and the counts the store committed."""

    records: int = 0
    counts: Counts = field(default_factory=Counts)

    def add(self, records: int, counts: Counts) -> None:
        self.records += records
        self.counts.add(counts)


class ShardReader:
    """Reads one shard: GetRecords, one batch per response, backoff on failures.

    The client, the processor, the checkpoints, the options, the log and the clock are its
    consumer's; what it keeps of its own is where it is in the shard.
    """

    def __init__(self, shard_id: str, has_parent: bool, consumer: Consumer) -> None:
        self.shard_id = shard_id
        self.has_parent = has_parent
        self.consumer = consumer
        self.iterator: str | None = None
        self.not_before = 0.0
        self.failures = 0
        self.behind_ms: int | None = None
        self.caught_up = False
        self.finished = False
        # Where to re-read a failed batch from when the shard has no checkpoint yet.
        self.retry_at: str | None = None
        # The lease every checkpoint of this shard is conditional on (in a fleet).
        self.guard: LeaseGuard | None = None
        # The store refused a commit: the lease is another consumer's now.
        self.lost = False

    def _stored(self) -> Checkpoint | None:
        return self.consumer.checkpoints.checkpoint(self.consumer.options.stream, self.shard_id)

    def _iterator(self) -> str:
        """A fresh iterator just after the stored checkpoint (or at the initial position)."""
        options = self.consumer.options
        args: dict[str, Any] = {"StreamName": options.stream, "ShardId": self.shard_id}
        checkpoint = self._stored()
        if checkpoint is not None:
            args.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=checkpoint.sequence_number)
        elif self.retry_at is not None:
            args.update(ShardIteratorType="AT_SEQUENCE_NUMBER", StartingSequenceNumber=self.retry_at)
        elif self.has_parent:
            args.update(ShardIteratorType="TRIM_HORIZON")  # a child holds only what came after its parents
        else:
            args.update(ShardIteratorType=options.initial_position)
        return self.consumer.client.get_shard_iterator(**args)["ShardIterator"]

    def _back_off(self, reason: str, **fields: object) -> None:
        """Full jitter, so consumers throttled together do not come back together."""
        self.failures += 1
        delay = full_jitter(self.failures, base=0.2, cap=10.0)
        self.not_before = self.consumer.clock() + delay
        self.iterator = None  # re-read from the stored checkpoint
        self.consumer.log(reason, shard=self.shard_id, retryInSeconds=round(delay, 3), attempt=self.failures, **fields)

    def poll(self) -> bool:
        """One GetRecords and its batch; True if records were applied or the shard finished."""
        consumer = self.consumer
        options = consumer.options
        try:
            if self.iterator is None:
                self.iterator = self._iterator()
            response = consumer.client.get_records(ShardIterator=self.iterator, Limit=options.max_records)
        except ClientError as error:
            code = error_code(error)
            if code == "ExpiredIteratorException":
                self.iterator = None
                consumer.log("iterator-expired", shard=self.shard_id)
            elif code == "ResourceNotFoundException":
                raise UserError(f"stream {options.stream!r}: {error}") from None
            else:
                self._back_off("throttled" if code in THROTTLED else "get-records-failed", error=str(error))
            return False
        except BotoCoreError as error:
            self._back_off("get-records-failed", error=str(error))
            return False
        self.behind_ms = response.get("MillisBehindLatest")
        records = records_from_get_records(response["Records"], consumer.stream_arn, self.shard_id)
        if records:
            last = records[-1]
            assert last.sequence_number is not None
            checkpoint = Checkpoint(
                options.stream, self.shard_id, last.sequence_number, last.sub_sequence_number or 0, self.guard
            )
            result = consumer.processor.process(records, checkpoint=checkpoint)
            if isinstance(result.error, LeaseLost):
                return self._lose()
            if result.error is not None:
                if self._stored() is None:
                    self.retry_at = records[0].sequence_number
                self._back_off(
                    "commit-failed", error=f"{type(result.error).__name__}: {result.error}",
                    firstFailed=result.first_uncommitted,
                )  # fmt: skip
                return False
            consumer.tally.add(len(records), result.counts)
        self.failures = 0
        self.retry_at = None
        # Absent once a closed shard is read to its end (the stubs type it as always present).
        next_iterator = cast("str | None", response.get("NextShardIterator"))
        if next_iterator is None:
            return self._finish()
        self.iterator = next_iterator
        self.caught_up = not records and not self.behind_ms
        if self.caught_up:
            self.not_before = consumer.clock() + options.idle_time_between_reads
        return bool(records)

    def _lose(self) -> bool:
        """The lease is gone (the store refused the commit): stop reading, and never retry."""
        self.lost = True
        self.iterator = None
        self.consumer.log("checkpoint-refused", shard=self.shard_id, consumer=self.guard.holder if self.guard else None)
        return False

    def _finish(self) -> bool:
        """The shard is closed and read to its end: checkpoint its end so its children may start."""
        try:
            end = end_of_shard(self.consumer.options.stream, self.shard_id, self._stored())
            self.consumer.processor.commit_checkpoint(end._replace(lease=self.guard))
        except LeaseLost:
            return self._lose()
        except Exception as error:
            self._back_off("commit-failed", error=f"{type(error).__name__}: {error}")
            return False
        self.finished = True
        self.consumer.log("shard-finished", shard=self.shard_id)
        return True


class Consumer:
    """The loop: shard listing and planning, the readers' schedule, reports, stopping."""

    def __init__(
        self,
        client: KinesisClient,
        processor: RecordProcessor,
        checkpoints: Checkpoints,
        options: ConsumerOptions,
        log: Callable[..., None] = log_line,
        clock: Callable[[], float] = time.monotonic,
        leases: LeaseTable | None = None,
        lease_observer: LeaseObserver | None = None,
    ) -> None:
        self.client = client
        self.processor = processor
        self.checkpoints = checkpoints
        self.options = options
        self.log = log
        self.clock = clock
        self.readers: dict[str, ShardReader] = {}
        self.finished: set[str] = set()
        self.tally = Tally()
        self._stop = threading.Event()
        self.stream_arn: str | None = None
        self.listed = False  # a consumer that could not list the shards yet is not idle
        self.keeper: LeaseKeeper | None = None
        if options.lease is not None:
            if leases is None:
                raise ValueError("a consumer with leases needs a lease table")
            self.keeper = LeaseKeeper(
                leases, checkpoints.checkpoint, self.list_shards, options.stream, options.lease,
                options.shard_sync_interval, log, lease_observer,
            )  # fmt: skip

    def stop(self) -> None:
        """Stop after the batch in hand (safe from a signal handler)."""
        self._stop.set()

    def run(self) -> Tally:
        options = self.options
        self.stream_arn = self._describe()
        assignment = options.assignment
        if options.lease is not None:
            self.log("started", stream=options.stream, consumer=options.lease.consumer_id, lease=True)
        else:
            self.log("started", stream=options.stream, worker=assignment.worker, workers=assignment.workers)
        try:
            if self.keeper is not None:
                self.keeper.start()
            return self._run()
        finally:
            if self.keeper is not None:
                self.keeper.stop()  # after the batch in hand: the leases go at once to another consumer

    def _run(self) -> Tally:
        options = self.options
        next_sync = 0.0
        last_activity = self.clock()
        next_report = self.clock() + options.report_interval
        reported = (self.clock(), 0)
        while not self._stop.is_set():
            now = self.clock()
            if self.keeper is not None:
                if self._sync_leases():
                    last_activity = now
            elif now >= next_sync:
                if self._sync_shards():
                    last_activity = now
                next_sync = now + options.shard_sync_interval
            for reader in [r for r in self.readers.values() if r.not_before <= now]:
                if self._stop.is_set():
                    break
                if reader.poll():
                    last_activity = self.clock()
                if reader.lost:
                    del self.readers[reader.shard_id]
                    if self.keeper is not None:
                        self.keeper.drop(reader.shard_id)
                elif reader.finished:
                    del self.readers[reader.shard_id]
                    self.finished.add(reader.shard_id)
                    next_sync = 0.0  # its children may start now
                    if self.keeper is not None:
                        self.keeper.finished(reader.shard_id)
            now = self.clock()
            if now >= next_report:
                reported = self._report(reported)
                next_report = now + options.report_interval
            if (
                options.stop_after_idle is not None
                and self.listed
                and now - last_activity >= options.stop_after_idle
                and all(reader.caught_up for reader in self.readers.values())
            ):
                self.log("idle", seconds=options.stop_after_idle)
                break
            wake = min([r.not_before for r in self.readers.values()] + [next_sync, next_report])
            if options.lease is not None:  # look at the keeper's leases again soon
                wake = min(wake, now + options.lease.renew_interval / 2)
            if wake > now:
                self._stop.wait(wake - now)
        self._report(reported)
        self.log("stopped", records=self.tally.records, **self.tally.counts.as_json())
        return self.tally

    def _report(self, since: tuple[float, int]) -> tuple[float, int]:
        now, records = self.clock(), self.tally.records
        elapsed = max(now - since[0], 1e-9)
        self.log(
            "progress",  # the log's event name, kept for whoever reads these lines
            records=records,
            recordsPerSecond=round((records - since[1]) / elapsed, 1),
            **self.tally.counts.as_json(),
            millisBehindLatest={r.shard_id: r.behind_ms for r in self.readers.values()},
            **self._holding(),
        )
        return now, records

    def _holding(self) -> dict[str, object]:
        """In a fleet, which shards this consumer holds (the progress line says)."""
        if self.options.lease is None:
            return {}
        return {"consumer": self.options.lease.consumer_id, "shards": sorted(self.readers)}

    def _sync_leases(self) -> bool:
        """Start a reader for each lease gained, drop the reader of each lease lost; True if any started."""
        assert self.keeper is not None
        held = self.keeper.held()
        self.listed = self.keeper.rounds > 0
        # A lease lost, or lost and taken again since (a new counter): its reader goes.
        gone = [s for s, reader in self.readers.items() if s not in held or reader.guard != held[s].guard()]
        for shard_id in gone:
            del self.readers[shard_id]
            self.log("shard-dropped", shard=shard_id, consumer=self.keeper.options.consumer_id)
        started = False
        parents = self.keeper.parents()
        for shard_id, lease in held.items():
            if shard_id in self.readers or shard_id in self.finished:
                continue
            if is_finished(self.checkpoints.checkpoint(self.options.stream, shard_id)):
                # Finished by its last holder after this consumer's keeper read it open: let it go.
                self.finished.add(shard_id)
                self.keeper.finished(shard_id)
                continue
            reader = ShardReader(shard_id, parents.get(shard_id, False), self)
            reader.guard = lease.guard()
            self.readers[shard_id] = reader
            self.log("shard-started", shard=shard_id, consumer=self.keeper.options.consumer_id)
            started = True
        return started

    def _describe(self) -> str | None:
        try:
            summary = self.client.describe_stream_summary(StreamName=self.options.stream)
        except ClientError as error:
            raise UserError(f"stream {self.options.stream!r}: {error}") from None
        except BotoCoreError as error:
            raise UserError(f"cannot reach Kinesis: {error}") from None
        return summary["StreamDescriptionSummary"]["StreamARN"]

    def list_shards(self) -> list[Shard]:
        # boto3's ListShards paginator resends StreamName with NextToken, which ListShards rejects.
        response = self.client.list_shards(StreamName=self.options.stream)
        shards = list(response["Shards"])
        while token := response.get("NextToken"):
            response = self.client.list_shards(NextToken=token)
            shards.extend(response["Shards"])
        return [
            Shard(shard["ShardId"], shard.get("ParentShardId"), shard.get("AdjacentParentShardId")) for shard in shards
        ]

    def _sync_shards(self) -> bool:
        """Start the shards this worker owns whose parents are finished; True if any started."""
        try:
            shards = self.list_shards()
        except (ClientError, BotoCoreError) as error:
            self.log("list-shards-failed", error=str(error))
            return False
        self.listed = True
        stream = self.options.stream

        def end_committed(shard_id: str) -> bool:
            return is_finished(self.checkpoints.checkpoint(stream, shard_id))

        planned = plan(shards, self.options.assignment, self.readers, self.finished, end_committed)
        self.finished |= planned.finished
        for shard_id, has_parent in planned.start:
            self.readers[shard_id] = ShardReader(shard_id, has_parent, self)
            self.log("shard-started", shard=shard_id)
        return bool(planned.start)


__all__ = ["Checkpoints", "Consumer", "ConsumerOptions", "RecordProcessor", "ShardReader", "Tally", "log_line"]
