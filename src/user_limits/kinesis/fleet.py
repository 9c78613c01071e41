"""The consumer's side of a fleet: threads that renew, take and steal leases.

:class:`LeaseKeeper` runs two threads, as KCL's renewer and taker. Every ``lease_seconds / 3``
the renewer renews each lease held (one conditional write each, nothing read), and the taker lists the
shards (again every shard-sync interval, or when a shard of ours finished), creates a free lease
for each shard that may be leased now (:func:`~user_limits.kinesis.leases.eligible`: not finished,
parents finished), reads the stream's leases, and writes what
:func:`~user_limits.kinesis.leases.decide` says. What it holds afterwards is published to the
consumer's loop, which starts a reader for each lease gained and drops the reader of each lease
lost. Renewals run on their own thread so that neither a long batch nor a slow listing lets a
lease lapse.
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
        self._threads: list[threading.Thread] = []
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

    # -- the threads

    def start(self) -> None:
        """One round before the loop starts (so it has leases to read), then the two threads."""
        self._guarded(self.round)
        self._threads = [
            threading.Thread(target=self._every, args=(self.renew,), name="lease-renewer", daemon=True),
            threading.Thread(target=self._every, args=(self.take,), name="lease-taker", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _every(self, work: Callable[[], None]) -> None:
        # At a fixed rate, not a fixed pause: a slow call does not push the next one later.
        interval = self.options.renew_interval
        due = time.monotonic() + interval
        while not self._stop.wait(max(0.0, due - time.monotonic())):
            due = max(due + interval, time.monotonic())
            self._guarded(work)

    def _guarded(self, work: Callable[[], None]) -> None:
        try:
            work()
        except Exception as error:  # a store or Kinesis that fails: held leases lapse, try again
            self.log("lease-round-failed", error=f"{type(error).__name__}: {error}")

    def stop(self) -> None:
        """Stop renewing and release every lease held, so another consumer takes them at once."""
        self._stop.set()
        for thread in self._threads:
            thread.join()
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

    # -- the work

    def round(self) -> None:
        """Renew, then take: what each thread does, in one call."""
        self.renew()
        self.take()

    def renew(self) -> None:
        """Renew every lease held (a write each, conditional on holder and counter); a refusal is a loss.

        Apart from :meth:`take`, and on its own thread, so that a slow listing or store read never
        lets a lease lapse.
        """
        started = time.monotonic()
        with self._lock:
            mine = dict(self._held)
        until = self.wall_ms() + int(self.options.lease_seconds * 1000)
        renewed: dict[str, Lease] = {}
        refused: list[str] = []
        for shard_id, lease in mine.items():
            new = lease.renewed(until)
            if self.table.write_lease(lease, new):
                renewed[shard_id] = new
            else:
                refused.append(shard_id)
        with self._lock:
            for shard_id, new in renewed.items():
                if shard_id in self._held and self._held[shard_id].counter == new.counter:
                    self._held[shard_id] = new
            lost = [s for s in refused if self._held.get(s) == mine[s] and s not in self._finished]
            for shard_id in lost:
                del self._held[shard_id]
            count = len(self._held)
        for shard_id in lost:
            self.log("lease-lost", consumer=self.options.consumer_id, shard=shard_id)
        if self.observer is not None:
            self.observer.leases_held(count)
        spent = time.monotonic() - started
        if spent > self.options.renew_interval:
            # Renewals this slow let leases lapse: the store is overloaded.
            self.log("lease-renewal-slow", seconds=round(spent, 3), renewInterval=self.options.renew_interval)

    def take(self) -> None:
        """List (when due), open the eligible shards' leases, then take free ones and steal one if due."""
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
            mine = dict(self._held)
        # Ours as the renewer last wrote them; a lease the store shows in another's hands is lost.
        current = [mine.get(shard_id, lease) if lease.holder == me else lease for shard_id, lease in leases.items()]
        decision = decide(me, current, open_shards, now_ms)
        decision.renew = []  # the renewer's
        # Ours in the store but not held here: a consumer restarted under the same id. Taken back
        # (a conditional write on our own name), they count towards the share decide() computed.
        open_ids = set(open_shards)
        orphans = [lease for s, lease in leases.items() if lease.holder == me and s not in mine and s in open_ids]
        decision.take = orphans + decision.take
        held, gained, _ = apply_decision(self.table, me, decision, now_ms + int(self.options.lease_seconds * 1000))
        for before, after in gained:
            self.log("lease-taken", consumer=me, shard=after.shard_id, previousHolder=before.holder)
            if before.holder not in (None, me) and self.observer is not None:
                self.observer.lease_taken_over()
        with self._lock:
            lost = [s for s, lease in mine.items() if leases.get(s, lease).holder != me and self._held.get(s) == lease]
            for shard_id in lost:
                del self._held[shard_id]
            # A shard finished by the loop meanwhile stays released.
            self._held.update({s: lease for s, lease in held.items() if s not in self._finished})
            count = len(self._held)
        for shard_id in lost:
            self.log("lease-lost", consumer=me, shard=shard_id)
        self.rounds += 1
        if self.observer is not None:
            self.observer.leases_held(count)


__all__ = ["LeaseKeeper", "LeaseObserver", "LeaseOptions"]
