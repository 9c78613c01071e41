"""``user-limits migrate --from URL --to URL`` between SQLite, PostgreSQL and DynamoDB, every direction:

- a store fed a messy stream (the upstream sample, a synthetic stream with duplicates, late copies,
  orphans and poison records, checkpoints on three shards, values big enough for DynamoDB's
  chunks) copies into a new store of any kind: afterwards ``export``, ``parked --json``,
  ``dead-letters --json`` and ``stats --json`` print the same on both sides, and so do the
  counters, checkpoints and asOf; the source is unchanged;
- the items a copy writes into DynamoDB are those the batches wrote there;
- the target must be empty, or ``--force``, which completes a copy cut short;
- ``--dry-run`` writes nothing; bad arguments are one line and exit 2.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.cli_runner import Run
from tests.servers.dynamodb_local import DynamoDBServer, new_table_name
from tests.streams import STREAM_ARN, created, encode, process, progress, record
from user_limits.bootstrap import open_store
from user_limits.domain.model import UserLimit
from user_limits.operations.migrate import migrate
from user_limits.stores.base import LimitStore, StoreError
from user_limits.stream.records import Checkpoint, Outcome, Snapshot, StreamRecord
from user_limits.testing.synthetic import generate

KINDS = ("sqlite", "postgres", "dynamodb")
COMMANDS = (("export",), ("parked", "--json"), ("dead-letters", "--json"), ("stats", "--json"))
SYNTHETIC_SHARD = "shardId-000000000001"
WHEN_WRITTEN = ("v", "storedAt", "batchIndex")


@pytest.fixture
def dynamodb_target_url(dynamodb_server: DynamoDBServer, dynamodb_credentials: None) -> Iterator[str]:
    """A table that does not exist yet (migrate creates it), deleted afterwards."""
    table = new_table_name()
    yield dynamodb_server.store_url(table)
    dynamodb_server.delete_table(table)


def source_url(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An initialised, empty store of ``kind``."""
    if kind == "sqlite":
        return f"sqlite:///{tmp_path}/source.db"
    url: str = request.getfixturevalue(f"{kind}_store_url")
    return url


