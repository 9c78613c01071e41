"""The lease protocol, pure: fair share, taking, stealing at most one per round, parents first, expiry."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from user_limits.kinesis.leases import Lease, apply_decision, decide, eligible, fair_share
from user_limits.kinesis.shards import Shard

S = "s"
LEASE_MS = 3000


class Table:
    """An in-memory lease table with the stores' conditional write."""

    def __init__(self, shards: list[str]) -> None:
        self.rows = {shard: Lease(S, shard) for shard in shards}

    def leases(self, stream: str | None = None) -> list[Lease]:
        return sorted(self.rows.values())

    def create_lease(self, stream: str, shard_id: str) -> None:
        self.rows.setdefault(shard_id, Lease(stream, shard_id))

    def write_lease(self, expected: Lease, new: Lease) -> bool:
        stored = self.rows[expected.shard_id]
        if (stored.holder, stored.counter) != (expected.holder, expected.counter):
            return False
        self.rows[expected.shard_id] = new
        return True


def shards(n: int) -> list[str]:
    return [f"shardId-{i:012d}" for i in range(n)]


def round_of(table: Table, me: str, now: int) -> dict[str, Lease]:
    decision = decide(me, table.leases(), list(table.rows), now)
    held, _, _ = apply_decision(table, me, decision, now + LEASE_MS)
    return held


def holders(table: Table, now: int) -> dict[str, int]:
    counts: dict[str, int] = {}
    for lease in table.rows.values():
        if lease.live(now) and lease.holder is not None:
            counts[lease.holder] = counts.get(lease.holder, 0) + 1
    return counts


def test_fair_share_is_the_ceiling() -> None:
    assert fair_share(8, 3) == 3
    assert fair_share(8, 4) == 2
    assert fair_share(8, 1) == 8
    assert fair_share(0, 2) == 0


def test_a_lone_consumer_takes_every_free_lease() -> None:
    table = Table(shards(8))
    held = round_of(table, "a", 0)
    assert len(held) == 8
    assert all(lease.holder == "a" and lease.counter == 1 and lease.expires_ms == LEASE_MS for lease in held.values())


def test_a_newcomer_steals_at_most_one_lease_per_round() -> None:
    table = Table(shards(8))
    round_of(table, "a", 0)
    decision = decide("b", table.leases(), list(table.rows), 10)
    assert decision.take == [] and decision.steal is not None and decision.steal.holder == "a"
    round_of(table, "b", 10)
    assert holders(table, 10) == {"a": 7, "b": 1}


def test_no_steal_from_a_consumer_at_its_share() -> None:
    table = Table(shards(8))
    for i, lease in enumerate(table.leases()):
        table.rows[lease.shard_id] = lease.taken("a" if i < 3 else "b" if i < 6 else "c", LEASE_MS)
    # a: 3, b: 3, c: 2; share ceil(8/3) = 3: c holds less but no one holds more than the share.
    decision = decide("c", table.leases(), list(table.rows), 0)
    assert decision.steal is None and decision.take == []


def test_renewal_keeps_the_counter_and_moves_the_expiry() -> None:
    table = Table(shards(2))
    round_of(table, "a", 0)
    held = round_of(table, "a", 1000)
    assert {lease.counter for lease in held.values()} == {1}
    assert {lease.expires_ms for lease in held.values()} == {1000 + LEASE_MS}


def test_an_expired_lease_is_taken_and_its_old_holder_loses_it() -> None:
    table = Table(shards(2))
    round_of(table, "a", 0)
    # a stops renewing; past the expiry b takes both.
    held = round_of(table, "b", LEASE_MS + 1)
    assert set(held) == set(table.rows)
    assert {lease.counter for lease in held.values()} == {2}
    decision = decide("a", table.leases(), list(table.rows), LEASE_MS + 2)
    _, gained, lost = apply_decision(table, "a", decision, LEASE_MS + 2 + LEASE_MS)
    # a holds none of them now; b holds 2, above the share of 1: a steals one back, no more.
    assert lost == [] and [(before.holder, after.holder) for before, after in gained] == [("b", "a")]
    stale = Lease(S, shards(2)[0], "a", 1, LEASE_MS)
    assert not table.write_lease(stale, stale.renewed(10 * LEASE_MS))


def test_a_live_lease_is_not_taken() -> None:
    table = Table(shards(1))
    round_of(table, "a", 0)
    assert round_of(table, "b", LEASE_MS - 1) == {}


def test_a_lost_renewal_is_reported() -> None:
    table = Table(shards(1))
    round_of(table, "a", 0)
    round_of(table, "b", LEASE_MS + 1)
    mine = Lease(S, shards(1)[0], "a", 1, LEASE_MS)
    decision = decide("a", [mine], list(table.rows), LEASE_MS + 2)
    _, _, lost = apply_decision(table, "a", decision, 0)
    assert lost == [mine]


def test_children_are_eligible_only_after_every_parent_is_finished() -> None:
    listing = [
        Shard("p0"),
        Shard("p1"),
        Shard("split", "p0"),
        Shard("merge", "p0", "p1"),
        Shard("orphan", "gone"),  # its parent aged out of the stream
    ]
    assert eligible(listing, lambda shard: False) == ["p0", "p1", "orphan"]
    assert eligible(listing, lambda shard: shard == "p0") == ["p1", "split", "orphan"]
    assert eligible(listing, lambda shard: shard in {"p0", "p1"}) == ["split", "merge", "orphan"]


def test_leases_of_shards_not_open_are_left_alone() -> None:
    table = Table(["p", "child"])
    decision = decide("a", table.leases(), ["p"], 0)
    assert [lease.shard_id for lease in decision.take] == ["p"]


@settings(max_examples=40, deadline=None)
@given(
    shard_count=st.integers(1, 12),
    schedule=st.lists(st.integers(0, 3), min_size=1, max_size=60),
)
def test_any_schedule_of_rounds_keeps_one_holder_and_converges(shard_count: int, schedule: list[int]) -> None:
    """Whatever order 4 consumers run their rounds in, once all run in turn every lease is held,
    none above the share and none more than one below it."""
    table = Table(shards(shard_count))
    names = ["a", "b", "c", "d"]
    now = 0
    for index in schedule:
        now += 100
        round_of(table, names[index], now)
    # Then every consumer runs rounds in turn, well within the lease: the fleet settles.
    for _ in range(shard_count + 4):
        for name in names:
            now += 10
            round_of(table, name, now)
    counts = holders(table, now)
    assert sum(counts.values()) == shard_count
    share = fair_share(shard_count, len(names))
    assert max(counts.values()) <= share
    assert all(counts.get(name, 0) >= share - 1 for name in names)


def test_a_consumer_short_by_more_than_one_steals_from_one_at_its_share() -> None:
    table = Table(shards(4))
    for i, lease in enumerate(table.leases()):
        table.rows[lease.shard_id] = lease.taken("a" if i < 2 else "b", LEASE_MS)
    # c sees a and b live: share ceil(4/3) = 2, it needs 2, each holds 2: it steals one.
    decision = decide("c", table.leases(), list(table.rows), 0)
    assert decision.steal is not None
    # Short by one only, it steals nothing from a consumer at its share.
    table.rows[decision.steal.shard_id] = decision.steal.taken("c", LEASE_MS)
    assert decide("c", table.leases(), list(table.rows), 0).steal is None
