"""`user-limits dead-letters redrive` on a SQLite file: the counts, --json, --dry-run, the
selectors, and bad flags as one line and exit 2. What a redrive does on every store is in
tests/contract/test_redrive_contract.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli_runner import cli
from tests.redrive_family import FamilyBeforeWeek
from tests.streams import checkpoint_of, created, progress, record
from user_limits.bootstrap import open_store
from user_limits.stream.batch import BatchProcessor


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite store where the older release dead-lettered a WEEK limit (its progress change
    parked) and a record that is not JSON."""
    url = f"sqlite:///{tmp_path}/store.db"
    opened = open_store(url)
    batch = [
        record(created("L1", 3, period="WEEK", value="500"), 1),
        record(progress("L1", 6, "20", "0"), 2),
        record(b"{not json", 3),
    ]
    result = BatchProcessor(FamilyBeforeWeek(), opened).process(batch, checkpoint_of(batch[-1]))
    assert result.error is None
    opened.close()
    return url


def dead_letters(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, url: str
) -> list[dict[str, object]]:
    listed: list[dict[str, object]] = json.loads(cli(capsys, monkeypatch, "dead-letters", "--json", "--store", url).out)
    return listed


def test_redrive_prints_the_counts_and_leaves_what_failed_again(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, sqlite_url: str
) -> None:
    run = cli(capsys, monkeypatch, "dead-letters", "redrive", "--store", sqlite_url)
    assert run.code == 0, run.err
    assert run.out.strip() == "redriven 2: applied 2, skipped 0, ignored 0, parked 0, still dead 1"
    (left,) = dead_letters(capsys, monkeypatch, sqlite_url)
    assert str(left["reason"]).startswith("invalid envelope")
    stats = json.loads(cli(capsys, monkeypatch, "stats", "--json", "--store", sqlite_url).out)
    assert (stats["applied"], stats["parked"], stats["deadLettered"]) == (2, 0, 1)
    shown = json.loads(cli(capsys, monkeypatch, "show", "u1", "--json", "--store", sqlite_url).out)
    assert [(limit["period"], limit["progress"]) for limit in shown] == [("WEEK", "20")]


def test_a_dry_run_reports_and_changes_nothing(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, sqlite_url: str
) -> None:
    before = dead_letters(capsys, monkeypatch, sqlite_url)
    run = cli(capsys, monkeypatch, "dead-letters", "--store", sqlite_url, "redrive", "--dry-run")
    assert run.code == 0, run.err
    assert run.out.strip() == (
        "would have redriven 2: applied 2, skipped 0, ignored 0, parked 0, still dead 1; nothing changed (dry run)"
    )
    assert dead_letters(capsys, monkeypatch, sqlite_url) == before


def test_json_counts_and_the_selectors(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, sqlite_url: str
) -> None:
    letters = dead_letters(capsys, monkeypatch, sqlite_url)
    (weekly,) = [letter for letter in letters if "$.period" in str(letter["reason"])]
    run = cli(
        capsys, monkeypatch, "dead-letters", "redrive", "--reason", "not JSON at all", "--json", "--store", sqlite_url
    )
    assert json.loads(run.out)["redriven"] == 0
    run = cli(capsys, monkeypatch, "dead-letters", "redrive", "--json", "--store", sqlite_url, "--reason", "$.period")
    assert json.loads(run.out) == {
        "redriven": 1,
        "applied": 2,
        "skipped": 0,
        "ignored": 0,
        "parked": 0,
        "stillDead": 0,
        "deadLettered": 0,
        "dryRun": False,
    }
    assert weekly not in dead_letters(capsys, monkeypatch, sqlite_url)
    # Its id is gone: said on stderr, not an error (a redrive run again finds it so).
    run = cli(
        capsys,
        monkeypatch,
        "dead-letters",
        "redrive",
        "--store",
        sqlite_url,
        "--id",
        "no-such",
        "--id",
        str(weekly["id"]),
    )
    assert run.code == 0, run.err
    assert run.out.strip() == "redriven 0: applied 0, skipped 0, ignored 0, parked 0, still dead 0"
    assert run.err.splitlines() == [
        "user-limits: no dead letter with id no-such",
        f"user-limits: no dead letter with id {weekly['id']}",
    ]
    # By id: the one asked for, and only it.
    (junk,) = dead_letters(capsys, monkeypatch, sqlite_url)
    run = cli(capsys, monkeypatch, "dead-letters", "redrive", "--store", sqlite_url, "--id", str(junk["id"]), "--json")
    assert (json.loads(run.out)["redriven"], json.loads(run.out)["stillDead"]) == (1, 1)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--reason", ""], "--reason is empty"),
        (["--id", ""], "--id is empty"),
        (["--bogus"], "No such option: --bogus"),
        (["--reason"], "--reason"),
        (["--store", ""], "--store ''"),
    ],
)
def test_bad_flags_are_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, sqlite_url: str, args: list[str], message: str
) -> None:
    run = cli(capsys, monkeypatch, "dead-letters", "redrive", *args)
    assert run.code == 2
    assert run.out == ""
    (line,) = run.err.splitlines()
    assert line.startswith("user-limits: error: ") and message in line


def test_the_store_given_twice_differently_is_refused(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, sqlite_url: str, tmp_path: Path
) -> None:
    run = cli(
        capsys, monkeypatch, "dead-letters", "--store", sqlite_url, "redrive", "--store", f"sqlite:///{tmp_path}/b.db"
    )
    assert run.code == 2 and "--store given twice" in run.err