def target_url(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store of ``kind`` that nothing has initialised."""
    if kind == "sqlite":
        return f"sqlite:///{tmp_path}/target.db"
    url: str = request.getfixturevalue("postgres_database" if kind == "postgres" else "dynamodb_target_url")
    return url


def messy_stream(sample: list[dict[str, Any]]) -> list[tuple[list[StreamRecord], Checkpoint | None]]:
    """Batches, each with its checkpoint: the upstream sample on one shard, a synthetic stream on
    another, and records whose values need DynamoDB's packing (big texts, big parked events and
    poison records, a dead letter without coordinates)."""
    rng = random.Random(8)
    batches: list[tuple[list[StreamRecord], Checkpoint | None]] = []
    sample_records = [record(envelope, n) for n, envelope in enumerate(sample)]
    last = sample_records[-1]
    assert last.sequence_number is not None and last.shard_id is not None
    batches.append((sample_records, Checkpoint(STREAM_ARN, last.shard_id, last.sequence_number)))
    synthetic = generate(400, users=20, seed=3, duplicate_rate=0.05, orphan_rate=0.03, poison_rate=0.02)
    stream = [
        StreamRecord(
            item.data, str(10**40 + n), None, item.partition_key, 1_700_000_000_000 + n, STREAM_ARN, SYNTHETIC_SHARD
        )
        for n, item in enumerate(synthetic)
    ]
    for start in range(0, len(stream), 200):
        cut = stream[start : start + 200]
        batches.append((cut, Checkpoint(STREAM_ARN, SYNTHETIC_SHARD, str(cut[-1].sequence_number), 0)))
    noise = "".join(rng.choices("abcdefghijklmnopqrstuvwxyz0123456789", k=60_000))
    big = [
        record(created("BIG", 1, user_id="u-big", brandId=noise[:20_000]), 9000),
        record(progress("ORPHAN", 5, "1", "0", user_id="u-orphan", pad=noise), 9001),
        record(rng.randbytes(100_000), 9002),
        StreamRecord(b"\x00not json\xff"),
    ]
    batches.append(
        (big, Checkpoint("other\x00stream", "shard|B", "12345678901234567890123456789012345678901234567890"))
    )
    return batches


def feed(url: str, sample: list[dict[str, Any]]) -> None:
    store = open_store(url)
    try:
        for batch, checkpoint in messy_stream(sample):
            process(store, batch, checkpoint)
    finally:
        store.close()


def state(run: Callable[..., Run], url: str) -> dict[str, Any]:
    """What the four commands print, and the bookkeeping they do not show."""
    shown: dict[str, Any] = {}
    for command in COMMANDS:
        done = run(*command, "--store", url)
        assert done.code == 0, done.err
        shown[" ".join(command)] = json.loads(done.out)
    age = shown["stats --json"].pop("parkedOldestAgeMs")  # grows with the clock
    shown["parked waiting"] = age is not None
    store = open_store(url, read_only=True)
    try:
        shown["counters"] = store.counters()
        shown["checkpoints"] = store.checkpoints()
        shown["asOf"] = store.as_of()
    finally:
        store.close()
    return shown


@pytest.mark.parametrize("to_kind", KINDS)
@pytest.mark.parametrize("from_kind", KINDS)
def test_migrate_copies_everything_in_every_direction(
    from_kind: str,
    to_kind: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    run: Callable[..., Run],
    shared_sample: list[dict[str, Any]],
) -> None:
    source, target = source_url(from_kind, request, tmp_path), target_url(to_kind, request, tmp_path)
    feed(source, shared_sample)
    before = state(run, source)
    assert before["export"] and before["parked --json"] and before["dead-letters --json"]
    assert len(before["checkpoints"]) == 3

    done = run("migrate", "--from", source, "--to", target, "--batch-size", "70")

    assert done.code == 0, done.err
    assert done.out.startswith(f"copied {len(before['export'])} limits, {len(before['parked --json'])} parked events")
    assert state(run, target) == before
    assert state(run, source) == before
    again = run("migrate", "--from", source, "--to", target)
    assert again.code == 2
    assert "not empty" in again.err and len(again.err.strip().splitlines()) == 1


def _items(url: str) -> list[dict[str, Any]]:
    """The table's items, without what says when they were written: a parked item's version (how
    many writes it took), a dead letter's storedAt and batchIndex (only their order counts), and
    the counters (spread over items at random, summed on read)."""
    from user_limits.stores.dynamodb.store import DynamoDBStore

    store = DynamoDBStore(url, read_only=True)
    try:
        items = []
        for page in store._client.get_paginator("scan").paginate(TableName=store.table, ConsistentRead=True):
            for item in page["Items"]:
                if item["SK"]["S"].startswith("COUNTERS#"):
                    continue
                items.append(
                    {name: value for name, value in item.items() if name not in ("v", "storedAt", "batchIndex")}
                )
        return sorted(items, key=lambda item: (item["PK"]["S"], item["SK"]["S"]))
    finally:
        store.close()


def test_the_items_a_copy_writes_into_dynamodb_are_those_the_batches_wrote(
    dynamodb_store_url: str,
    dynamodb_target_url: str,
    tmp_path: Path,
    run: Callable[..., Run],
    shared_sample: list[dict[str, Any]],
) -> None:
    """Fed by the stream, then copied out to SQLite and back into a new table: the same items."""
    feed(dynamodb_store_url, shared_sample)
    between = f"sqlite:///{tmp_path}/between.db"
    assert run("migrate", "--from", dynamodb_store_url, "--to", between).code == 0
    assert run("migrate", "--from", between, "--to", dynamodb_target_url).code == 0
    fed, copied = _items(dynamodb_store_url), _items(dynamodb_target_url)
    assert any(item["SK"]["S"].startswith("CHUNK#") for item in fed)  # the packing was exercised
    assert copied == fed


class _FailingAfter:
    """A store whose batches fail once ``allowed`` of them have committed: a copy cut short."""

    def __init__(self, store: LimitStore, allowed: int) -> None:
        self._store, self._allowed = store, allowed

    def apply_batch(
        self, keys: Mapping[str, str], project: Callable[[Snapshot[UserLimit]], Outcome[UserLimit]]
    ) -> Outcome[UserLimit]:
        if self._allowed == 0:
            raise ConnectionError("injected: the network went away")
        self._allowed -= 1
        return self._store.apply_batch(keys, project)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def test_force_completes_a_copy_cut_short(
    tmp_path: Path, run: Callable[..., Run], shared_sample: list[dict[str, Any]]
) -> None:
    source, target = f"sqlite:///{tmp_path}/source.db", f"sqlite:///{tmp_path}/target.db"
    feed(source, shared_sample)
    reader, writer = open_store(source, read_only=True), open_store(target)
    with pytest.raises(ConnectionError):
        migrate(reader, _FailingAfter(writer, 3), batch_size=10)  # type: ignore[arg-type]
    reader.close()
    writer.close()
    refused = run("migrate", "--from", source, "--to", target)
    assert refused.code == 2 and "not empty" in refused.err

    done = run("migrate", "--from", source, "--to", target, "--force")

    assert done.code == 0, done.err
    assert state(run, target) == state(run, source)


class _CountingMore:
    """A source that keeps a counter this version's SQL schema has no column for."""

    def __init__(self, store: LimitStore) -> None:
        self._store = store

    def counters(self) -> dict[str, int]:
        return {**self._store.counters(), "unheard_of": 4}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def test_a_counter_the_target_cannot_keep_is_refused_before_anything_is_copied(tmp_path: Path) -> None:
    source, target = f"sqlite:///{tmp_path}/source.db", f"sqlite:///{tmp_path}/target.db"
    store = open_store(source)
    process(store, [record(created("L1", 1))])
    writer = open_store(target)
    with pytest.raises(StoreError, match="keeps no counter unheard_of"):
        migrate(_CountingMore(store), writer)  # type: ignore[arg-type]
    assert list(writer.all_limits()) == []
    store.close()
    writer.close()


