"""The consumer's side of a fleet: a thread that renews, takes and steals leases every round.

:class:`LeaseKeeper` runs one round every ``lease_seconds / 3`` (as KCL renews): it lists the
shards (again every shard-sync interval, or when a shard of ours finished), creates a free lease
for each shard that may be leased now (:func:`~user_limits.kinesis.leases.eligible`: not finished,
parents finished), reads the stream's leases, and writes what
:func:`~user_limits.kinesis.leases.decide` says. What it holds afterwards is published to the
consumer's loop, which starts a reader for each lease gained and drops the reader of each lease
lost. Renewals run on their own thread so that a long batch does not let a lease lapse.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from user_limits.kinesis.leases import Lease, LeaseTable, apply_decision, decide, eligible
from user_limits.kinesis.shards import Shard, is_finished
from user_limits.stream.records import Checkpoint


@dataclass(frozen=True)
class LeaseOptions:
    # This consumer's name in the lease table (default host:pid).
    consumer_id: str
    # How long a lease lasts unrenewed; renewed every third of it.
    lease_seconds: float = 30.0

    def __post_init__(self) -> None:
        if not self.consumer_id:
            raise ValueError("consumer id: must not be empty")
        if not self.lease_seconds > 0:
            raise ValueError(f"lease seconds {self.lease_seconds}: must be above 0")

    @property
    def renew_interval(self) -> float:
        return self.lease_seconds / 3


class LeaseObserver(Protocol):
    """Where the keeper reports (the consumer's metrics)."""

    def leases_held(self, count: int) -> None: ...

    def lease_taken_over(self) -> None: ...


class LeaseKeeper:
    """Renews, takes and steals this consumer's leases; ``held()`` is what it holds now."""

    def __init__(
        self,
        table: LeaseTable,
        checkpoint: Callable[[str, str], Checkpoint | None],
        list_shards: Callable[[], list[Shard]],
        stream: str,
        options: LeaseOptions,
        shard_sync_interval: float,
        log: Callable[..., None],
        observer: LeaseObserver | None = None,
        wall_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        self.table = table
        self.checkpoint = checkpoint
        self.list_shards = list_shards
        self.stream = stream
        self.options = options
        self.shard_sync_interval = shard_sync_interval
        self.log = log
        self.observer = observer
        self.wall_ms = wall_ms
        self._lock = threading.Lock()
        self._held: dict[str, Lease] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._shards: list[Shard] = []
        self._listed_at: float | None = None
        self._finished: set[str] = set()
        self.rounds = 0

    # -- what the consumer's loop asks

    def held(self) -> dict[str, Lease]:
        with self._lock:
            return dict(self._held)

    def parents(self) -> dict[str, bool]:
        """Per listed shard: whether it has a parent still listed (a child starts at TRIM_HORIZON)."""
        listed = {shard.shard_id for shard in self._shards}
        return {s.shard_id: any(p in listed for p in (s.parent, s.adjacent_parent)) for s in self._shards}

    def drop(self, shard_id: str) -> None:
        """The consumer found the lease lost (its commit was refused): forget it."""
        with self._lock:
            self._held.pop(shard_id, None)

    def finished(self, shard_id: str) -> None:
        """A shard of ours is read to its end and checkpointed: release its lease, list again."""
        with self._lock:
            lease = self._held.pop(shard_id, None)
            self._finished.add(shard_id)
            self._listed_at = None
        if lease is not None:
            self._release(lease)

    # -- the thread

    def start(self) -> None:
        self._round()  # the first round before the loop starts, so it has leases to read
        self._thread = threading.Thread(target=self._run, name="lease-keeper", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        # At a fixed rate, not a fixed pause: a slow round does not push the next renewal later.
        due = time.monotonic() + self.options.renew_interval
        while not self._stop.wait(max(0.0, due - time.monotonic())):
            due = max(due + self.options.renew_interval, time.monotonic())
            self._round()

    def _round(self) -> None:
        try:
            self.round()
        except Exception as error:  # a store or Kinesis that fails: held leases lapse, try again
            self.log("lease-round-failed", error=f"{type(error).__name__}: {error}")

    def stop(self) -> None:
        """Stop renewing and release every lease held, so another consumer takes them at once."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            leases, self._held = list(self._held.values()), {}
        for lease in leases:
            self._release(lease)
        if leases:
            self.log(
                "leases-released", consumer=self.options.consumer_id, shards=sorted(lease.shard_id for lease in leases)
            )

    def _release(self, lease: Lease) -> None:
        try:
            self.table.write_lease(lease, lease.released())
        except Exception as error:  # it expires on its own
            self.log("lease-release-failed", shard=lease.shard_id, error=f"{type(error).__name__}: {error}")

    def round(self) -> None:
        """List (when due), open the eligible shards' leases, decide, write, publish."""
        me = self.options.consumer_id
        now = time.monotonic()
        if self._listed_at is None or now - self._listed_at >= self.shard_sync_interval:
            self._shards = self.list_shards()
            self._listed_at = now
        # Only a parent can be finished (a closed shard has children): one read each, until it is.
        parents = {p for shard in self._shards for p in (shard.parent, shard.adjacent_parent) if p is not None}
        for shard in self._shards:
            shard_id = shard.shard_id
            if (
                shard_id in parents
                and shard_id not in self._finished
                and is_finished(self.checkpoint(self.stream, shard_id))
            ):
                self._finished.add(shard_id)
        open_shards = eligible(self._shards, self._finished.__contains__)
        leases = {lease.shard_id: lease for lease in self.table.leases(self.stream)}
        for shard_id in open_shards:
            if shard_id not in leases:
                self.table.create_lease(self.stream, shard_id)
        if any(shard_id not in leases for shard_id in open_shards):
            leases = {lease.shard_id: lease for lease in self.table.leases(self.stream)}
        now_ms = self.wall_ms()
        with self._lock:
            # Ours as we last wrote them (a renewal read back could race our own release).
            mine = dict(self._held)
        current = [mine.get(shard_id, lease) if lease.holder == me else lease for shard_id, lease in leases.items()]
        decision = decide(me, current, open_shards, now_ms)
        held, gained, lost = apply_decision(self.table, me, decision, now_ms + int(self.options.lease_seconds * 1000))
        for before, after in gained:
            self.log("lease-taken", consumer=me, shard=after.shard_id, previousHolder=before.holder)
            if before.holder is not None and self.observer is not None:
                self.observer.lease_taken_over()
        # Lost: a renewal refused, or a lease of ours the store shows in another's hands.
        for shard_id in sorted({lease.shard_id for lease in lost} | (set(mine) - set(held))):
            self.log("lease-lost", consumer=me, shard=shard_id)
        with self._lock:
            # A shard finished by the loop during this round stays released.
            self._held = {shard_id: lease for shard_id, lease in held.items() if shard_id not in self._finished}
        self.rounds += 1
        if self.observer is not None:
            self.observer.leases_held(len(held))
        spent = time.monotonic() - now
        if spent > self.options.renew_interval:
            # Rounds this slow let leases lapse between renewals: the store or Kinesis is overloaded.
            self.log("lease-round-slow", seconds=round(spent, 3), renewInterval=self.options.renew_interval)


__all__ = ["LeaseKeeper", "LeaseObserver", "LeaseOptions"]
