"""Leases: how consumers of one fleet share a stream's shards, decided purely (no I/O, no clock).

A fleet is the consumers of one stream on one store. Each shard has one lease in the store:
its holder (None when free), a counter and an expiry (epoch ms). As in the Kinesis Client Library:

- Every lease write is conditional on the holder and counter read (:class:`LeaseTable`), so of
  two consumers racing for a lease one wins. The counter moves whenever the lease changes hands
  (taken, stolen, released); a renewal keeps it and moves the expiry. The checkpoint commit checks
  the holder and counter in its own transaction (:class:`~user_limits.stream.records.LeaseGuard`).
- A lease whose expiry has passed is free to take. Live consumers are the holders of unexpired
  leases, and the consumer asking; the fair share is ceil(open shards / live consumers).
- A consumer takes free leases up to its share; below it with none free, it steals one lease, at
  most, per round from the consumer holding the most, if that one holds more than the share (or,
  as KCL does, exactly the share while the stealer is short by more than one).
- A child shard gets a lease only once every parent still listed is finished (its checkpoint at
  :data:`~user_limits.kinesis.shards.SHARD_END`), so parents are read before children across the fleet.

Where we differ from KCL: expiry is a time the holder writes (its wall clock plus the lease
duration), not a counter each worker watches for a lease duration, so the fleet's clocks must agree
to well within the lease duration (NTP does); and a renewal does not move the counter.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from user_limits.kinesis.shards import Shard

# Lease is a stream record (the stores keep it); imported here, where the protocol uses it.
from user_limits.stream.records import Lease


@runtime_checkable
class LeaseTable(Protocol):
    """The leases of a store that can hold a fleet (SQLite, PostgreSQL, DynamoDB)."""

    def leases(self, stream: str | None = None) -> list[Lease]:
        """Every lease of ``stream`` (of every stream when None), by stream and shard."""
        ...

    def create_lease(self, stream: str, shard_id: str) -> None:
        """A free lease for the shard, unless it has one."""
        ...

    def write_lease(self, expected: Lease, new: Lease) -> bool:
        """Write ``new`` if the stored lease still has ``expected``'s holder and counter."""
        ...


def fair_share(shards: int, consumers: int) -> int:
    return math.ceil(shards / max(consumers, 1))


def eligible(shards: Sequence[Shard], finished: Callable[[str], bool]) -> list[str]:
    """The shards that may be leased now, in listing order: not finished, every listed parent finished.

    A parent gone past the retention period (no longer listed) is as good as finished.
    """
    listed = {shard.shard_id for shard in shards}
    result = []
    for shard in shards:
        if finished(shard.shard_id):
            continue
        parents = [p for p in (shard.parent, shard.adjacent_parent) if p in listed]
        if all(finished(p) for p in parents):
            result.append(shard.shard_id)
    return result


@dataclass
class Decision:
    """What one round of a consumer does with the leases it read."""

    renew: list[Lease] = field(default_factory=list)
    take: list[Lease] = field(default_factory=list)
    steal: Lease | None = None
    share: int = 0

    def writes(self) -> list[Lease]:
        return self.renew + self.take + ([self.steal] if self.steal is not None else [])


def decide(me: str, leases: Iterable[Lease], open_shards: Iterable[str], now_ms: int) -> Decision:
    """One round for consumer ``me``: which of its leases to renew, which free ones to take, which to steal.

    ``leases``: what the store holds for the stream; ``open_shards``: the shards that may be leased
    now (:func:`eligible`). Leases of other shards (finished, not yet eligible) are left alone.
    """
    open_ids = set(open_shards)
    current = sorted((lease for lease in leases if lease.shard_id in open_ids), key=lambda lease: lease.shard_id)
    mine = [lease for lease in current if lease.holder == me]
    held_by = Counter(lease.holder for lease in current if lease.live(now_ms) and lease.holder != me)
    share = fair_share(len(current), len(held_by) + 1)
    decision = Decision(renew=mine, share=share)
    # A lease of ours, even expired, is renewed rather than taken: no one else moved its counter.
    free = [lease for lease in current if lease.holder != me and not lease.live(now_ms)]
    wanted = share - len(mine)
    decision.take = free[: max(wanted, 0)]
    if wanted > len(decision.take) and not free:
        busiest, count = max(held_by.items(), key=lambda item: (item[1], item[0] or ""), default=(None, 0))
        # As KCL: from one above the share, or at it when this consumer is short by more than one
        # (else 4 shards could settle as 2, 2, 0, 0 over 4 consumers: one holding none is not seen).
        if busiest is not None and (count > share or (count == share and wanted > 1)):
            decision.steal = next(lease for lease in current if lease.holder == busiest and lease.live(now_ms))
    return decision


def apply_decision(
    table: LeaseTable, me: str, decision: Decision, until_ms: int
) -> tuple[dict[str, Lease], list[tuple[Lease, Lease]], list[Lease]]:
    """Write the decision: (leases held now by shard, (before, after) of each lease gained, leases lost).

    Each write is conditional: a renewal that fails means the lease was taken from us; a take or a
    steal that fails means another consumer got there first, which is no loss.
    """
    held: dict[str, Lease] = {}
    gained: list[tuple[Lease, Lease]] = []
    lost: list[Lease] = []
    for lease in decision.renew:
        new = lease.renewed(until_ms)
        if table.write_lease(lease, new):
            held[lease.shard_id] = new
        else:
            lost.append(lease)
    for lease in decision.take + ([decision.steal] if decision.steal is not None else []):
        new = lease.taken(me, until_ms)
        if table.write_lease(lease, new):
            held[lease.shard_id] = new
            gained.append((lease, new))
    return held, gained, lost


__all__ = ["Decision", "Lease", "LeaseTable", "apply_decision", "decide", "eligible", "fair_share"]
