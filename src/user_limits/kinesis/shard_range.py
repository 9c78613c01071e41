"""Reading a range of one shard back from Kinesis: the batch an on-failure record names.

GetShardIterator ``AT_SEQUENCE_NUMBER`` the start, then GetRecords, page by page, until a record at
or past the end (sequence numbers compared as Python ints), so memory stays at one page whatever
the range. The stream is named by its ARN (``StreamARN``), which also works across accounts.

**Aged out, decided soundly.** The range can be read only if the record at its start is still in
the shard: the first record read must be exactly ``startSequenceNumber``. When it is not (the
iterator is refused, the shard yields nothing, or its first record comes later), the shard's
oldest record is read from ``TRIM_HORIZON`` to tell why:

- the shard or everything in it is gone, or its oldest record is after the start: the batch is
  older than the stream's retention (aged out);
- its oldest record is at or before the start: the start is not a record of this shard (a wrong
  or edited message), which is not an age problem and is reported as such;
- the stream itself is not found: said so.

Nothing is decided from an error's message text: only from error codes and sequence numbers.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from user_limits.operations.invocation_record import BatchInfo

if TYPE_CHECKING:
    from mypy_boto3_kinesis import KinesisClient
    from mypy_boto3_kinesis.type_defs import GetRecordsOutputTypeDef, RecordTypeDef

PAGE_RECORDS = 1000
THROTTLED = {"ProvisionedThroughputExceededException", "LimitExceededException", "ThrottlingException"}
ATTEMPTS = 5
# Kinesis may answer empty pages while an iterator crosses a stretch of the shard with no records.
MAX_EMPTY_PAGES = 100


class RangeUnavailable(Exception):
    """The range cannot be read (whole or at all); ``aged_out`` when it is past the stream's retention."""

    def __init__(self, reason: str, aged_out: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.aged_out = aged_out


def read_range(
    client: KinesisClient,
    info: BatchInfo,
    page_records: int = PAGE_RECORDS,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[list[RecordTypeDef]]:
    """The GetRecords records from ``info.start`` to ``info.end``, a page at a time, in shard order.

    Raises RangeUnavailable before the first page when the start is not in the shard, and after the
    last page read when the shard ends before ``info.end``.
    """
    shard = _Shard(client, info, sleep)
    start, end = int(info.start), int(info.end)
    try:
        try:
            iterator = shard.iterator("AT_SEQUENCE_NUMBER", info.start)
        except ClientError as error:
            if _code(error) not in ("ResourceNotFoundException", "InvalidArgumentException"):
                raise
            raise shard.why_not(start) from None
        started = False
        last: str | None = None
        empty_pages = 0
        while True:
            try:
                response = shard.records(iterator, page_records)
            except ClientError as error:
                if _code(error) != "ExpiredIteratorException":
                    raise
                # Renewed from what was read, never from before it.
                if last is None:
                    iterator = shard.iterator("AT_SEQUENCE_NUMBER", info.start)
                else:
                    iterator = shard.iterator("AFTER_SEQUENCE_NUMBER", last)
                continue
            page: list[RecordTypeDef] = []
            done = False
            for record in response["Records"]:
                sequence = int(record["SequenceNumber"])
                if not started:
                    if sequence != start:
                        raise shard.why_not(start)
                    started = True
                if sequence > end:
                    done = True
                    break
                page.append(record)
                if sequence == end:
                    done = True
                    break
            if page:
                last = page[-1]["SequenceNumber"]
                yield page
            if done:
                return
            next_iterator: str | None = response.get("NextShardIterator")
            caught_up = not response["Records"] and response.get("MillisBehindLatest") == 0
            if next_iterator is None or caught_up:
                if not started:
                    raise shard.why_not(start)
                closed = " (the shard is closed)" if next_iterator is None else ""
                raise RangeUnavailable(
                    f"the shard's records end at {last}{closed}, before endSequenceNumber {info.end}; "
                    "the records read are applied"
                )
            empty_pages = 0 if response["Records"] else empty_pages + 1
            if empty_pages > MAX_EMPTY_PAGES:
                raise RangeUnavailable(f"Kinesis answered {MAX_EMPTY_PAGES} empty pages in a row; try again later")
            iterator = next_iterator
    except ClientError as error:
        raise RangeUnavailable(f"Kinesis: {error}") from None
    except BotoCoreError as error:
        raise RangeUnavailable(f"cannot reach Kinesis: {error}") from None


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


class _Shard:
    def __init__(self, client: KinesisClient, info: BatchInfo, sleep: Callable[[float], None]) -> None:
        self.client = client
        self.info = info
        self.sleep = sleep

    def iterator(self, kind: str, sequence: str | None = None) -> str:
        args: dict[str, Any] = {"StreamARN": self.info.stream_arn, "ShardId": self.info.shard_id}
        args["ShardIteratorType"] = kind
        if sequence is not None:
            args["StartingSequenceNumber"] = sequence
        response = self._call(lambda: self.client.get_shard_iterator(**args))
        iterator: str = response["ShardIterator"]
        return iterator

    def records(self, iterator: str, limit: int) -> GetRecordsOutputTypeDef:
        response: GetRecordsOutputTypeDef = self._call(
            lambda: self.client.get_records(ShardIterator=iterator, Limit=limit, StreamARN=self.info.stream_arn)
        )
        return response

    def _call(self, call: Callable[[], Any]) -> Any:
        """``call``, retried with full jitter while Kinesis throttles."""
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return call()
            except ClientError as error:
                if _code(error) not in THROTTLED or attempt == ATTEMPTS:
                    raise
                self.sleep(random.uniform(0, 0.2 * 2**attempt))
        raise AssertionError("unreachable")

    def why_not(self, start: int) -> RangeUnavailable:
        """Why the record at ``start`` is not there: see the module's docstring."""
        info = self.info
        try:
            iterator = self.iterator("TRIM_HORIZON")
        except ClientError as error:
            if _code(error) != "ResourceNotFoundException":
                raise
            if not self._stream_exists():
                return RangeUnavailable(f"stream {info.stream_arn} not found")
            return RangeUnavailable(f"shard {info.shard_id} is no longer in the stream", aged_out=True)
        oldest = self._first_sequence(iterator)
        if oldest is None:
            return RangeUnavailable("the shard holds no records any more", aged_out=True)
        if oldest > start:
            return RangeUnavailable(
                f"the shard's oldest record is now {oldest}, after startSequenceNumber", aged_out=True
            )
        return RangeUnavailable(
            f"the shard has no record at startSequenceNumber {info.start}, though it holds older ones "
            f"(from {oldest}): the message does not name a record of this shard"
        )

    def _first_sequence(self, iterator: str) -> int | None:
        for _ in range(MAX_EMPTY_PAGES):
            response = self.records(iterator, 1)
            if response["Records"]:
                return int(response["Records"][0]["SequenceNumber"])
            next_iterator: str | None = response.get("NextShardIterator")
            if next_iterator is None or response.get("MillisBehindLatest") == 0:
                return None
            iterator = next_iterator
        raise RangeUnavailable(f"Kinesis answered {MAX_EMPTY_PAGES} empty pages in a row; try again later")

    def _stream_exists(self) -> bool:
        try:
            self._call(lambda: self.client.describe_stream_summary(StreamARN=self.info.stream_arn))
        except ClientError as error:
            if _code(error) == "ResourceNotFoundException":
                return False
            raise
        return True
