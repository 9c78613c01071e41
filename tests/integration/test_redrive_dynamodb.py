"""A redrive on DynamoDB, where a batch is several transactions: a limit another writer changed
meanwhile, and a dead letter whose texts are packed."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

import pytest

from tests.redrive_family import FamilyBeforeWeek
from tests.streams import BASE_TIME, SHARD, STREAM_ARN, created, encode, process, progress, record, records, reset
from user_limits.domain.model import UserLimit
from user_limits.family import UserLimitFamily
from user_limits.operations.redrive import record_of
from user_limits.stores.dynamodb.layout import TEXTS_INLINE
from user_limits.stores.dynamodb_store import DynamoDBStore
from user_limits.stream.batch import BatchProcessor
from user_limits.stream.records import Outcome, Snapshot, StreamRecord
from user_limits.stream.redrive import redrive

pytestmark = pytest.mark.servers


@pytest.fixture
def dynamodb_store(dynamodb_store_url: str) -> Iterator[DynamoDBStore]:
    opened = DynamoDBStore(dynamodb_store_url)
    yield opened
    opened.close()


class Interleaved:
    """The store, with another writer committing ``batch`` while the redrive holds its snapshot."""

    def __init__(self, store: DynamoDBStore, other: DynamoDBStore, batch: list[StreamRecord]) -> None:
        self.store, self.other, self.batch = store, other, batch
        self.snapshots = 0

    def apply_batch(
        self, keys: Mapping[str, str], project: Callable[[Snapshot[UserLimit]], Outcome[UserLimit]]
    ) -> Outcome[UserLimit]:
        def interleaved(snapshot: Snapshot[UserLimit]) -> Outcome[UserLimit]:
            if not self.snapshots:
                process(self.other, self.batch)
            self.snapshots += 1
            return project(snapshot)

        return self.store.apply_batch(keys, interleaved)

    def close(self) -> None:
        return None


@pytest.mark.parametrize(("theirs", "applied", "skipped"), [(5, 1, 0), (8, 0, 1)])
def test_a_limit_changed_meanwhile_is_projected_again_and_the_dead_letter_leaves_with_the_outcome(
    dynamodb_store_url: str, dynamodb_store: DynamoDBStore, theirs: int, applied: int, skipped: int
) -> None:
    """Ours is a reset at 6. Theirs at 5: ours applies over it. Theirs at 8: ours is skipped, and
    its dead letter leaves all the same, in the round for that limit."""
    process(dynamodb_store, records([created("L1", 3)], 1))
    BatchProcessor(FamilyBeforeWeek(), dynamodb_store).process(
        [record(reset("L1", 6, BASE_TIME + 6, period="WEEK"), 2)]
    )
    (letter,) = dynamodb_store.dead_letters()
    other = DynamoDBStore(dynamodb_store_url)
    interleaved = Interleaved(dynamodb_store, other, [record(progress("L1", theirs, "7", "0"), 3)])
    try:
        outcome = redrive(UserLimitFamily(), interleaved, [record_of(letter)])
    finally:
        other.close()

    assert interleaved.snapshots == 2  # L1 read and projected again
    assert (outcome.counts.applied, outcome.counts.skipped) == (applied, skipped)
    assert dynamodb_store.dead_letters() == []
    limit = dynamodb_store.user_limit("u1", "L1")
    assert limit is not None and limit.last_sequence_number == max(theirs, 6)
    assert dynamodb_store.stats().as_json() == {
        "applied": 2 + applied,
        "skipped": skipped,
        "ignored": 0,
        "parked": 0,
        "deadLettered": 0,
        # Their progress change (7 of 100, "0" remaining) drifts; so does our reset over it, whose
        # figures (100.00 unused, 0 reset) are the builders' fixed ones.
        "drifted": 1 + applied,
    }


def test_todays_reason_on_a_dead_letter_whose_texts_are_packed(dynamodb_store: DynamoDBStore) -> None:
    key = "k" * (TEXTS_INLINE + 1)
    data = encode(created("L2", 4, period="WEEK", value="1_000"))
    kept = StreamRecord(data, "123", None, key, BASE_TIME, STREAM_ARN, SHARD)
    BatchProcessor(FamilyBeforeWeek(), dynamodb_store).process([kept])
    (old,) = dynamodb_store.dead_letters()
    assert "`$.period`" in old.reason

    outcome = redrive(UserLimitFamily(), dynamodb_store, [record_of(old)])

    assert len(outcome.dead_letters_renewed) == 1
    (renewed,) = dynamodb_store.dead_letters()
    assert "`value` is not a decimal" in renewed.reason
    assert renewed == old._replace(reason=renewed.reason)
