"""``user-limits replay s3://BUCKET/PREFIX`` against moto's S3 on loopback: a Firehose archive
replays exactly as a file of the same records, in key order, selected by --since/--until, with
dead letters that say where they came from, harmlessly over what the live stream delivered, in
bounded memory; bad arguments are one line and exit 2.
"""

from __future__ import annotations

import base64
import gzip
import io
import itertools
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cli_runner import Run
from tests.servers.s3_local import S3Bucket
from tests.streams import created, encode, lambda_event, progress
from user_limits.testing.synthetic import generate

pytestmark = pytest.mark.servers

PREFIX = "limit-events/"


def key(hour: str, n: int = 1) -> str:
    """A Firehose key: PREFIX + YYYY/MM/DD/HH/ + stream-version-YYYY-MM-DD-HH-MM-SS-id."""
    stamp = hour.replace("/", "-")
    return f"{PREFIX}{hour}/user-limits-archive-1-{stamp}-{n:02d}-00-{uuid.UUID(int=n)}"


def sample(count: int, seed: int = 7) -> list[bytes]:
    """Synthetic records (noise, duplicates, late copies, orphans, poison) that a JSON Lines file
    can hold: a record cut short on a line of its own is not a record there, so those are left
    out, and the file starts with an envelope."""
    records = [r.data for r in generate(count, users=60, seed=seed, poison_rate=0.01)]
    kept = [data for data in records if data.endswith(b"}") or b"{" not in data]
    while not kept[0].startswith(b"{"):
        kept.pop(0)
    return kept


def replay_archive(run: Any, bucket: S3Bucket, store: str, *args: str, prefix: str = PREFIX) -> Run:
    result = run("replay", bucket.url(prefix), "--endpoint", bucket.endpoint, "--store", store, *args)
    assert result.code == 0, result.err
    return result


def store_state(run: Any, store: str) -> dict[str, Any]:
    state = {}
    for command in (["export"], ["stats", "--json"], ["parked", "--json"], ["dead-letters", "--json"]):
        result = run(*command, "--store", store)
        assert result.code == 0, result.err
        state[command[0]] = json.loads(result.out)
    state["stats"].pop("parkedOldestAgeMs")  # grows with the clock
    return state


def reference(run: Any, tmp_path: Path, records: list[bytes]) -> dict[str, Any]:
    """What a CLI replay of ``records`` as JSON Lines gives."""
    path = tmp_path / f"reference-{uuid.uuid4().hex}.jsonl"
    path.write_bytes(b"".join(record + b"\n" for record in records))
    store = f"sqlite:///{tmp_path / path.stem}.db"
    assert run("replay", str(path), "--store", store).code == 0
    return store_state(run, store)