def test_force_keeps_a_newer_limit_of_the_target(tmp_path: Path, run: Callable[..., Run]) -> None:
    source, target = f"sqlite:///{tmp_path}/source.db", f"sqlite:///{tmp_path}/target.db"
    older, newer = open_store(source), open_store(target)
    process(older, [record(created("L1", 1, value="10"))])
    process(newer, [record(created("L1", 2, value="20"))])
    older.close()
    newer.close()
    assert run("migrate", "--from", source, "--to", target, "--force").code == 0
    assert [limit["value"] for limit in json.loads(run("export", "--store", target).out)] == ["20"]


def test_dry_run_counts_and_writes_nothing(
    tmp_path: Path, run: Callable[..., Run], shared_sample: list[dict[str, Any]]
) -> None:
    source = f"sqlite:///{tmp_path}/source.db"
    feed(source, shared_sample)
    limits = len(json.loads(run("export", "--store", source).out))

    done = run("migrate", "--from", source, "--to", f"sqlite:///{tmp_path}/target.db", "--dry-run")

    assert done.code == 0, done.err
    assert done.out.startswith(f"dry run, nothing written: would copy {limits} limits")
    assert "the --to store cannot be read as it is" in done.out and "no such file" in done.out
    assert not (tmp_path / "target.db").exists()


def test_dry_run_refuses_a_target_that_is_not_empty_and_writes_nothing(tmp_path: Path, run: Callable[..., Run]) -> None:
    source, target = f"sqlite:///{tmp_path}/source.db", f"sqlite:///{tmp_path}/target.db"
    for url, limit in ((source, "L1"), (target, "L2")):
        store = open_store(url)
        process(store, [record(created(limit, 1))])
        store.close()
    empty = f"sqlite:///{tmp_path}/empty.db"
    open_store(empty).close()
    before = run("export", "--store", target).out

    refused = run("migrate", "--from", source, "--to", target, "--dry-run")
    forced = run("migrate", "--from", source, "--to", target, "--dry-run", "--force")
    into_empty = run("migrate", "--from", source, "--to", empty, "--dry-run")

    assert refused.code == 2 and "not empty" in refused.err
    assert forced.code == 0 and "not empty: --force copies into it" in forced.out
    assert into_empty.code == 0 and "the --to store is empty" in into_empty.out
    assert run("export", "--store", target).out == before
    assert json.loads(run("export", "--store", empty).out) == []


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--from", "mysql://x", "--to", "sqlite:///t.db"], "unknown store URL scheme 'mysql'"),
        (["--from", "sqlite:///s.db", "--to", ""], "--to '': empty"),
        (["--from", "sqlite:///s.db", "--to", "sqlite:///s.db"], "the same store"),
        (["--from", "sqlite:///missing.db", "--to", "sqlite:///t.db"], "no such file"),
        (["--from", "sqlite:///s.db", "--to", "postgresql://u:secret@127.0.0.1:1/db"], "cannot connect"),
        (["--from", "sqlite:///s.db", "--to", "sqlite:///no/such/folder/t.db"], "does not exist"),
        (["--from", "sqlite:///s.db"], "--to"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(
    arguments: list[str], message: str, tmp_path: Path, run: Callable[..., Run]
) -> None:
    open_store("sqlite:///s.db").close()  # in the working folder

    done = run("migrate", *arguments)

    assert done.code == 2
    assert message in done.err
    assert len(done.err.strip().splitlines()) == 1
    assert "secret" not in done.err
    assert not (tmp_path / "t.db").exists()


def test_the_source_file_is_not_written(tmp_path: Path, run: Callable[..., Run]) -> None:
    source = tmp_path / "source.db"
    store = open_store(f"sqlite:///{source}")
    process(store, [record(created("L1", 1)), record(encode(b"poison"), 2)])
    store.close()
    before = source.read_bytes()
    assert run("migrate", "--from", f"sqlite:///{source}", "--to", f"sqlite:///{tmp_path}/t.db").code == 0
    assert source.read_bytes() == before


def test_a_terminal_shows_a_progress_bar(
    tmp_path: Path, run: Callable[..., Run], monkeypatch: pytest.MonkeyPatch, shared_sample: list[dict[str, Any]]
) -> None:
    import sys

    source = f"sqlite:///{tmp_path}/source.db"
    feed(source, shared_sample)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)

    done = run("migrate", "--from", source, "--to", f"sqlite:///{tmp_path}/target.db", "--batch-size", "5")

    assert done.code == 0
    assert "copying limits: " in done.err and "copying dead letters" in done.err
    assert done.out.startswith("copied ")
