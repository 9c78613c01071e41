"""The command line: every projection command, and every bad input (one line on stderr, a non-zero
exit, no traceback, nothing already committed lost).

Most tests run ``main()`` in process for speed; the bad inputs and the demo run the real
console script in a subprocess.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest

from tests.cli_runner import Run, console_script, subprocess_cli
from tests.streams import KINESIS_BASE, SHARD, STREAM_ARN, created, encode, lambda_event, noise, progress, reset
from user_limits.domain.model import EXPORT_FIELDS

STREAM = [
    progress("L2", 9, "5", "1", user_id="u2"),  # an orphan, parked for good
    created("L1", 1, value="9800.00", next_reset=None),
    progress("L1", 2, "0.10", "12.30"),
    noise(3),
    created("L0", 4, user_id="u2", type_="LOSS", period="WEEK", activeUntil=1_900_000_000_000),
    reset("L0", 5, next_reset=1_800_000_000_000, user_id="u2"),
    created("La", 6, value="50"),
]
EXPECTED_EXPORT = [
    ("L0", "u2", "LOSS", "WEEK", "100.00", "0", 1_900_000_000_000, 1_800_000_000_000),
    ("L1", "u1", "DEPOSIT", "DAY", "9800.00", "12.40", None, None),
    ("La", "u1", "DEPOSIT", "DAY", "50", "0", None, created("La", 6)["payload"]["nextResetTime"]),
]
# What replaying STREAM does, as the count line says it.
STREAM_COUNTS = "applied 5, skipped 0, ignored 1, parked 1, dead-lettered 0, drifted 1"


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


def counters(run: Any, sqlite_url: str) -> dict[str, Any]:
    """``stats --json`` without the age of the oldest parked event, which grows by the clock."""
    stats: dict[str, Any] = json.loads(run("stats", "--json", "--store", sqlite_url).out)
    stats.pop("parkedOldestAgeMs")
    return stats


def write_array(path: Path, values: list[Any]) -> Path:
    path.write_bytes(b"[" + b",\n".join(encode(v) for v in values) + b"]")
    return path


def write_lines(path: Path, values: list[Any]) -> Path:
    path.write_bytes(b"\n".join(encode(v) for v in values) + b"\n")
    return path


def exported(run: Any, sqlite_url: str) -> list[dict[str, Any]]:
    result = run("export", "--store", sqlite_url)
    assert result.code == 0, result.err
    value: list[dict[str, Any]] = json.loads(result.out)
    return value


# -- replay and export


@pytest.mark.parametrize("batch_size", ["1", "2", "1000"])
@pytest.mark.parametrize("form", ["array", "lines", "lambda"])
def test_replay_every_format_and_batch_size(
    run: Any, sqlite_url: str, tmp_path: Path, form: str, batch_size: str
) -> None:
    path = tmp_path / f"events.{form}"
    if form == "array":
        write_array(path, STREAM)
    elif form == "lines":
        write_lines(path, STREAM)
    else:
        path.write_text(json.dumps(lambda_event(STREAM)))
    result = run("replay", str(path), "--store", sqlite_url, "--batch-size", batch_size)
    assert result.code == 0, result.err
    assert result.out.strip() == f"{path}: 7 records: {STREAM_COUNTS}"
    limits = exported(run, sqlite_url)
    keys = ("userLimitId", "userId", "type", "period", "value", "progress", "activeUntil", "nextResetTime")
    assert [tuple(limit[k] for k in keys) for limit in limits] == EXPECTED_EXPORT


def test_export_has_exactly_the_exported_fields_sorted_with_nulls(run: Any, sqlite_url: str, tmp_path: Path) -> None:
    run("replay", str(write_array(tmp_path / "e.json", STREAM)), "--store", sqlite_url)
    result = run("export", "--store", sqlite_url)
    limits = json.loads(result.out)
    assert all(list(limit) == list(EXPORT_FIELDS) for limit in limits)
    assert [limit["userLimitId"] for limit in limits] == ["L0", "L1", "La"]
    assert limits[1] == {
        "userLimitId": "L1",
        "userId": "u1",
        "brandId": "brand-1",
        "type": "DEPOSIT",
        "period": "DAY",
        "status": "ACTIVE",
        "value": "9800.00",
        "progress": "12.40",
        "currencyCode": "SEK",
        "activeFrom": created("L1", 1)["payload"]["activeFrom"],
        "activeUntil": None,
        "nextResetTime": None,
        "createdAt": created("L1", 1)["createdAt"],
    }
    assert '"value":"9800.00"' in result.out  # decimals as strings, never numbers


def test_export_of_an_empty_store_is_an_empty_array(run: Any, sqlite_url: str) -> None:
    assert exported(run, sqlite_url) == []


def test_replaying_twice_changes_nothing(run: Any, sqlite_url: str, tmp_path: Path) -> None:
    path = write_lines(tmp_path / "e.jsonl", STREAM)
    run("replay", str(path), "--store", sqlite_url)
    first = exported(run, sqlite_url)
    result = run("replay", str(path), "--store", sqlite_url, "--batch-size", "3")
    assert "applied 0, skipped 6, ignored 1, parked 0" in result.out  # the orphan is parked already
    assert exported(run, sqlite_url) == first


def test_replay_of_several_files_in_order(run: Any, sqlite_url: str, tmp_path: Path) -> None:
    first = write_array(tmp_path / "a.json", STREAM[:2])
    second = write_lines(tmp_path / "b.jsonl", STREAM[2:])
    result = run("replay", str(first), str(second), "--store", sqlite_url)
    assert result.code == 0
    assert [line.split(":")[0] for line in result.out.splitlines()] == [str(first), str(second)]
    assert [limit["progress"] for limit in exported(run, sqlite_url)] == ["0", "12.40", "0"]


def test_the_store_comes_from_the_environment(
    run: Any, sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("USER_LIMITS_STORE", sqlite_url)
    run("replay", str(write_array(tmp_path / "e.json", STREAM)))
    monkeypatch.delenv("USER_LIMITS_STORE")
    assert len(exported(run, sqlite_url)) == 3


# -- show, parked, dead-letters, stats, init


def test_show_json(run: Any, sqlite_url: str, tmp_path: Path) -> None:
    run("replay", str(write_array(tmp_path / "e.json", STREAM)), "--store", sqlite_url)
    result = run("show", "u1", "--json", "--store", sqlite_url)
    limits = json.loads(result.out)
    assert [(x["userLimitId"], x["remaining"], x["usedPercent"]) for x in limits] == [
        ("L1", "9787.60", "0.13"),
        ("La", "50", "0.00"),
    ]
    assert json.loads(run("show", "nobody", "--json", "--store", sqlite_url).out) == []


def test_show_table(run: Any, sqlite_url: str, tmp_path: Path) -> None:
    run("replay", str(write_array(tmp_path / "e.json", STREAM)), "--store", sqlite_url)
    result = run("show", "u1", "--store", sqlite_url)
    assert result.code == 0
    assert "user u1" in result.out
    assert "9800.00 SEK" in result.out and "12.40" in result.out


def test_show_of_an_unknown_user_is_one_line(run: Any, sqlite_url: str) -> None:
    result = run("show", "nobody", "--store", sqlite_url)
    assert result.code != 0
    assert result.err.strip() == "user-limits: error: no limits for user 'nobody'"


def test_parked_json_gives_whole_envelopes(run: Any, sqlite_url: str, tmp_path: Path) -> None:
    run("replay", str(write_array(tmp_path / "e.json", STREAM)), "--store", sqlite_url)
    assert json.loads(run("parked", "--json", "--store", sqlite_url).out) == [STREAM[0]]
    table = run("parked", "--store", sqlite_url).out
    assert "L2" in table and "1 parked" in table


def test_dead_letters_json_has_reason_bytes_and_coordinates(run: Any, sqlite_url: str, tmp_path: Path) -> None:
    event = lambda_event(
        [created("L1", 1), b"\xff\xfe raw", progress("L1", 2, "NaN", "0")], 10, arrival_s=1_700_000_000
    )
    path = tmp_path / "event.json"
    path.write_text(json.dumps(event))
    run("replay", str(path), "--store", sqlite_url)
    letters = json.loads(run("dead-letters", "--json", "--store", sqlite_url).out)
    assert len(letters) == 2
    first = next(letter for letter in letters if letter["sequenceNumber"] == str(KINESIS_BASE + 11))
    assert base64.b64decode(first["data"]) == b"\xff\xfe raw"
    assert "UTF-8" in first["reason"]
    assert first == {
        "id": f"{STREAM_ARN}|{SHARD}|{KINESIS_BASE + 11}|0",
        "reason": first["reason"],
        "data": first["data"],
        "streamArn": STREAM_ARN,
        "shardId": SHARD,
        "partitionKey": "u1",
        "sequenceNumber": str(KINESIS_BASE + 11),
        "subSequenceNumber": None,
        "arrivalTime": 1_700_000_000_000,
    }
    second = next(letter for letter in letters if letter is not first)
    assert "amount" in second["reason"]
    assert json.loads(base64.b64decode(second["data"])) == progress("L1", 2, "NaN", "0")
    assert "2 dead letters" in run("dead-letters", "--store", sqlite_url).out


def test_stats_json(run: Any, sqlite_url: str, tmp_path: Path) -> None:
    run("replay", str(write_array(tmp_path / "e.json", [*STREAM, STREAM[2]])), "--store", sqlite_url)
    stats = json.loads(run("stats", "--json", "--store", sqlite_url).out)
    assert isinstance(stats.pop("parkedOldestAgeMs"), int)  # its figures: tests/test_parked_review.py
    assert stats == {
        "applied": 5,
        "skipped": 1,
        "ignored": 1,
        "parked": 1,
        "deadLettered": 0,
        "drifted": 1,  # L1's progress change says 0 remain, not 9787.60
        "leases": [],
    }
    table = run("stats", "--store", sqlite_url).out.splitlines()
    assert table[0] == "applied 5, skipped 1, ignored 1, parked 1, dead-lettered 0, drifted 1"
    assert table[1].startswith("oldest parked event: ")


def test_init_creates_a_sqlite_store(run: Any, tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    result = run("init", "--store", f"sqlite:///{path}")
    assert result.code == 0
    assert result.out.strip() == f"sqlite:///{path}: ready"
    assert path.is_file()
    assert json.loads(run("stats", "--json", "--store", f"sqlite:///{path}").out)["applied"] == 0


def test_demo_replays_the_bundled_sample(run: Any, sqlite_url: str, tmp_path: Path) -> None:
    bundled = tmp_path / "bundled.json"
    bundled.write_bytes(files("user_limits.data").joinpath("sample_events.json").read_bytes())
    reference = f"sqlite:///{tmp_path / 'reference.db'}"
    replayed = run("replay", str(bundled), "--store", reference).out
    result = run("demo", "--store", sqlite_url)
    assert result.code == 0
    assert f"into {sqlite_url}" in result.out
    assert f"this run: {replayed.split(': ', 1)[1].split(': ', 1)[1].strip()}" in result.out
    assert exported(run, sqlite_url) == exported(run, reference)
    users = {limit["userId"] for limit in exported(run, sqlite_url)}
    assert all(f"user {user}" in result.out for user in users)
    # Again: everything is a duplicate now.
    assert "this run: applied 0," in run("demo", "--store", sqlite_url).out
    assert exported(run, sqlite_url) == exported(run, reference)


def test_demo_in_a_real_process(tmp_path: Path) -> None:
    result = subprocess_cli("demo", "--store", "memory://", cwd=tmp_path)
    assert result.code == 0, result.err
    assert result.err == ""
    assert "Replayed the bundled sample" in result.out
    assert "store totals: applied" in result.out


# -- bad input


def bad_inputs(tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    """name -> (arguments, what the error line says). Root reads a chmod 000 file, so an unreadable
    path is a path through a regular file (ENOTDIR), which the kernel refuses to anyone."""
    good = write_array(tmp_path / "good.json", STREAM)
    (tmp_path / "empty.json").write_bytes(b"")
    (tmp_path / "malformed.json").write_bytes(b"[" + encode(STREAM[1]) + b",")
    (tmp_path / "bad.jsonl").write_bytes(encode(STREAM[1]) + b"\n{nope\n")
    (tmp_path / "folder").mkdir()
    sqlite_url = ["--store", f"sqlite:///{tmp_path / 'cli.db'}"]
    return {
        "missing file": (["replay", str(tmp_path / "missing.json"), *sqlite_url], "No such file"),
        "unreadable file": (["replay", str(good / "child.json"), *sqlite_url], "cannot read"),
        "folder": (["replay", str(tmp_path / "folder"), *sqlite_url], "is a folder"),
        "malformed JSON": (["replay", str(tmp_path / "malformed.json"), *sqlite_url], "malformed JSON"),
        "bad JSON Lines line": (["replay", str(tmp_path / "bad.jsonl"), *sqlite_url], "line 2: malformed JSON"),
        "empty file": (["replay", str(tmp_path / "empty.json"), *sqlite_url], "empty file"),
        "good then missing file": (["replay", str(good), str(tmp_path / "missing.json"), *sqlite_url], "No such file"),
        "unknown store URL": (["replay", str(good), "--store", "mongodb://x"], "unknown store URL scheme 'mongodb'"),
        "store URL without a scheme": (["export", "--store", "user-limits.db"], "bad store URL"),
        "SQLite path in a missing folder": (
            ["replay", str(good), "--store", f"sqlite:///{tmp_path / 'no' / 'such' / 'x.db'}"],
            "does not exist",
        ),
        "SQLite store that is a folder": (["export", "--store", f"sqlite:///{tmp_path / 'folder'}"], "cannot open"),
    }


BAD_NAMES = [
    "missing file",
    "unreadable file",
    "folder",
    "malformed JSON",
    "bad JSON Lines line",
    "empty file",
    "good then missing file",
    "unknown store URL",
    "store URL without a scheme",
    "SQLite path in a missing folder",
    "SQLite store that is a folder",
]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_input_is_one_line_and_loses_nothing(run: Any, sqlite_url: str, tmp_path: Path, name: str) -> None:
    good = write_array(tmp_path / "first.json", STREAM[:3])
    run("replay", str(good), "--store", sqlite_url)
    before = exported(run, sqlite_url), counters(run, sqlite_url)
    args, expected = bad_inputs(tmp_path)[name]
    result = subprocess_cli(*args, cwd=tmp_path)
    assert result.code != 0
    assert "Traceback" not in result.err
    assert len(result.err.splitlines()) == 1, result.err
    assert result.err.startswith("user-limits: error: ")
    assert expected in result.err
    assert result.out == ""
    assert (exported(run, sqlite_url), counters(run, sqlite_url)) == before
    assert not (tmp_path / "user-limits.db").exists()  # no store was created by accident


def test_show_a_next_reset_time_beyond_year_9999(run: Any, sqlite_url: str, tmp_path: Path) -> None:
    # Any 64-bit epoch is a valid nextResetTime; a datetime cannot hold most of them.
    path = write_array(tmp_path / "e.json", [created("L1", 1, next_reset=2**63 - 1), created("L2", 2, next_reset=0)])
    run("replay", str(path), "--store", sqlite_url)
    result = run("show", "u1", "--store", sqlite_url)
    assert result.code == 0, result.err
    assert str(2**63 - 1) in result.out
    assert "1970-01-01 00:00 UTC" in result.out


def test_a_store_failure_mid_replay_keeps_the_committed_batches(
    run: Any, sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from user_limits.stores.sqlite_store import SQLiteStore

    path = write_array(tmp_path / "e.json", STREAM)
    original, calls = SQLiteStore._write, []

    def third_write_fails(self: SQLiteStore, db: Any, outcome: Any, stored: Any) -> None:
        calls.append(1)
        if len(calls) == 3:
            raise OSError("disk full (injected)")
        original(self, db, outcome, stored)

    with monkeypatch.context() as patch:
        patch.setattr(SQLiteStore, "_write", third_write_fails)
        result = run("replay", str(path), "--store", sqlite_url, "--batch-size", "2")
    assert result.code == 2
    assert len(result.err.splitlines()) == 1
    assert "the store failed at record 5" in result.err and "disk full" in result.err
    # Records 1-4 are committed: L1 exists with its progress; L0 (record 5) does not.
    assert [(x["userLimitId"], x["progress"]) for x in exported(run, sqlite_url)] == [("L1", "12.40")]
    assert run("replay", str(path), "--store", sqlite_url).code == 0
    clean = f"sqlite:///{tmp_path / 'clean.db'}"
    run("replay", str(path), "--store", clean)
    assert exported(run, sqlite_url) == exported(run, clean)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["replay"], "Missing argument"),
        (["replay", "--batch-size", "0", "events.json"], "--batch-size"),
        (["no-such-command"], "No such command"),
        (["show"], "Missing argument"),
        (["stats", "--no-such-option"], "No such option"),
    ],
)
def test_usage_errors_are_one_line_too(tmp_path: Path, args: list[str], says: str) -> None:
    done = subprocess_cli(*args, cwd=tmp_path)
    assert done.code == 2
    assert done.err.count("\n") == 1 and done.err.startswith("user-limits: error: ")
    assert says in done.err and "Traceback" not in done.err and "╭" not in done.err


# -- stored text is shown as it is, never read as rich markup

CLOSING_TAG, LINK = "[/x]", "[link=e.x]S[/link]"
# A currency that would open a hyperlink and reverse what follows: shown escaped.
ESCAPED = "100.00 \\x1b]8;;x\\x07\\u202eK"
HOSTILE = [
    created("[bold]L1[/bold]", 1, user_id="u1", currencyCode=CLOSING_TAG),
    created("L2", 2, user_id="u1", currencyCode=LINK),
    created("L3", 3, user_id="u1", currencyCode=":smile:"),
    created("L5", 6, user_id="u1", currencyCode="\x1b]8;;x\x07\u202eK"),
    progress(CLOSING_TAG, 4, "1", "0", user_id="u1"),  # parked: its key is printed
    created("L4", 5, user_id="u1", type_=CLOSING_TAG),  # dead-lettered: the reason quotes the value
]


def hostile_store(run: Any, sqlite_url: str, tmp_path: Path) -> None:
    result = run("replay", str(write_lines(tmp_path / "hostile.jsonl", HOSTILE)), "--store", sqlite_url)
    assert result.code == 0, result.err


@pytest.mark.parametrize(
    ("command", "shown"),
    [
        (["show", "u1"], ["100.00 [/x]", "100.00 " + LINK, "100.00 :smile:", ESCAPED]),
        (["parked"], ["│ [/x]        │     1 │               4 │"]),
        (["dead-letters"], ["Invalid enum value '[/x]'"]),
        (["demo"], ["100.00 [/x]", "100.00 " + LINK, "100.00 :smile:", ESCAPED]),
    ],
)
def test_stored_text_is_printed_as_it_is(
    run: Any, sqlite_url: str, tmp_path: Path, command: list[str], shown: list[str]
) -> None:
    hostile_store(run, sqlite_url, tmp_path)
    result = run(*command, "--store", sqlite_url)
    assert result.code == 0, result.err
    assert result.err == ""
    for text in shown:
        assert text in result.out
    assert "😄" not in result.out
    assert not any(char in result.out for char in "\x1b\x07\u202e")


def test_a_file_path_with_markup_is_printed_as_it_is(run: Any, sqlite_url: str, tmp_path: Path) -> None:
    (tmp_path / "[").mkdir()
    path = write_lines(tmp_path / "[" / "x][link=y].jsonl", STREAM)  # the path holds "[/x]" and "[link=y]"
    result = run("replay", str(path), "--store", sqlite_url)
    assert result.code == 0, result.err
    assert result.out.strip() == f"{path}: 7 records: {STREAM_COUNTS}"


def test_the_progress_bar_shows_a_file_name_as_it_is() -> None:
    import io

    from rich.console import Console

    from user_limits.cli.render import replay_bar as progress_bar

    screen = io.StringIO()
    with progress_bar(Console(file=screen, force_terminal=True, width=100)) as bar:
        task = bar.add_task("replaying [/x] :smile:", total=2)
        bar.advance(task, 1)
        bar.refresh()
    assert "replaying [/x] :smile:" in screen.getvalue()


# -- bad Kinesis options and empty store URLs: one line, exit 2

BAD_ENDPOINTS = ["http://[::1", "ftp://x", "not a url", "http://", "http://host:99999", "", "http://a b"]
BAD_REGIONS = ["../x", "", " ", "eu west-1", "a/b", "-eu-west-1"]


def one_line_exit_2(result: Run, says: str) -> None:
    assert result.code == 2, result.err
    assert "Traceback" not in result.err
    assert len(result.err.splitlines()) == 1, result.err
    assert result.err.startswith("user-limits: error: ")
    assert says in result.err, result.err
    assert result.out == ""


def kinesis_command(command: str, tmp_path: Path) -> list[str]:
    if command == "consume":
        return ["consume", "--stream", "s", "--store", f"sqlite:///{tmp_path / 'consumer.db'}"]
    return ["produce", str(write_lines(tmp_path / "e.jsonl", STREAM)), "--stream", "s"]


@pytest.mark.parametrize("endpoint", BAD_ENDPOINTS)
@pytest.mark.parametrize("command", ["consume", "produce"])
def test_a_bad_endpoint_is_one_line(tmp_path: Path, command: str, endpoint: str) -> None:
    result = subprocess_cli(*kinesis_command(command, tmp_path), "--endpoint", endpoint, cwd=tmp_path)
    one_line_exit_2(result, f"--endpoint {endpoint!r}")
    assert not (tmp_path / "consumer.db").exists()  # refused before the store is opened


@pytest.mark.parametrize("region", BAD_REGIONS)
@pytest.mark.parametrize("command", ["consume", "produce"])
def test_a_bad_region_is_one_line(tmp_path: Path, command: str, region: str) -> None:
    args = [*kinesis_command(command, tmp_path), "--region", region, "--endpoint", "http://127.0.0.1:9"]
    one_line_exit_2(subprocess_cli(*args, cwd=tmp_path), f"--region {region!r}")
    assert not (tmp_path / "consumer.db").exists()


@pytest.mark.parametrize(
    "args", [["replay", "events.jsonl"], ["export"], ["stats"], ["init"], ["demo"], ["serve", "--port", "0"]]
)
def test_an_empty_store_url_is_refused_not_taken_for_the_default(tmp_path: Path, args: list[str]) -> None:
    write_lines(tmp_path / "events.jsonl", STREAM)
    one_line_exit_2(subprocess_cli(*args, "--store", "", cwd=tmp_path), "--store '': empty")
    done = subprocess.run(
        [*console_script(), *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        env={**os.environ, "USER_LIMITS_STORE": ""},
    )
    one_line_exit_2(Run(done.returncode, done.stdout, done.stderr), "USER_LIMITS_STORE is set but empty")
    assert not (tmp_path / "user-limits.db").exists()


# -- inputs are read as they are applied: a malformed line mid-way, endless and huge inputs


def test_a_malformed_line_mid_way_keeps_the_batches_before_it(run: Any, sqlite_url: str, tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    lines = [encode(event) for event in STREAM]
    path.write_bytes(b"\n".join([*lines[:5], b'{"aggregateId": "u1", "cut short', *lines[5:]]) + b"\n")
    result = run("replay", str(path), "--store", sqlite_url, "--batch-size", "2")
    one_line_exit_2(result, f"{path}: line 6: malformed JSON")
    assert "the first 4 records are committed, none after them" in result.err
    assert [limit["userLimitId"] for limit in exported(run, sqlite_url)] == ["L1"]  # records 1-4; L0 is record 5
    # Fixed, the file is replayed whole: what was committed is skipped, the read model is a clean replay's.
    write_lines(path, STREAM)
    assert run("replay", str(path), "--store", sqlite_url).code == 0
    clean = f"sqlite:///{tmp_path / 'clean.db'}"
    run("replay", str(path), "--store", clean)
    assert exported(run, sqlite_url) == exported(run, clean)
    kept = ("applied", "parked", "deadLettered")  # skipped and ignored count the second run too
    stats, clean_stats = (json.loads(run("stats", "--json", "--store", url).out) for url in (sqlite_url, clean))
    assert [stats[k] for k in kept] == [clean_stats[k] for k in kept]


def test_a_malformed_second_file_keeps_the_first(run: Any, sqlite_url: str, tmp_path: Path) -> None:
    good = write_array(tmp_path / "good.json", STREAM)
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(encode(STREAM[1]) + b"\n{nope\n")
    result = run("replay", str(good), str(bad), "--store", sqlite_url)
    assert result.code == 2
    assert result.out.startswith(f"{good}: 7 records: applied 5")
    assert result.err.startswith(f"user-limits: error: {bad}: line 2: malformed JSON")
    assert result.err.rstrip().endswith("(nothing of the file is applied)")
    assert len(exported(run, sqlite_url)) == 3


def limited_cli(*args: str, cwd: Path) -> Run:
    """The console script with its address space capped at 1 GiB: reading a huge input into
    memory fails (MemoryError, a traceback) instead of swapping the machine."""
    import resource

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    done = subprocess.run(
        [*console_script(), *args], capture_output=True, text=True, cwd=cwd, timeout=120, preexec_fn=cap
    )
    return Run(done.returncode, done.stdout, done.stderr)


def sparse(path: Path, head: bytes, size: int = 10 << 30) -> Path:
    """A file of ``size`` bytes (10 GiB) that takes no disk: ``head`` and then zeros."""
    with path.open("wb") as file:
        file.write(head)
        file.truncate(size)
    return path


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda tmp: Path("/dev/zero"), "expected a JSON array, JSON Lines or a Lambda Kinesis event"),
        (lambda tmp: sparse(tmp / "zeros.jsonl", b""), "expected a JSON array, JSON Lines or a Lambda Kinesis event"),
        (lambda tmp: sparse(tmp / "array.json", b"[" + encode(STREAM[1]) + b","), "more than 128 MiB to read whole"),
        (lambda tmp: sparse(tmp / "event.json", b'{"Records": ['), "more than 128 MiB to read whole"),
        (lambda tmp: sparse(tmp / "line.jsonl", encode(STREAM[1]) + b"\n{"), "line 2 is longer than 16 MiB"),
    ],
    ids=["/dev/zero", "10 GiB of zeros", "10 GiB array", "10 GiB Lambda event", "10 GiB line"],
)
@pytest.mark.parametrize("command", ["replay", "produce"])
def test_an_endless_or_huge_input_is_one_line_in_little_memory(
    tmp_path: Path, make: Any, says: str, command: str
) -> None:
    path = make(tmp_path)
    if command == "replay":
        args = ["replay", str(path), "--store", f"sqlite:///{tmp_path / 'cli.db'}"]
    else:  # refused while reading, before anything is put: no Kinesis needed
        args = ["produce", str(path), "--stream", "s", "--endpoint", "http://127.0.0.1:9", "--region", "eu-west-1"]
    result = limited_cli(*args, cwd=tmp_path)
    one_line_exit_2(result, f"{path}: ")
    assert says in result.err


def test_a_file_name_with_control_characters_is_shown_escaped(run: Any, sqlite_url: str, tmp_path: Path) -> None:
    path = write_lines(tmp_path / "a\x1b[2Jb.jsonl", STREAM)
    result = run("replay", str(path), "--store", sqlite_url)
    assert result.code == 0, result.err
    assert "a\\x1b[2Jb.jsonl: 7 records" in result.out and "\x1b" not in result.out
    result = run("replay", str(tmp_path / "missing\x1b[2J.json"), "--store", sqlite_url)
    assert result.code == 2
    assert "missing\\x1b[2J.json: cannot read" in result.err and "\x1b" not in result.err
