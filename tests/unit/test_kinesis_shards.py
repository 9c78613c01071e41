"""Shard planning without a stream or a store: worker assignment, parents before children, and the
end-of-shard checkpoint."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from user_limits.kinesis.shards import (
    SHARD_END,
    Assignment,
    Shard,
    end_of_shard,
    is_finished,
    plan,
    shard_number,
)
from user_limits.stream.records import Checkpoint

ONE = Assignment()


def sid(n: int) -> str:
    return f"shardId-{n:012d}"


def ends(*shards: str) -> set[str]:
    return set(shards)


def test_a_shard_number_is_the_digits_of_its_id_else_a_stable_hash() -> None:
    assert shard_number("shardId-000000000007") == 7
    assert shard_number("odd-shard") == shard_number("odd-shard")
    assert shard_number("odd-shard") != shard_number("other-shard")


def test_shards_without_parents_all_start_in_listing_order() -> None:
    shards = [Shard(sid(2)), Shard(sid(0)), Shard(sid(1))]
    planned = plan(shards, ONE, reading=set(), finished=set(), end_committed=ends().__contains__)
    assert planned.start == [(sid(2), False), (sid(0), False), (sid(1), False)]
    assert planned.finished == set()


def test_a_child_waits_until_its_parent_is_finished() -> None:
    shards = [Shard(sid(0)), Shard(sid(1), parent=sid(0)), Shard(sid(2), parent=sid(0))]
    waiting = plan(shards, ONE, reading=set(), finished=set(), end_committed=ends().__contains__)
    assert waiting.start == [(sid(0), False)]
    done = plan(shards, ONE, reading={sid(0)}, finished=set(), end_committed=ends(sid(0)).__contains__)
    # The parent's end is in the store: it is finished, never read again, and its children start.
    assert done.finished == {sid(0)}
    assert done.start == [(sid(1), True), (sid(2), True)]


def test_a_merged_child_waits_for_both_parents() -> None:
    shards = [Shard(sid(0)), Shard(sid(1)), Shard(sid(2), parent=sid(0), adjacent_parent=sid(1))]
    one_done = plan(shards, ONE, reading={sid(1)}, finished={sid(0)}, end_committed=ends(sid(0)).__contains__)
    assert one_done.start == []
    both = plan(shards, ONE, reading=set(), finished={sid(0)}, end_committed=ends(sid(0), sid(1)).__contains__)
    assert both.finished == {sid(1)}
    assert both.start == [(sid(2), True)]


def test_a_parent_gone_from_the_listing_counts_as_finished() -> None:
    shards = [Shard(sid(5), parent=sid(1), adjacent_parent=sid(2))]  # both parents past retention
    planned = plan(shards, ONE, reading=set(), finished=set(), end_committed=ends().__contains__)
    assert planned.start == [(sid(5), False)]


def test_shards_being_read_or_finished_are_not_started_again() -> None:
    shards = [Shard(sid(0)), Shard(sid(1)), Shard(sid(2))]
    planned = plan(shards, ONE, reading={sid(0)}, finished={sid(1)}, end_committed=ends().__contains__)
    assert planned.start == [(sid(2), False)]


def test_a_worker_starts_only_its_own_shards_but_waits_for_parents_of_any_worker() -> None:
    shards = [Shard(sid(0)), Shard(sid(1)), Shard(sid(2)), Shard(sid(3), parent=sid(0))]
    worker1 = Assignment(1, 2)
    planned = plan(shards, worker1, reading=set(), finished=set(), end_committed=ends().__contains__)
    assert planned.start == [(sid(1), False)]  # shard 3 is worker 1's, but its parent (worker 0's) is not done
    parent_done = plan(shards, worker1, reading={sid(1)}, finished=set(), end_committed=ends(sid(0)).__contains__)
    assert parent_done.start == [(sid(3), True)]
    assert parent_done.finished == set()  # shard 0 is worker 0's to know finished


def test_the_store_is_asked_only_about_shards_the_planner_needs() -> None:
    asked: list[str] = []

    def end_committed(shard_id: str) -> bool:
        asked.append(shard_id)
        return False

    shards = [Shard(sid(0)), Shard(sid(1))]
    plan(shards, Assignment(0, 2), reading=set(), finished=set(), end_committed=end_committed)
    assert asked == [sid(0)]


def test_the_end_of_a_shard_sits_just_above_its_last_checkpoint() -> None:
    last = Checkpoint("s", sid(0), "49590338271490256608559692538361571095921575989136588898", 3)
    marker = end_of_shard("s", sid(0), last)
    assert marker == Checkpoint("s", sid(0), last.sequence_number, SHARD_END)
    assert marker.order() > last.order() and is_finished(marker)
    assert end_of_shard("s", sid(1), None) == Checkpoint("s", sid(1), "0", SHARD_END)
    assert not is_finished(last) and not is_finished(None)


@settings(max_examples=60, deadline=None)
@given(
    numbers=st.lists(st.integers(0, 40), min_size=1, max_size=12, unique=True),
    workers=st.integers(1, 4),
)
def test_every_shard_belongs_to_exactly_one_worker(numbers: list[int], workers: int) -> None:
    shards = [Shard(sid(n)) for n in numbers]
    started: list[str] = []
    for worker in range(workers):
        planned = plan(shards, Assignment(worker, workers), set(), set(), ends().__contains__)
        started.extend(shard_id for shard_id, _ in planned.start)
    assert sorted(started) == sorted(sid(n) for n in numbers)
