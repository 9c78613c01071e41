"""The lease keeper's rounds over an in-memory lease table: what it publishes, releases and reports."""

from __future__ import annotations

from typing import Any

from tests.unit.test_leases import Table
from user_limits.kinesis.fleet import LeaseKeeper, LeaseOptions
from user_limits.kinesis.leases import Lease
from user_limits.kinesis.shards import SHARD_END, Shard
from user_limits.stream.records import Checkpoint

S = "s"


class Observer:
    def __init__(self) -> None:
        self.held: list[int] = []
        self.takeovers = 0

    def leases_held(self, count: int) -> None:
        self.held.append(count)

    def lease_taken_over(self) -> None:
        self.takeovers += 1


class Clock:
    def __init__(self) -> None:
        self.ms = 1_000_000

    def __call__(self) -> int:
        return self.ms


def keeper(
    table: Table,
    me: str,
    shards: list[Shard],
    clock: Clock,
    checkpoints: dict[str, Checkpoint] | None = None,
    log: list[tuple[str, dict[str, Any]]] | None = None,
    observer: Observer | None = None,
) -> LeaseKeeper:
    stored = checkpoints if checkpoints is not None else {}
    lines = log if log is not None else []
    return LeaseKeeper(
        table,
        lambda stream, shard: stored.get(shard),
        lambda: shards,
        S,
        LeaseOptions(me, 3.0),
        0.0,  # list the shards every round
        lambda event, **fields: lines.append((event, fields)),
        observer,
        clock,
    )


def test_a_round_creates_the_leases_and_publishes_what_it_holds() -> None:
    table = Table([])
    clock = Clock()
    observer = Observer()
    a = keeper(table, "a", [Shard("s0"), Shard("s1")], clock, observer=observer)
    a.round()
    assert set(a.held()) == {"s0", "s1"}
    assert {lease.holder for lease in table.leases()} == {"a"}
    assert observer.held[-1] == 2 and observer.takeovers == 0


def test_a_lease_taken_from_a_dead_consumer_counts_as_a_takeover_and_its_old_holder_sees_it_lost() -> None:
    table = Table([])
    clock = Clock()
    log_a: list[tuple[str, dict[str, Any]]] = []
    observer = Observer()
    a = keeper(table, "a", [Shard("s0")], clock, log=log_a)
    b = keeper(table, "b", [Shard("s0")], clock, observer=observer)
    a.round()
    clock.ms += 3001  # a stops renewing past its lease
    b.round()
    assert set(b.held()) == {"s0"} and observer.takeovers == 1
    a.round()
    assert a.held() == {}
    assert ("lease-lost", {"consumer": "a", "shard": "s0"}) in log_a


def test_children_get_leases_only_once_their_parent_is_finished() -> None:
    table = Table([])
    clock = Clock()
    checkpoints: dict[str, Checkpoint] = {}
    listing = [Shard("p"), Shard("c1", "p"), Shard("c2", "p")]
    a = keeper(table, "a", listing, clock, checkpoints)
    a.round()
    assert set(a.held()) == {"p"}
    checkpoints["p"] = Checkpoint(S, "p", "9", SHARD_END)
    a.finished("p")
    assert [lease for lease in table.leases() if lease.shard_id == "p"] == [Lease(S, "p", None, 2, 0)]
    a.round()
    assert set(a.held()) == {"c1", "c2"}


def test_stop_releases_every_lease_held() -> None:
    table = Table([])
    clock = Clock()
    a = keeper(table, "a", [Shard("s0"), Shard("s1")], clock)
    a.round()
    a.stop()
    assert a.held() == {}
    assert {(lease.holder, lease.expires_ms) for lease in table.leases()} == {(None, 0)}
    # Released, they are another consumer's at its next round, whatever their old expiry.
    b = keeper(table, "b", [Shard("s0"), Shard("s1")], clock)
    b.round()
    assert set(b.held()) == {"s0", "s1"}


def test_a_renewal_does_not_wait_for_the_listing() -> None:
    """The renewer writes the leases held without listing the shards or reading the store."""
    table = Table([])
    clock = Clock()
    a = keeper(table, "a", [Shard("s0")], clock)
    a.round()
    clock.ms += 2000
    a.list_shards = lambda: (_ for _ in ()).throw(AssertionError("listed"))  # type: ignore[method-assign]
    table.leases = lambda stream=None: (_ for _ in ()).throw(AssertionError("read"))  # type: ignore[method-assign]
    a.renew()
    assert a.held()["s0"].expires_ms == clock.ms + 3000
    assert table.rows["s0"].expires_ms == clock.ms + 3000


def test_a_round_that_fails_is_logged_and_the_next_one_retries() -> None:
    table = Table([])
    clock = Clock()
    log: list[tuple[str, dict[str, Any]]] = []
    calls = {"n": 0}

    def listing() -> list[Shard]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise ConnectionError("kinesis away")
        return [Shard("s0")]

    a = LeaseKeeper(
        table, lambda stream, shard: None, listing, S, LeaseOptions("a", 3.0), 0.0,
        lambda event, **fields: log.append((event, fields)), None, clock,
    )  # fmt: skip
    a._guarded(a.round)
    assert log[0][0] == "lease-round-failed" and a.rounds == 0
    a._guarded(a.round)
    assert set(a.held()) == {"s0"} and a.rounds == 1


def test_a_consumer_restarted_under_the_same_id_takes_its_leases_back_at_once() -> None:
    table = Table([])
    clock = Clock()
    observer = Observer()
    keeper(table, "a", [Shard("s0"), Shard("s1")], clock).round()
    clock.ms += 1000  # still live: no one else may take them yet
    again = keeper(table, "a", [Shard("s0"), Shard("s1")], clock, observer=observer)
    again.round()
    assert set(again.held()) == {"s0", "s1"}
    assert {lease.counter for lease in table.leases()} == {2}
    assert observer.takeovers == 0