def without_coordinates(letters: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return sorted((letter["reason"], letter["data"]) for letter in letters)


# -- an archive replays as a file of the same records


def put_in_every_form(bucket: S3Bucket, records: list[bytes]) -> list[str]:
    """``records`` in six objects over three hours across a day, one of each form Firehose (or a
    copy of its output) takes; the keys in order."""
    parts = [records[n * len(records) // 6 : (n + 1) * len(records) // 6] for n in range(6)]
    keys = [
        key("2026/11/30/22", 1),
        key("2026/11/30/22", 2) + ".gz",
        key("2026/11/30/23", 1),
        key("2026/11/30/23", 2),
        key("2026/12/01/00", 1) + ".gz",
        key("2026/12/01/00", 2),
    ]
    bucket.put(keys[0], b"".join(parts[0]))  # no delimiter
    bucket.put(keys[1], b"".join(parts[1]), gzipped=True)  # .gz
    bucket.put(keys[2], b"".join(record + b"\n" for record in parts[2]))  # newline-delimited
    bucket.put(keys[3], b"\r\n".join(parts[3]), gzipped=True, content_encoding="gzip")  # no .gz suffix
    half = len(parts[4]) // 2  # two gzip members, as `cat a.gz b.gz` makes
    bucket.put(keys[4], gzip.compress(b"".join(parts[4][:half])) + gzip.compress(b"\n".join(parts[4][half:])))
    bucket.put(keys[5], b"".join(parts[5]))
    return keys


def test_an_archive_replay_equals_a_cli_replay_of_the_same_records(
    run: Any, s3_bucket: S3Bucket, tmp_path: Path
) -> None:
    records = sample(3000)
    assert any(b"\xff" in record for record in records)  # poison between records, not only envelopes
    put_in_every_form(s3_bucket, records)
    store = f"sqlite:///{tmp_path / 'archive.db'}"
    result = replay_archive(run, s3_bucket, store, "--batch-size", "257")
    assert result.out.startswith(f"{s3_bucket.url(PREFIX)}: 6 objects, ")
    assert f" bytes, {len(records)} records: " in result.out
    expected = reference(run, tmp_path, records)
    got = store_state(run, store)
    assert got["export"] == expected["export"]
    assert len(got["export"]) > 50
    assert got["stats"] == expected["stats"]
    assert got["parked"] == expected["parked"]
    assert without_coordinates(got["dead-letters"]) == without_coordinates(expected["dead-letters"])
    assert result.err == ""


def test_objects_are_read_in_key_order_across_hours_and_days(
    run: Any, s3_bucket: S3Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Read in key order: the progress of seq 2 waits (parked) for its limit, then seq 3 follows.
    # Read in any other order, one of them is a late copy, skipped, and the progress is wrong.
    monkeypatch.setattr("user_limits.operations.archive.LIST_PAGE_SIZE", 2)  # several pages of the listing
    objects = {
        key("2026/11/30/23"): [progress("L1", 2, "10", "0")],
        key("2026/12/01/00", 1): [created("L1", 1, value="100")],
        key("2026/12/01/00", 2): [progress("L1", 3, "5", "10")],
        key("2026/12/01/01"): [progress("L1", 4, "1", "15")],
        key("2026/12/01/10"): [progress("L1", 5, "2", "16")],
    }
    for name in reversed(list(objects)):  # put newest first: the order comes from the keys
        s3_bucket.put(name, b"".join(encode(value) for value in objects[name]))
    store = f"sqlite:///{tmp_path / 'ordered.db'}"
    replay_archive(run, s3_bucket, store, "--batch-size", "1")
    (limit,) = store_state(run, store)["export"]
    assert limit["progress"] == "18"
    assert store_state(run, store)["stats"]["skipped"] == 0


# -- --since and --until


@pytest.mark.parametrize(
    ("options", "hours"),
    [
        ([], ["29/23", "30/00", "30/12", "30/13", "12/01/00", "no hour"]),
        (["--since", "2026-11-30"], ["30/00", "30/12", "30/13", "12/01/00"]),
        (["--until", "2026-11-30"], ["29/23", "30/00", "30/12", "30/13"]),
        (["--since", "2026-11-30T12", "--until", "2026-11-30T12"], ["30/12"]),
        (["--since", "2026-11-30T13", "--until", "2026-12-01"], ["30/13", "12/01/00"]),
        (["--since", "2026-11-29T23", "--until", "2026-11-30T00"], ["29/23", "30/00"]),
    ],
)
@pytest.mark.parametrize("prefix", [PREFIX, PREFIX.rstrip("/")])
def test_since_and_until_select_objects_by_the_hour_in_their_key_both_included(
    run: Any, s3_bucket: S3Bucket, tmp_path: Path, options: list[str], hours: list[str], prefix: str
) -> None:
    keys = {
        "29/23": key("2026/11/29/23"),
        "30/00": key("2026/11/30/00"),
        "30/12": key("2026/11/30/12"),
        "30/13": key("2026/11/30/13"),
        "12/01/00": key("2026/12/01/00"),
        "no hour": f"{PREFIX}manifests/latest",
    }
    for n, (name, object_key) in enumerate(keys.items()):
        s3_bucket.put(object_key, encode(created(f"L-{name}", 1, user_id=f"u{n}")))
    s3_bucket.put("other/2026/11/30/12/x", encode(created("L-other-prefix", 1)))  # not under the prefix
    store = f"sqlite:///{tmp_path / 'selected.db'}"
    result = replay_archive(run, s3_bucket, store, *options, prefix=prefix)
    assert result.out.startswith(f"{s3_bucket.url(prefix)}: {len(hours)} object")
    read = sorted(limit["userLimitId"] for limit in store_state(run, store)["export"])
    assert read == sorted(f"L-{name}" for name in hours)


# -- dead letters say where they came from


def test_dead_letters_say_which_object_and_offset_they_came_from(run: Any, s3_bucket: S3Bucket, tmp_path: Path) -> None:
    good = [encode(created(f"L{n}", 1, user_id=f"u{n}")) for n in range(4)]
    poison = encode(progress("L0", 2, "NaN", "0"))
    cut = good[3][:40]
    plain = good[0] + b"garbage\xff" + good[1] + poison + cut  # garbage between objects, a final record cut short
    zipped = gzip.compress(good[2] + b"\n" + good[3] + b"\n" + good[0])
    truncated = zipped[: len(zipped) - 12]  # a gzip stream that ends early, inside the last record
    first, second = key("2026/11/30/12"), key("2026/11/30/13") + ".gz"
    s3_bucket.put(first, plain)
    s3_bucket.put(second, truncated)
    store = f"sqlite:///{tmp_path / 'dead.db'}"
    result = replay_archive(run, s3_bucket, store)
    # The damaged gzip stream is a warning, with the object's name; the run goes on and succeeds.
    assert f"user-limits: warning: s3://{s3_bucket.name}/{second}: the gzip stream ends early" in result.err
    assert "1 warning (above)" in result.out
    state = store_state(run, store)
    assert [limit["userLimitId"] for limit in state["export"]] == ["L0", "L1", "L2", "L3"]
    unzipped = gzip.decompress(zipped)
    cut_in_gzip = unzipped[len(good[2]) + len(good[3]) + 2 :]
    letters = {letter["partitionKey"]: letter for letter in state["dead-letters"]}
    where = f"s3://{s3_bucket.name}/"
    expected = {
        f"{where}{first}@{len(good[0])}": b"garbage\xff",
        f"{where}{first}@{len(good[0]) + 8 + len(good[1])}": poison,
        f"{where}{first}@{len(plain) - len(cut)}": cut,
    }
    assert {k: base64.b64decode(v["data"]) for k, v in letters.items() if k.startswith(where + first)} == expected
    (in_gzip,) = (letter for k, letter in letters.items() if k.startswith(where + second))
    assert in_gzip["partitionKey"] == f"{where}{second}@{len(good[2]) + len(good[3]) + 2}"
    assert cut_in_gzip.startswith(base64.b64decode(in_gzip["data"]))
    assert all(letter["sequenceNumber"] is None and letter["shardId"] is None for letter in letters.values())
    assert "`amount` is not a decimal" in letters[f"{where}{first}@{len(good[0]) + 8 + len(good[1])}"]["reason"]
    listing = run("dead-letters", "--store", store).out
    for location in letters:
        assert location in listing
    # Replayed again, nothing new: the dead letters are kept once.
    replay_archive(run, s3_bucket, store)
    assert store_state(run, store)["dead-letters"] == state["dead-letters"]


# -- over the live stream (rule 3)


def live_replay(run: Any, tmp_path: Path, store: str, records: list[bytes], first_position: int) -> None:
    """``records`` as the live stream delivers them: a Lambda event, with Kinesis coordinates."""
    path = tmp_path / f"live-{uuid.uuid4().hex}.json"
    path.write_text(json.dumps(lambda_event(records, first_position)))
    assert run("replay", str(path), "--store", store).code == 0


def test_an_archive_replayed_over_what_the_live_stream_delivered_changes_nothing(
    run: Any, s3_bucket: S3Bucket, tmp_path: Path
) -> None:
    records = sample(2000, seed=11)
    store = f"sqlite:///{tmp_path / 'live.db'}"
    live_replay(run, tmp_path, store, records, 0)
    before = store_state(run, store)
    put_in_every_form(s3_bucket, records[len(records) // 3 :])  # the archive of the last two thirds
    replay_archive(run, s3_bucket, store)
    after = store_state(run, store)
    assert after["export"] == before["export"]
    assert after["parked"] == before["parked"]
    # skipped and ignored count every delivery; applied and parked what the store holds.
    for counter in ("applied", "parked"):
        assert after["stats"][counter] == before["stats"][counter], counter
    assert after["stats"]["skipped"] > before["stats"]["skipped"]
    # A poison record is kept again, by its archive location: the live copy had coordinates.
    assert {letter["data"] for letter in after["dead-letters"]} == {letter["data"] for letter in before["dead-letters"]}
    replay_archive(run, s3_bucket, store)  # again: its dead letters are kept once
    again = store_state(run, store)
    delivered = {"skipped": again["stats"]["skipped"], "ignored": again["stats"]["ignored"]}
    assert again == {**after, "stats": {**after["stats"], **delivered}}


def test_a_store_bootstrapped_from_the_archive_then_fed_the_overlapping_stream_equals_the_whole_history(
    run: Any, s3_bucket: S3Bucket, tmp_path: Path
) -> None:
    records = sample(2000, seed=12)
    put_in_every_form(s3_bucket, records[: 2 * len(records) // 3])  # the archive: the first two thirds
    store = f"sqlite:///{tmp_path / 'bootstrapped.db'}"
    replay_archive(run, s3_bucket, store)
    live_replay(run, tmp_path, store, records[len(records) // 3 :], len(records) // 3)  # from an older position
    expected = reference(run, tmp_path, records)
    got = store_state(run, store)
    assert got["export"] == expected["export"]
    assert got["parked"] == expected["parked"]
    assert got["stats"]["applied"] == expected["stats"]["applied"]


# -- reading that fails part-way, objects that go away


def test_a_read_that_fails_part_way_says_what_is_committed_and_the_same_command_then_completes(
    run: Any, s3_bucket: S3Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from botocore.response import StreamingBody

    records = sample(3000)
    put_in_every_form(s3_bucket, records)
    store = f"sqlite:///{tmp_path / 'interrupted.db'}"
    whole_body = StreamingBody.iter_chunks
    bodies = 0

    def reset_in_the_fourth_object(self: StreamingBody, chunk_size: int = 1024) -> Iterator[bytes]:
        nonlocal bodies
        bodies += 1
        if bodies == 4:
            yield from itertools.islice(whole_body(self, 100), 1)
            raise ConnectionResetError(104, "Connection reset by peer")  # the fault: the connection drops
        yield from whole_body(self, chunk_size)

    monkeypatch.setattr(StreamingBody, "iter_chunks", reset_in_the_fourth_object)
    failed = run("replay", s3_bucket.url(PREFIX), "--endpoint", s3_bucket.endpoint, "--store", store)
    one_line_exit_2(failed, "reading failed after 100 bytes: ConnectionResetError")
    assert "records are committed, none after them; replaying it again once it is fixed is safe" in failed.err
    assert store_state(run, store)["stats"]["applied"] > 0
    monkeypatch.setattr(StreamingBody, "iter_chunks", whole_body)
    replay_archive(run, s3_bucket, store)
    expected = reference(run, tmp_path, records)
    got = store_state(run, store)
    assert got["export"] == expected["export"]
    assert got["stats"]["applied"] == expected["stats"]["applied"]


def test_an_object_deleted_after_the_listing_is_a_warning_and_the_rest_is_read(
    run: Any, s3_bucket: S3Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from botocore.response import StreamingBody

    first, second, third = key("2026/11/30/12"), key("2026/11/30/13"), key("2026/11/30/14")
    for n, name in enumerate((first, second, third)):
        s3_bucket.put(name, encode(created(f"L{n}", 1, user_id=f"u{n}")))
    whole_body = StreamingBody.iter_chunks

    def delete_the_second_while_the_first_is_read(self: StreamingBody, chunk_size: int = 1024) -> Iterator[bytes]:
        s3_bucket.client.delete_object(Bucket=s3_bucket.name, Key=second)  # a lifecycle rule, say
        yield from whole_body(self, chunk_size)

    monkeypatch.setattr(StreamingBody, "iter_chunks", delete_the_second_while_the_first_is_read)
    store = f"sqlite:///{tmp_path / 'gone.db'}"
    result = replay_archive(run, s3_bucket, store)
    assert (
        result.err == f"user-limits: warning: s3://{s3_bucket.name}/{second}: deleted since it was listed; not read\n"
    )
    assert "1 warning (above)" in result.out
    assert [limit["userLimitId"] for limit in store_state(run, store)["export"]] == ["L0", "L2"]


# -- the progress bar


def test_the_progress_bar_shows_objects_and_bytes(s3_bucket: S3Bucket, tmp_path: Path) -> None:
    from rich.console import Console

    from user_limits.bootstrap import open_store
    from user_limits.cli.archive_replay import replay_archive as replay_with_bar
    from user_limits.operations.archive import Archive, parse_archive_url, s3_client

    records = sample(400)
    s3_bucket.put(key("2026/11/30/12"), b"".join(records[:200]))
    s3_bucket.put(key("2026/11/30/13") + ".gz", b"\n".join(records[200:]), gzipped=True)
    screen = io.StringIO()
    archive = Archive(parse_archive_url(s3_bucket.url(PREFIX)), s3_client(s3_bucket.endpoint))
    store = open_store("memory://")
    replay_with_bar(store, archive, 50, Console(file=screen, force_terminal=True, width=160))
    shown = screen.getvalue()
    assert f"replaying {s3_bucket.url(PREFIX)}" in shown
    assert "2/2 objects" in shown
    assert "kB" in shown  # bytes read, of the total
    assert store.stats().applied > 0


# -- bad arguments: one line on stderr, exit 2, nothing opened


def one_line_exit_2(result: Run, says: str) -> None:
    assert result.code == 2, result
    assert "Traceback" not in result.err
    assert len(result.err.splitlines()) == 1, result.err
    assert result.err.startswith("user-limits: error: ")
    assert says in result.err, result.err
    assert result.out == ""


def test_bad_arguments_are_one_line_and_exit_2(
    run: Any, s3_bucket: S3Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3_bucket.put(key("2026/11/30/12"), encode(created("L1", 1)))
    url, endpoint = s3_bucket.url(PREFIX), s3_bucket.endpoint
    store = ["--store", f"sqlite:///{tmp_path / 'never.db'}"]
    events = tmp_path / "events.jsonl"
    events.write_bytes(encode(created("L1", 1)) + b"\n")
    cases: list[tuple[list[str], str]] = [
        (["s3://"], "no bucket"),
        (["s3:///limit-events/"], "no bucket"),
        (["s3://bad_bucket!/x"], "not an S3 bucket name"),
        ([f"s3://no-such-{s3_bucket.name}/x", "--endpoint", endpoint], "no bucket 'no-such-"),
        ([s3_bucket.url("nothing-here/"), "--endpoint", endpoint], "no objects"),
        ([url, "--endpoint", endpoint, "--since", "2027-01-01"], "no objects with keys from 2027/01/01/00"),
        ([url, "--endpoint", "ftp://x"], "--endpoint 'ftp://x'"),
        ([url, "--endpoint", "http://[::1"], "--endpoint 'http://[::1'"),
        ([url, "--endpoint", ""], "--endpoint ''"),
        ([url, "--endpoint", endpoint, "--region", "eu west-1"], "--region 'eu west-1'"),
        ([url, "--endpoint", endpoint, "--region", ""], "--region ''"),
        ([url, "--endpoint", endpoint, "--since", "2026-13-01"], "--since '2026-13-01': expected a UTC date"),
        ([url, "--endpoint", endpoint, "--until", "yesterday"], "--until 'yesterday'"),
        ([url, "--endpoint", endpoint, "--since", "2026-12-01", "--until", "2026-11-30"], "is after --until"),
        ([str(events), "--since", "2026-11-30"], "--since applies to s3:// archives only"),
        ([str(events), "--endpoint", endpoint], "--endpoint applies to s3:// archives only"),
        ([url, str(tmp_path / "missing.jsonl"), "--endpoint", endpoint], "No such file"),
        ([url, "--endpoint", "http://127.0.0.1:9"], "cannot list the objects"),
    ]
    for args, says in cases:
        one_line_exit_2(run("replay", *args, *store), says)
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    one_line_exit_2(run("replay", url, "--endpoint", endpoint, *store), "cannot list the objects")
    assert not (tmp_path / "never.db").exists()  # refused before the store is opened


def test_no_credentials_from_the_console_script_is_one_line(s3_bucket: S3Bucket, tmp_path: Path) -> None:
    env = {
        name: value for name, value in os.environ.items() if name not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    }
    script = Path(sys.executable).parent / "user-limits"
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "user_limits"]
    done = subprocess.run(
        [*command, "replay", s3_bucket.url(PREFIX), "--endpoint", s3_bucket.endpoint],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    one_line_exit_2(Run(done.returncode, done.stdout, done.stderr), "Unable to locate credentials")
    assert not (tmp_path / "user-limits.db").exists()


# -- bounded memory


PEAK_RSS = """
import resource, sys
from user_limits.cli import main
sys.argv = ["user-limits", *sys.argv[1:]]
try:
    main()
except SystemExit as done:
    code = done.code
print("peak-rss-kb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
sys.exit(code)
"""


# Linux counts the RSS of the process a child was forked from into the child's ru_maxrss (at its
# exec), so the measured process is started by a small one, not by the test's own.
STARTER = "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))"


def peak_rss_of_replay(bucket: S3Bucket, prefix: str, store: Path) -> int:
    """Peak RSS, in bytes, of a process that replays the archive under ``prefix``."""
    command = [sys.executable, "-c", PEAK_RSS, "replay", bucket.url(prefix), "--endpoint", bucket.endpoint]
    done = subprocess.run(
        [sys.executable, "-c", STARTER, *command],
        capture_output=True,
        text=True,
        env={**os.environ, "USER_LIMITS_STORE": f"sqlite:///{store}"},
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    return int(done.stderr.split("peak-rss-kb ")[1].split()[0]) * 1024  # Linux reports kB


def test_memory_stays_bounded_whatever_the_archive_size(s3_bucket: S3Bucket, tmp_path: Path) -> None:
    records = [record.data for record in generate(80_000, users=5000, seed=5)]
    # The baseline already fills what the store keeps in memory whatever the input (the SQLite
    # store's row cache and page cache, both capped), so that what differs is what size adds.
    medium = records[: len(records) // 4]
    s3_bucket.put("medium/2026/11/30/12/a", b"".join(medium))
    # About 34 MB of records: two thirds in one object with no delimiter, the rest in smaller
    # objects, newline-delimited and gzipped (each gunzips to a few MB).
    most = 2 * len(records) // 3
    s3_bucket.put("large/2026/11/30/12/a", b"".join(records[:most]))
    rest = records[most:]
    for n in range(4):
        part = rest[n * len(rest) // 4 : (n + 1) * len(rest) // 4]
        s3_bucket.put(f"large/2026/11/30/13/{n}.gz", b"\n".join(part), gzipped=n % 2 == 0)
    size = sum(map(len, records))
    assert size > 30_000_000
    baseline = peak_rss_of_replay(s3_bucket, "medium/", tmp_path / "medium.db")
    large = peak_rss_of_replay(s3_bucket, "large/", tmp_path / "large.db")
    # Reading the 23 MB object whole would add more than its size; streamed, the batches and
    # buffers add about 10 MB.
    assert large - baseline < 16_000_000, (baseline, large, size)
