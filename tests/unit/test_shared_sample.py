"""The real upstream sample, through the CLI and the Lambda handler: three DEPOSIT limits back at
progress 0 with their resets' nextResetTime, two resets parked (their limits were never created),
six other types ignored, nine events applied."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.streams import export, lambda_event
from user_limits import aws_lambda
from user_limits.bootstrap import open_store
from user_limits.inputs import parse_records
from user_limits.replay import replay

# The sample is an excerpt: the daily and weekly resets between sequence numbers 11 and 235 are
# not in it, so the DAY and WEEK limits still hold the progress of 200 their last resets (235,
# 236) say they no longer have (unusedAmount 10000.00 and 50000.00, resetAmount 0): two drifted.
# The MONTH limit's reset (unusedAmount 249800.00, resetAmount 200.00) agrees.
EXPECTED_COUNTS = {"applied": 9, "skipped": 0, "ignored": 6, "parked": 2, "deadLettered": 0, "drifted": 2}


def expected_limits(sample: list[dict[str, Any]]) -> list[tuple[str, str, str, int]]:
    """(userLimitId, type, progress, nextResetTime): each created limit, with its reset's next reset time."""
    created = {e["payload"]["userLimitId"] for e in sample if e["type"] == "USER_LIMIT_CREATED"}
    resets = {
        e["payload"]["userLimitId"]: e["payload"]["nextResetTime"] for e in sample if e["type"] == "USER_LIMIT_RESET"
    }
    return sorted((limit_id, "DEPOSIT", "0", resets[limit_id]) for limit_id in created)


def summary(limits: list[dict[str, object]]) -> list[tuple[object, ...]]:
    return [(x["userLimitId"], x["type"], x["progress"], x["nextResetTime"]) for x in limits]


def test_the_sample_is_what_the_expectations_assume(shared_sample: list[dict[str, Any]]) -> None:
    assert len(expected_limits(shared_sample)) == 3
    ours = {"USER_LIMIT_CREATED", "USER_LIMIT_PROGRESS_CHANGED", "USER_LIMIT_RESET"}
    assert sum(e["type"] not in ours for e in shared_sample) == 6


def test_through_the_cli(shared_sample: list[dict[str, Any]], tmp_path: Path) -> None:
    path = tmp_path / "events.json"
    path.write_text(json.dumps(shared_sample))
    store = f"sqlite:///{tmp_path / 'sample.db'}"
    script = Path(sys.executable).parent / "user-limits"
    command = [str(script)] if script.is_file() else [sys.executable, "-c", "from user_limits.cli import main; main()"]

    def cli(*args: str) -> str:
        done = subprocess.run([*command, *args, "--store", store], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout

    cli("replay", str(path), "--batch-size", "4")
    assert summary(json.loads(cli("export"))) == expected_limits(shared_sample)
    stats = json.loads(cli("stats", "--json"))
    assert isinstance(stats.pop("parkedOldestAgeMs"), int)
    assert stats.pop("leases") == []  # no consumer fleet
    assert stats == EXPECTED_COUNTS
    parked = json.loads(cli("parked", "--json"))
    assert [e["sequenceNumber"] for e in parked] == [238, 239]
    assert parked == [e for e in shared_sample if e["sequenceNumber"] in (238, 239)]
    drifts = json.loads(cli("drift", "--json"))
    assert [(d["sequenceNumber"], d["figure"], d["ours"], d["producer"]) for d in drifts] == [
        (236, "unusedAmount", "49800", "50000.00"),  # 0w2KzcVUkZcb6n2z4DcE, the WEEK limit
        (235, "unusedAmount", "9800", "10000.00"),  # LKMgxoE0yFgH6F6iShEu, the DAY limit
    ]


def test_through_the_lambda_handler(
    shared_sample: list[dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'lambda.db'}"
    monkeypatch.setenv("USER_LIMITS_STORE", url)
    aws_lambda.reset()
    try:
        assert aws_lambda.handler(lambda_event(shared_sample)) == {"batchItemFailures": []}
    finally:
        aws_lambda.reset()
    store = open_store(url)
    try:
        assert summary(export(store)) == expected_limits(shared_sample)
        assert store.stats().as_json() == EXPECTED_COUNTS
    finally:
        store.close()


@pytest.mark.parametrize(("first", "second"), [(1, 1000), (2, 3), (5, 1), (1000, 7), (17, 17)])
def test_replaying_twice_in_any_batch_size(shared_sample: list[dict[str, Any]], first: int, second: int) -> None:
    records = parse_records(json.dumps(shared_sample).encode())
    store = open_store("memory://")
    replay(store, records, batch_size=first)
    once = export(store)
    assert summary(once) == expected_limits(shared_sample)
    again = replay(store, records, batch_size=second)
    assert export(store) == once
    assert again.applied == 0
    counts = store.stats().as_json()
    assert {k: counts[k] for k in ("applied", "parked", "deadLettered")} == {
        "applied": 9,
        "parked": 2,
        "deadLettered": 0,
    }
