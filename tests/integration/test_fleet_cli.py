"""The fleet on the command line: consume's lease flags refused in one line, and `leases [--json]`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.cli_runner import Run, subprocess_cli
from tests.streams import created, records
from user_limits.bootstrap import open_store, processor
from user_limits.kinesis.leases import Lease
from user_limits.kinesis.shards import end_of_shard
from user_limits.stream.records import Checkpoint

STREAM = "fleet"


def one_line_exit_2(result: Run, says: str) -> None:
    assert result.code == 2, result.err
    assert "Traceback" not in result.err
    assert len(result.err.splitlines()) == 1, result.err
    assert says in result.err, result.err


def consume(tmp_path: Path, *args: str, store: str | None = None) -> Run:
    url = store or f"sqlite:///{tmp_path / 'fleet.db'}"
    # A port nothing listens on: each of these is refused before Kinesis is asked anything.
    return subprocess_cli(
        "consume", "--stream", STREAM, "--store", url, "--endpoint", "http://127.0.0.1:9", *args, cwd=tmp_path
    )


@pytest.mark.parametrize(
    "static", [["--worker", "1", "--workers", "2"], ["--workers", "2"], ["--worker", "0"]], ids=" ".join
)
def test_lease_and_a_static_share_are_exclusive(tmp_path: Path, static: list[str]) -> None:
    one_line_exit_2(consume(tmp_path, "--lease", *static), "--lease and --worker/--workers are exclusive")


def test_the_memory_store_refuses_lease(tmp_path: Path) -> None:
    one_line_exit_2(consume(tmp_path, "--lease", store="memory://"), "cannot hold leases")


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--consumer-id", "c1"], "--consumer-id needs --lease"),
        (["--lease-seconds", "5"], "--lease-seconds needs --lease"),
        (["--lease", "--lease-seconds", "0"], "--lease-seconds 0.0: give 1 to 86400"),
        (["--lease", "--lease-seconds", "nan"], "--lease-seconds nan"),
        (["--lease", "--consumer-id", " "], "--consumer-id ' '"),
        (["--lease", "--consumer-id", "a\x1bb"], "--consumer-id"),
    ],
)
def test_bad_lease_flags_are_one_line(tmp_path: Path, args: list[str], says: str) -> None:
    one_line_exit_2(consume(tmp_path, *args), says)


def test_leases_lists_shard_holder_expiry_and_checkpoint(run: Any, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    store = open_store(url)
    for shard in ("shardId-000000000000", "shardId-000000000001", "shardId-000000000002"):
        store.create_lease(STREAM, shard)  # type: ignore[attr-defined]
    held = Lease(STREAM, "shardId-000000000000").taken("c1", 4_102_444_800_000)  # 2100-01-01
    assert store.write_lease(Lease(STREAM, "shardId-000000000000"), held)  # type: ignore[attr-defined]
    checkpoint = Checkpoint(
        STREAM, "shardId-000000000000", "49590338271490256608559692538361571095921575989136588898", 0, held.guard()
    )
    assert processor(store).process(records([created("L1", 1)], 5), checkpoint).error is None
    processor(store).commit_checkpoint(end_of_shard(STREAM, "shardId-000000000002", None))
    store.close()

    listed = json.loads(run("leases", "--json", "--store", url).out)
    assert listed == [
        {
            "stream": STREAM,
            "shard": "shardId-000000000000",
            "holder": "c1",
            "counter": 1,
            "expiresAt": 4_102_444_800_000,
            "checkpoint": {"sequenceNumber": checkpoint.sequence_number, "subSequenceNumber": 0},
            "finished": False,
        },
        {
            "stream": STREAM,
            "shard": "shardId-000000000001",
            "holder": None,
            "counter": 0,
            "expiresAt": None,
            "checkpoint": None,
            "finished": False,
        },
        {
            "stream": STREAM,
            "shard": "shardId-000000000002",
            "holder": None,
            "counter": 0,
            "expiresAt": None,
            "checkpoint": {"sequenceNumber": "0", "subSequenceNumber": 2**31 - 1},
            "finished": True,
        },
    ]
    assert json.loads(run("stats", "--json", "--store", url).out)["leases"] == listed
    table = run("leases", "--store", url).out
    assert "c1" in table and "2100-01-01 00:00:00 UTC (in " in table and "finished" in table
    assert table.splitlines()[-1] == "3 leases, 1 live consumers"


def test_a_store_without_a_fleet_lists_no_leases(run: Any, tmp_path: Path) -> None:
    assert json.loads(run("leases", "--json", "--store", "memory://").out) == []
    assert run("leases", "--store", f"sqlite:///{tmp_path / 'none.db'}").out.splitlines() == [
        "0 leases, 0 live consumers"
    ]
