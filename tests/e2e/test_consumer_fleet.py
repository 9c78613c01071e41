"""A fleet of `consume --lease` processes on one 8-shard kinesis-local stream: balance, takeover, joining,
resharding, and a paused consumer that cannot commit for a shard it lost.

Each consumer is a real process (kill -9 and SIGSTOP need one), with short leases (3 s, renewed
every second), into each store that holds a fleet (SQLite, PostgreSQL, DynamoDB). A result is
exact when the store's export equals a plain replay of the same records.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_kinesis_consumer import replayed, user_stream
from tests.integration.test_metrics import Samples, samples, value
from tests.servers.kinesis_local import DUMMY_CREDENTIALS, KinesisLocalServer, free_port
from tests.streams import export
from user_limits.bootstrap import open_store
from user_limits.kinesis.leases import Lease

pytestmark = pytest.mark.servers
LEASE_SECONDS = 3
SHARDS = 8


def wait_for(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds} s: {what}")
        time.sleep(0.2)


class Member:
    """One `consume --lease` process, its log in a file."""

    def __init__(
        self, kinesis: KinesisLocalServer, url: str, stream: str, name: str, folder: Path, *extra: str
    ) -> None:
        self.name = name
        self.log_path = folder / f"{name}.log"
        command = [sys.executable, "-m", "user_limits", "consume", "--stream", stream, "--store", url]
        command += ["--endpoint", kinesis.endpoint, "--lease", "--consumer-id", name]
        command += ["--lease-seconds", str(LEASE_SECONDS), "--batch-size", "25", "--poll-interval", "0.1"]
        command += ["--shard-refresh", "1", "--log-interval", "1", *extra]
        with self.log_path.open("w") as log:
            self.process = subprocess.Popen(command, env={**os.environ, **DUMMY_CREDENTIALS}, stderr=log)

    def lines(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"event": "text", "text": line})
        return out

    def events(self, name: str) -> list[dict[str, Any]]:
        return [line for line in self.lines() if line.get("event") == name]

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30)


class Fleet:
    def __init__(self, kinesis: KinesisLocalServer, url: str, folder: Path) -> None:
        self.kinesis = kinesis
        self.url = url
        self.folder = folder
        self.stream = kinesis.create_stream(SHARDS)
        self.store = open_store(url)
        self.members: dict[str, Member] = {}
        self.records: list[tuple[str, bytes]] = []
        self.settled: dict[str, set[str]] = {}  # the holdings balanced() last found

    def join(self, name: str, *extra: str) -> Member:
        member = Member(self.kinesis, self.url, self.stream, name, self.folder, *extra)
        self.members[name] = member
        return member

    def put(self, records: list[tuple[str, bytes]]) -> None:
        self.kinesis.put(self.stream, records)
        self.records += records

    def leases(self) -> list[Lease]:
        leases: list[Lease] = self.store.leases(self.stream)  # type: ignore[attr-defined]
        return leases

    def holdings(self) -> dict[str, set[str]]:
        """Live holder -> shards, by the store's leases."""
        now = time.time_ns() // 1_000_000
        held: dict[str, set[str]] = {}
        for lease in self.leases():
            if lease.holder is not None and lease.live(now):
                held.setdefault(lease.holder, set()).add(lease.shard_id)
        return held

    def balanced(self, names: list[str], low: int, high: int) -> bool:
        held = self.holdings()
        if (
            set(held) == set(names)
            and sum(map(len, held.values())) == len(self.open_shards())
            and all(low <= len(shards) <= high for shards in held.values())
        ):
            self.settled = held
            return True
        return False

    def open_shards(self) -> list[str]:
        return [lease.shard_id for lease in self.leases() if not self._finished(lease.shard_id)]

    def _finished(self, shard_id: str) -> bool:
        checkpoint = self.store.checkpoint(self.stream, shard_id)
        return checkpoint is not None and checkpoint.sub_sequence_number == 2**31 - 1

    def exact(self, reference: list[dict[str, object]]) -> bool:
        return export(self.store) == reference

    def close(self) -> None:
        for member in self.members.values():
            if member.process.poll() is None:
                member.process.kill()
                member.process.wait()
        self.store.close()


