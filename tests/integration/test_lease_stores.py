"""Leases in every store that holds a fleet: conditional writes, and a checkpoint commit guarded by its lease.

The guard is checked in the batch's own transaction: a consumer that lost its lease commits
nothing of the batch (no limit, no count, no checkpoint), whatever else it holds.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.streams import created, records
from user_limits.bootstrap import open_store, processor
from user_limits.kinesis.leases import Lease, LeaseTable
from user_limits.kinesis.shards import end_of_shard
from user_limits.stream.records import Checkpoint, LeaseLost

STREAM = "fleet"
SHARD = "shardId-000000000003"


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.servers),
        pytest.param("dynamodb", marks=pytest.mark.servers),
    ]
)
def lease_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    kind = request.param
    url = f"sqlite:///{tmp_path}/store.db" if kind == "sqlite" else request.getfixturevalue(f"{kind}_store_url")
    store = open_store(url)
    yield store
    store.close()


def test_every_fleet_store_has_a_lease_table_and_memory_has_none(lease_store: Any) -> None:
    assert isinstance(lease_store, LeaseTable)
    assert not isinstance(open_store("memory://"), LeaseTable)


def test_a_lease_is_created_once_free(lease_store: Any) -> None:
    lease_store.create_lease(STREAM, SHARD)
    lease_store.create_lease(STREAM, SHARD)
    lease_store.create_lease("other", SHARD)
    assert lease_store.leases(STREAM) == [Lease(STREAM, SHARD, None, 0, 0)]
    assert [(lease.stream, lease.shard_id) for lease in lease_store.leases()] == [("fleet", SHARD), ("other", SHARD)]


def test_a_lease_write_is_conditional_on_holder_and_counter(lease_store: Any) -> None:
    lease_store.create_lease(STREAM, SHARD)
    (free,) = lease_store.leases(STREAM)
    mine = free.taken("a", 5000)
    assert lease_store.write_lease(free, mine)
    # b read the free lease too, before a took it: its take fails.
    assert not lease_store.write_lease(free, free.taken("b", 5000))
    assert lease_store.leases(STREAM) == [Lease(STREAM, SHARD, "a", 1, 5000)]
    # A renewal keeps the counter; a stale holder or counter is refused.
    assert lease_store.write_lease(mine, mine.renewed(9000))
    assert not lease_store.write_lease(mine._replace(holder="b"), mine.renewed(1))
    assert not lease_store.write_lease(mine._replace(counter=0), mine.renewed(1))
    stolen = mine.renewed(9000).taken("b", 12000)
    assert lease_store.write_lease(mine, stolen)
    assert lease_store.write_lease(stolen, stolen.released())
    assert lease_store.leases(STREAM) == [Lease(STREAM, SHARD, None, 3, 0)]


def held(store: Any, holder: str) -> Lease:
    store.create_lease(STREAM, SHARD)
    (lease,) = store.leases(STREAM)
    taken = lease.taken(holder, 10**13)
    assert store.write_lease(lease, taken)
    return taken


def test_a_batch_guarded_by_the_lease_held_commits(lease_store: Any) -> None:
    lease = held(lease_store, "a")
    batch = records([created("L1", 1)], first_position=10)
    checkpoint = Checkpoint(STREAM, SHARD, "10", 0, lease.guard())
    result = processor(lease_store).process(batch, checkpoint)
    assert result.error is None and result.counts.applied == 1
    assert lease_store.checkpoint(STREAM, SHARD) == Checkpoint(STREAM, SHARD, "10", 0)


def test_a_consumer_that_lost_its_lease_commits_nothing_of_its_batch(lease_store: Any) -> None:
    mine = held(lease_store, "a")
    batches = processor(lease_store)
    assert (
        batches.process(records([created("L0", 1)], 10), Checkpoint(STREAM, SHARD, "10", 0, mine.guard())).error is None
    )
    before = lease_store.stats()
    # b takes the lease over (a was paused past its expiry), and checkpoints further.
    theirs = mine.taken("b", 10**13)
    assert lease_store.write_lease(mine, theirs)
    assert (
        batches.process(records([created("L9", 1)], 50), Checkpoint(STREAM, SHARD, "50", 0, theirs.guard())).error
        is None
    )
    # a wakes with a batch in hand, guarded by the lease it held: refused, as LeaseLost.
    result = batches.process(records([created("L1", 1)], 20), Checkpoint(STREAM, SHARD, "20", 0, mine.guard()))
    assert isinstance(result.error, LeaseLost)
    assert result.counts.applied == 0
    assert lease_store.user_limit("u1", "L1") is None
    assert lease_store.stats().applied == before.applied + 1  # b's batch only
    assert lease_store.checkpoint(STREAM, SHARD) == Checkpoint(STREAM, SHARD, "50", 0)


def test_a_shard_end_is_not_checkpointed_by_a_consumer_that_lost_the_lease(lease_store: Any) -> None:
    mine = held(lease_store, "a")
    assert lease_store.write_lease(mine, mine.released())
    end = end_of_shard(STREAM, SHARD, None)._replace(lease=mine.guard())
    with pytest.raises(LeaseLost):
        processor(lease_store).commit_checkpoint(end)
    assert lease_store.checkpoint(STREAM, SHARD) is None


def test_a_guard_on_a_shard_without_a_lease_is_refused(lease_store: Any) -> None:
    guard = Lease(STREAM, SHARD, "a", 1).guard()
    result = processor(lease_store).process(records([created("L1", 1)], 1), Checkpoint(STREAM, SHARD, "1", 0, guard))
    assert isinstance(result.error, LeaseLost)
    assert lease_store.checkpoint(STREAM, SHARD) is None
