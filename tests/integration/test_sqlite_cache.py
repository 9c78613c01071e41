"""SQLite's row cache between batches: used only while no other writer could have changed the file."""

from __future__ import annotations

from pathlib import Path

from tests.streams import created, export, process, progress, records
from user_limits.stores.sql.sqlite import SQLiteStore


def test_a_write_through_the_same_connection_outside_a_batch_drops_the_cache(tmp_path: Path) -> None:
    store = SQLiteStore(f"sqlite:///{tmp_path}/store.db")
    try:
        process(store, records([created("L1", 1), progress("L1", 2, "5", "0")]))
        # Another statement of this very connection (data_version does not see those): the limit is gone.
        store._connection().execute("DELETE FROM user_limits")
        process(store, records([progress("L1", 3, "7", "5")], 10))
        assert export(store) == []
        assert store.parked_events()[0].key == "L1"
    finally:
        store.close()


def test_the_cache_saves_reads_of_limits_it_wrote(tmp_path: Path) -> None:
    store = SQLiteStore(f"sqlite:///{tmp_path}/store.db")
    try:
        process(store, records([created("L1", 1)]))
        read: list[str] = []
        store._connection().set_trace_callback(read.append)
        process(store, records([progress("L1", 2, "5", "0")], 10))
        assert not [statement for statement in read if statement.startswith("SELECT") and "user_limits" in statement]
        assert export(store)[0]["progress"] == "5"
    finally:
        store.close()