@pytest.fixture(params=["sqlite", "postgres", "dynamodb"])
def fleet(kinesis_local: KinesisLocalServer, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Fleet]:
    kind = request.param
    url = f"sqlite:///{tmp_path}/store.db" if kind == "sqlite" else request.getfixturevalue(f"{kind}_store_url")
    running = Fleet(kinesis_local, url, tmp_path)
    yield running
    running.close()


def metric_samples(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        return samples(answer.read().decode())


def stamp(line: dict[str, Any]) -> float:
    return datetime.fromisoformat(line["time"]).timestamp()


def test_three_consumers_share_eight_shards_evenly_and_end_exact(fleet: Fleet, tmp_path: Path) -> None:
    fleet.put(user_stream(users=40, events_per_user=4))
    for name in ("c1", "c2", "c3"):
        fleet.join(name)
    reference = replayed(tmp_path, fleet.records)
    wait_for(lambda: fleet.balanced(["c1", "c2", "c3"], 2, 3), 60, "3 consumers holding 2-3 shards each")
    wait_for(lambda: fleet.exact(reference), 60, "the export of a plain replay")
    # Steady: a few renewals later the shares are the same.
    time.sleep(2 * LEASE_SECONDS)
    assert fleet.balanced(["c1", "c2", "c3"], 2, 3)
    # The progress lines say which shards each holds.
    assert all(member.events("progress")[-1]["shards"] for member in fleet.members.values())
    # SIGTERM: c3 exits 0 after the batch in hand and releases its leases, which the others take
    # as free leases (previousHolder null), not as expired ones.
    released = fleet.settled["c3"]
    stopping = time.time()
    assert fleet.members["c3"].stop() == 0
    assert fleet.members["c3"].events("leases-released")[-1]["shards"] == sorted(released)
    wait_for(lambda: fleet.balanced(["c1", "c2"], 4, 4), 60, "c1 and c2 holding 4 shards each")
    taken = {
        line["shard"]: line["previousHolder"]
        for name in ("c1", "c2") for line in fleet.members[name].events("lease-taken")
        if line["shard"] in released and stamp(line) > stopping
    }  # fmt: skip
    assert taken == dict.fromkeys(released)
    assert [fleet.members[name].stop() for name in ("c1", "c2")] == [0, 0]
    assert {lease.holder for lease in fleet.leases()} == {None}
    assert fleet.exact(reference)
    assert fleet.store.stats().applied == len(fleet.records)


def test_the_shards_of_a_consumer_killed_are_taken_over_within_two_leases(fleet: Fleet, tmp_path: Path) -> None:
    fleet.put(user_stream(users=40, events_per_user=3))
    ports = {name: free_port() for name in ("c1", "c2")}
    for name in ("c1", "c2", "c3"):
        fleet.join(name, *(["--metrics-port", str(ports[name])] if name in ports else []))
    wait_for(lambda: fleet.balanced(["c1", "c2", "c3"], 2, 3), 60, "3 consumers holding 2-3 shards each")
    lost = fleet.settled["c3"]
    fleet.members["c3"].process.send_signal(signal.SIGKILL)
    fleet.members["c3"].process.wait()
    killed_at = time.time()
    # More events for every user while c3's shards wait for their new holders.
    fleet.put(user_stream(users=40, events_per_user=3, first_seq=4))
    wait_for(lambda: fleet.balanced(["c1", "c2"], 4, 4), 60, "c1 and c2 holding 4 shards each")
    taken = [
        line for name in ("c1", "c2") for line in fleet.members[name].events("lease-taken")
        if line["shard"] in lost and stamp(line) > killed_at
    ]  # fmt: skip
    assert {line["shard"] for line in taken} == lost
    assert max(stamp(line) for line in taken) - killed_at <= 2 * LEASE_SECONDS
    assert all(line["previousHolder"] == "c3" for line in taken)
    # Their metrics say so: 4 leases held each, and c3's taken over between them.
    scraped = {name: metric_samples(port) for name, port in ports.items()}
    assert [value(found, "user_limits_consumer_leases_held") for found in scraped.values()] == [4, 4]
    takeovers = sum(value(found, "user_limits_consumer_lease_takeovers_total") or 0 for found in scraped.values())
    assert takeovers >= len(lost)
    reference = replayed(tmp_path, fleet.records)
    wait_for(lambda: fleet.exact(reference), 60, "the export of a plain replay")
    assert fleet.store.stats().applied == len(fleet.records)  # nothing applied twice, nothing lost


def test_a_fourth_consumer_gets_its_share_within_a_few_renewals(fleet: Fleet, tmp_path: Path) -> None:
    fleet.put(user_stream(users=40, events_per_user=2))
    for name in ("c1", "c2", "c3"):
        fleet.join(name)
    wait_for(lambda: fleet.balanced(["c1", "c2", "c3"], 2, 3), 60, "3 consumers holding 2-3 shards each")
    fleet.join("c4")
    # Two steals at most, one a renewal (a second each): well within ten renewals.
    wait_for(lambda: fleet.balanced(["c1", "c2", "c3", "c4"], 2, 2), 10 * LEASE_SECONDS / 3 + 5, "2 shards each")
    fleet.put(user_stream(users=40, events_per_user=2, first_seq=3))
    reference = replayed(tmp_path, fleet.records)
    wait_for(lambda: fleet.exact(reference), 60, "the export of a plain replay")


def test_resharding_keeps_parents_before_children_across_consumers(fleet: Fleet, tmp_path: Path) -> None:
    fleet.put(user_stream(users=40, events_per_user=3))
    for name in ("c1", "c2", "c3"):
        fleet.join(name)
    wait_for(lambda: fleet.balanced(["c1", "c2", "c3"], 2, 3), 60, "3 consumers holding 2-3 shards each")
    client = fleet.kinesis.client()
    parent = "shardId-000000000000"
    client.split_shard(StreamName=fleet.stream, ShardToSplit=parent, NewStartingHashKey=str(2**128 // 16))
    fleet.kinesis.wait_active(fleet.stream)
    # Later events of the same users land on the children too: read before the parent, the
    # parent's older events would be skipped as late and the export would differ.
    fleet.put(user_stream(users=40, events_per_user=3, first_seq=4))
    reference = replayed(tmp_path, fleet.records)
    wait_for(lambda: fleet.exact(reference), 90, "the export of a plain replay")
    lines = [line for member in fleet.members.values() for line in member.lines()]
    finished = [stamp(line) for line in lines if line.get("event") == "shard-finished" and line["shard"] == parent]
    children = {"shardId-000000000008", "shardId-000000000009"}
    started = [stamp(line) for line in lines if line.get("event") == "shard-started" and line["shard"] in children]
    assert finished and len(started) >= 2
    assert min(started) >= min(finished)
    assert fleet._finished(parent)


def test_a_consumer_paused_past_its_lease_cannot_commit_for_the_shards_it_lost(fleet: Fleet, tmp_path: Path) -> None:
    fleet.put(user_stream(users=40, events_per_user=2))
    for name in ("c1", "c2", "c3"):
        fleet.join(name)
    reference = replayed(tmp_path, fleet.records)
    wait_for(lambda: fleet.exact(reference), 60, "the export of a plain replay")
    wait_for(lambda: fleet.balanced(["c1", "c2", "c3"], 2, 3), 60, "3 consumers holding 2-3 shards each")
    paused = fleet.members["c3"]
    lost = fleet.settled["c3"]
    paused.process.send_signal(signal.SIGSTOP)
    try:
        # Records for c3's shards arrive while it sleeps; c1 and c2 take its shards and apply them.
        fleet.put(user_stream(users=40, events_per_user=2, first_seq=3))
        reference = replayed(tmp_path, fleet.records)
        wait_for(lambda: fleet.balanced(["c1", "c2"], 4, 4), 60, "c1 and c2 holding every shard")
        wait_for(lambda: fleet.exact(reference), 60, "the export of a plain replay")
        stats = fleet.store.stats()
    finally:
        paused.process.send_signal(signal.SIGCONT)
    # c3 wakes with its iterators before those records: had it committed them, `skipped` would grow.
    wait_for(
        lambda: all(
            any(
                line.get("shard") == shard
                for line in paused.lines()
                if line.get("event") in ("checkpoint-refused", "shard-dropped")
            )
            for shard in lost
        ),
        30,
        "c3 dropping every shard it lost",
    )
    time.sleep(1)
    assert fleet.store.stats() == stats
    assert fleet.exact(reference)
    assert paused.stop() == 0
