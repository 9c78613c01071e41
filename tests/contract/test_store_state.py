"""The stream bookkeeping every store reads whole and sets outright (what ``migrate`` copies), on every store:

- ``counters()``: every counter by name, as counted, zero on a fresh store;
- ``checkpoints()``: every stream and shard, sorted, their texts exactly as given;
- ``load_state``: the counters (those not given to 0) and ``asOf`` set, each checkpoint stored
  unless a later one is; a counter a SQL store has no column for is refused, nothing written;
- ``open_store(read_only=True)``: SQLite and PostgreSQL refuse writes; SQLite creates no file.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.streams import STREAM_ARN, created, noise, process, progress, record, reset
from user_limits.bootstrap import open_store, processor
from user_limits.stores.base import LimitStore, StoreError
from user_limits.stream.records import Checkpoint

NAMED = ("applied", "skipped", "ignored")


def test_a_fresh_store_counts_nothing_and_holds_no_checkpoint(store: LimitStore) -> None:
    counters = store.counters()
    assert set(NAMED) <= set(counters)
    assert not any(counters.values())
    assert store.checkpoints() == []


def test_counters_and_checkpoints_are_read_whole(store: LimitStore) -> None:
    first = [record(created("L1", 1), 0), record(progress("L1", 2, "5", "0"), 1), record(noise(3), 2)]
    process(store, first, Checkpoint(STREAM_ARN, "shardId-000000000001", "900000000000000000000000000001", 2))
    process(store, [record(progress("L1", 2, "5", "0"), 3)], Checkpoint("other\x00stream", "shard\x1bB", "7"))
    counters = store.counters()
    assert {name: counters[name] for name in NAMED} == {"applied": 2, "skipped": 1, "ignored": 1}
    assert store.checkpoints() == [
        Checkpoint(STREAM_ARN, "shardId-000000000001", "900000000000000000000000000001", 2),
        Checkpoint("other\x00stream", "shard\x1bB", "7", 0),
    ]


def test_load_state_sets_counters_and_as_of_and_moves_checkpoints_forward_only(store: LimitStore) -> None:
    process(store, [record(created("L1", 1), 0), record(reset("L1", 2, 5), 1)], Checkpoint("s", "a", "50"))
    store.load_state(
        {"applied": 7, "ignored": 3},
        [Checkpoint("s", "a", "40"), Checkpoint("s", "b", "123456789012345678901234567890123456789012345678901234567")],
        1234,
    )
    counters = store.counters()
    assert {name: counters[name] for name in NAMED} == {"applied": 7, "skipped": 0, "ignored": 3}
    stats = store.stats()
    assert (stats.applied, stats.skipped, stats.ignored) == (7, 0, 3)
    assert store.as_of() == 1234  # set, not the newer one the batch applied
    assert store.checkpoints() == [
        Checkpoint("s", "a", "50", 0),  # the stored one is later
        Checkpoint("s", "b", "123456789012345678901234567890123456789012345678901234567", 0),
    ]
    store.load_state({}, [], None)
    assert not any(store.counters().values())
    assert store.as_of() is None


def test_a_counter_a_sql_store_does_not_keep_is_refused(store: LimitStore) -> None:
    if store.url.startswith("dynamodb"):
        pytest.skip("DynamoDB keeps a counter of any name")
    with pytest.raises(StoreError, match="no counter"):
        store.load_state({"applied": 5, "unheard_of": 1}, [Checkpoint("s", "a", "1")], 10)
    assert not any(store.counters().values())
    assert store.checkpoints() == []
    assert store.as_of() is None


def test_read_only_sqlite_is_not_created_and_refuses_writes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/store.db"
    with pytest.raises(StoreError, match="no such file"):
        open_store(url, read_only=True)
    assert not (tmp_path / "store.db").exists()
    open_store(url).close()
    reader = open_store(url, read_only=True)
    try:
        with pytest.raises(StoreError, match="readonly"):
            reader.load_state({"applied": 1}, [], 1)
    finally:
        reader.close()
    assert open_store(url).counters()["applied"] == 0


@pytest.mark.servers
def test_read_only_postgres_refuses_writes(postgres_store_url: str) -> None:
    reader = open_store(postgres_store_url, read_only=True)
    try:
        with pytest.raises(StoreError, match="read-only"):
            reader.load_state({"applied": 1}, [], 1)
        result = processor(reader).process([record(created("L1", 1), 0)])
        assert "read-only" in str(result.error)
    finally:
        reader.close()
    assert open_store(postgres_store_url).counters()["applied"] == 0


@pytest.mark.servers
def test_read_only_dynamodb_opens_without_writing(dynamodb_store_url: str) -> None:
    from user_limits.stores.dynamodb.layout import LAYOUT, META, item_key
    from user_limits.stores.dynamodb.store import DynamoDBStore

    writer = DynamoDBStore(dynamodb_store_url)
    table, client = writer.table, writer._client
    client.delete_item(TableName=table, Key=item_key(META, LAYOUT))  # as a table made without init
    DynamoDBStore(dynamodb_store_url, read_only=True).close()
    assert "Item" not in client.get_item(TableName=table, Key=item_key(META, LAYOUT), ConsistentRead=True)
    DynamoDBStore(dynamodb_store_url).close()
    assert "Item" in client.get_item(TableName=table, Key=item_key(META, LAYOUT), ConsistentRead=True)
    writer.close()
