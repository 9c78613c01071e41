"""What only the PostgreSQL store has: migrations, connection errors, the locked conditional write
under concurrent writers, all-or-nothing batches, paging, per-thread connections. The behaviour
every store shares is in test_store_contract.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any
from unittest import mock

import msgspec
import psycopg
import pytest

from tests.servers.postgres import PASSWORD, PostgresServer
from tests.servers.process import free_port
from user_limits.bootstrap import processor as processor_for
from user_limits.domain.model import UserLimit, export_dict
from user_limits.replay import replay
from user_limits.stores.base import StoreError
from user_limits.stores.memory_store import MemoryStore
from user_limits.stores.postgres_store import PostgresStore, initialize
from user_limits.stores.sql import core as sql_core
from user_limits.stores.sql import postgres as postgres_dialect
from user_limits.stream.records import Checkpoint, Outcome, Snapshot, StreamRecord
from user_limits.testing.synthetic import generate

pytestmark = pytest.mark.servers

STREAM = "arn:aws:kinesis:eu-west-1:123456789012:stream/user-limits"
SHARD = "shardId-000000000000"
KINESIS_SEQUENCE = 49_590_338_271_490_256_608_559_692_538_361_571_095_921_575_989_136_588_898


@pytest.fixture
def postgres_store(postgres_store_url: str) -> Iterator[PostgresStore]:
    opened = PostgresStore(postgres_store_url)
    yield opened
    opened.close()


def synthetic(count: int, users: int, seed: int) -> list[StreamRecord]:
    return [StreamRecord(record.data) for record in generate(count, users=users, seed=seed)]


def serial(records: Sequence[StreamRecord], batch_size: int = 100) -> MemoryStore:
    reference = MemoryStore()
    replay(reference, records, batch_size=batch_size)
    return reference


def contents(postgres_store: PostgresStore | MemoryStore) -> dict[str, Any]:
    """Everything a reader can see, apart from the counters."""
    return {
        "limits": [export_dict(limit) for limit in postgres_store.all_limits()],
        "positions": [(limit.last_sequence_number, limit.updated_at) for limit in postgres_store.all_limits()],
        "parked": postgres_store.parked_events(),
        "dead": sorted(postgres_store.dead_letters()),
        "as_of": postgres_store.as_of(),
    }


def limit(sequence: int, progress: str, limit_id: str = "L1") -> UserLimit:
    return UserLimit(
        limit_id, "U1", "B1", "DEPOSIT", "DAY", "ACTIVE", Decimal("9800.00"), Decimal(progress), "SEK",
        1_700_000_000_000, None, 1_700_086_400_000, 1_700_000_000_000, sequence, 1_700_000_000_000 + sequence,
    )  # fmt: skip


def writing(
    *limits: UserLimit, checkpoint: Checkpoint | None = None
) -> Callable[[Snapshot[UserLimit]], Outcome[UserLimit]]:
    """A projection whose outcome is the given limits, whatever the snapshot holds."""

    def project(snapshot: Snapshot[UserLimit]) -> Outcome[UserLimit]:
        outcome: Outcome[UserLimit] = Outcome(states={item.user_limit_id: item for item in limits})
        outcome.counts.applied = len(limits)
        outcome.checkpoint = checkpoint
        return outcome

    return project


# -- migrations and opening


def test_init_applies_the_migrations_once(postgres_database: str, postgres_server: PostgresServer) -> None:
    first = initialize(postgres_database)
    second = initialize(postgres_database)

    assert "applied 0001_initial, 0002_decimal_text, 0003_drift" in first
    assert "up to date" in second
    assert PASSWORD not in first + second and "***" in first
    with psycopg.connect(postgres_database) as connection:
        rows = connection.execute("SELECT version, name FROM schema_migrations ORDER BY version").fetchall()
    assert rows == [(1, "initial"), (2, "decimal_text"), (3, "drift"), (4, "leases")]


def column_types(url: str) -> dict[str, str]:
    with psycopg.connect(url) as connection:
        rows = connection.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = 'user_limits' AND column_name IN ('value', 'progress')"
        ).fetchall()
    return dict(rows)


def test_a_database_of_schema_1_is_migrated_to_decimal_text_keeping_its_rows(
    postgres_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    schema_1 = [migration for migration in postgres_dialect.migrations() if migration.version == 1]
    with monkeypatch.context() as patch:
        patch.setattr(postgres_dialect, "migrations", lambda: schema_1)
        initialize(postgres_database)
    with psycopg.connect(postgres_database) as connection:  # a row as today's schema holds it
        connection.execute(
            "INSERT INTO user_limits VALUES ('L1', 'U1', 'B1', 'DEPOSIT', 'DAY', 'ACTIVE', 9800.00, 0.10, 'SEK', "
            "1700000000000, NULL, NULL, 1700000000000, 1, 1700000000001)"
        )
    assert column_types(postgres_database) == {"value": "numeric", "progress": "numeric"}
    with pytest.raises(StoreError, match="older than this version"):
        PostgresStore(postgres_database)

    assert "applied 0002_decimal_text" in initialize(postgres_database)
    assert column_types(postgres_database) == {"value": "text", "progress": "text"}
    postgres_store = PostgresStore(postgres_database)
    try:
        kept = postgres_store.user_limit("U1", "L1")
        assert kept is not None and (str(kept.value), str(kept.progress)) == ("9800.00", "0.10")
        postgres_store.apply_batch(
            {"L1": "U1"}, writing(msgspec.structs.replace(limit(2, "-0"), value=Decimal("1E+5")))
        )
        moved = postgres_store.user_limit("U1", "L1")
        assert moved is not None and (str(moved.value), str(moved.progress)) == ("1E+5", "-0")
    finally:
        postgres_store.close()


def test_two_concurrent_inits_are_safe(postgres_database: str) -> None:
    start = threading.Barrier(2)
    messages: list[str] = []

    def init() -> None:
        start.wait()
        messages.append(initialize(postgres_database))

    threads = [threading.Thread(target=init) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted("applied" in message for message in messages) == [False, True]
    PostgresStore(postgres_database).close()


def test_opening_an_uninitialised_database_says_to_run_init(postgres_database: str) -> None:
    with pytest.raises(StoreError, match=r"has no user-limits schema: run `user-limits init --store URL`") as raised:
        PostgresStore(postgres_database)
    assert PASSWORD not in str(raised.value)


def test_opening_an_older_schema_says_to_run_init(postgres_store_url: str) -> None:
    with psycopg.connect(postgres_store_url) as connection:
        connection.execute("DELETE FROM schema_migrations")
    with pytest.raises(StoreError, match=r"older than this version .*run `user-limits init --store URL`"):
        PostgresStore(postgres_store_url)


def test_opening_a_newer_schema_says_to_upgrade(postgres_store_url: str) -> None:
    with psycopg.connect(postgres_store_url) as connection:
        connection.execute("INSERT INTO schema_migrations (version, name) VALUES (9999, 'future')")
    with pytest.raises(StoreError, match=r"newer than this version of user-limits"):
        PostgresStore(postgres_store_url)


@pytest.mark.parametrize("problem", ["closed port", "wrong password", "malformed URL"])
def test_connection_failures_are_one_line_without_the_password(postgres_server: PostgresServer, problem: str) -> None:
    url = postgres_server.url()
    if problem == "closed port":
        url = url.replace(f":{postgres_server.port}/", f":{free_port()}/")
    elif problem == "wrong password":
        url = url.replace(PASSWORD, "not-" + PASSWORD)
    else:
        url = url.replace(f":{postgres_server.port}/", ":port/")
    with pytest.raises(StoreError) as raised:
        PostgresStore(url)
    message = str(raised.value)
    assert "\n" not in message and PASSWORD not in message and "***" in message


def test_cli_init_against_the_server(postgres_database: str) -> None:
    command = [str(Path(sys.executable).with_name("user-limits")), "init", "--store", postgres_database]
    before = subprocess.run([*command[:1], "stats", "--store", postgres_database], capture_output=True, text=True)
    first = subprocess.run(command, capture_output=True, text=True)
    second = subprocess.run(command, capture_output=True, text=True)

    assert before.returncode == 2
    assert "run `user-limits init --store URL`" in before.stderr and "Traceback" not in before.stderr
    assert first.returncode == 0, first.stderr
    assert "applied 0001_initial" in first.stdout and PASSWORD not in first.stdout
    assert second.returncode == 0 and "up to date" in second.stdout
    PostgresStore(postgres_database).close()


# -- the write side


def test_a_stale_outcome_cannot_move_a_limit_backwards(postgres_store: PostgresStore) -> None:
    postgres_store.apply_batch({"L1": "U1"}, writing(limit(5, "200.00")))
    postgres_store.apply_batch({"L1": "U1"}, writing(limit(3, "100.00")))  # computed from an older snapshot
    assert postgres_store.user_limit("U1", "L1") == limit(5, "200.00")

    postgres_store.apply_batch({"L1": "U1"}, writing(limit(6, "300.00")))
    assert postgres_store.user_limit("U1", "L1") == limit(6, "300.00")


def test_decimals_keep_their_scale(postgres_store: PostgresStore) -> None:
    postgres_store.apply_batch({"L1": "U1"}, writing(limit(1, "0.10")))
    stored = postgres_store.user_limit("U1", "L1")
    assert stored is not None
    assert (str(stored.value), str(stored.progress)) == ("9800.00", "0.10")


def test_checkpoints_hold_real_kinesis_sequence_numbers_and_only_move_forward(postgres_store: PostgresStore) -> None:
    def at(offset: int, sub: int = 0) -> Checkpoint:
        return Checkpoint(STREAM, SHARD, str(KINESIS_SEQUENCE + offset), sub)

    for checkpoint in (at(10), at(10, 2), at(9, 5), at(10, 1)):
        postgres_store.apply_batch({}, writing(checkpoint=checkpoint))
    assert postgres_store.checkpoint(STREAM, SHARD) == at(10, 2)
    postgres_store.apply_batch({}, writing(checkpoint=at(11)))
    assert postgres_store.checkpoint(STREAM, SHARD) == at(11)


def test_concurrent_writers_of_the_same_stream_equal_one_serial_writer(postgres_store: PostgresStore) -> None:
    """Two consumers handed the same shard (a lease moving): each event is applied exactly once."""
    records = synthetic(1200, users=40, seed=7)  # few users: the two writers touch the same limits
    reference = serial(records)
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def consume() -> None:
        start.wait()
        try:
            replay(postgres_store, records, batch_size=100)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=consume) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert not errors
    assert contents(postgres_store) == contents(reference)
    counts, expected = postgres_store.stats(), reference.stats()
    assert counts.applied == expected.applied
    assert counts.ignored == 2 * expected.ignored
    assert (counts.waiting, counts.dead_letters) == (expected.waiting, expected.dead_letters)


def test_writers_in_other_processes_serialise_too(postgres_store_url: str, postgres_store: PostgresStore) -> None:
    records = synthetic(1000, users=30, seed=3)
    reference = serial(records)
    script = (
        "import sys\n"
        "from user_limits.stores.postgres_store import PostgresStore\n"
        "from user_limits.replay import replay\n"
        "from user_limits.stream.records import StreamRecord\n"
        "from user_limits.testing.synthetic import generate\n"
        "records = [StreamRecord(r.data) for r in generate(1000, users=30, seed=3)]\n"
        "store = PostgresStore(sys.argv[1])\n"
        "print('ready', flush=True)\n"
        "sys.stdin.readline()\n"
        "replay(store, records, batch_size=50)\n"
    )
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", script, postgres_store_url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for worker in workers:  # both ready, then both go: the two replays overlap
        assert worker.stdout is not None and worker.stdout.readline() == "ready\n"
    for worker in workers:
        assert worker.stdin is not None
        worker.stdin.write("go\n")
        worker.stdin.flush()
    for worker in workers:
        _, stderr = worker.communicate(timeout=120)
        assert worker.returncode == 0, stderr

    assert contents(postgres_store) == contents(reference)
    assert postgres_store.stats().applied == reference.stats().applied


@pytest.mark.parametrize("failing", ["python", "server"])
def test_a_fault_mid_batch_commits_nothing(postgres_store: PostgresStore, failing: str) -> None:
    records = synthetic(400, users=20, seed=5)
    replay(postgres_store, records[:200], batch_size=100)
    postgres_store.apply_batch({}, writing(checkpoint=Checkpoint(STREAM, SHARD, str(KINESIS_SEQUENCE))))
    before = contents(postgres_store), postgres_store.stats(), postgres_store.checkpoint(STREAM, SHARD)
    batch = [*records[200:250], StreamRecord(b'{"truncated": '), *records[250:300]]  # with a dead letter
    later = Checkpoint(STREAM, SHARD, str(KINESIS_SEQUENCE + 100))
    real_executemany = psycopg.Cursor.executemany

    def executemany(cursor: psycopg.Cursor[Any], query: Any, params: Any, **kwargs: Any) -> None:
        if query == postgres_dialect._INSERT_DEAD_LETTER:  # after the limits and parked events
            raise RuntimeError("injected fault")
        real_executemany(cursor, query, params, **kwargs)

    if failing == "python":
        fault: Any = mock.patch.object(psycopg.Cursor, "executemany", executemany)
    else:  # the last statement of the batch fails on the server
        fault = mock.patch.object(postgres_dialect, "_ADD_COUNTS", "UPDATE counters SET applied = 1 / 0")
    with fault:
        result = processor_for(postgres_store).process(batch, checkpoint=later)

    assert result.first_uncommitted == 0 and result.error is not None
    assert "\n" not in str(result.error)
    assert (contents(postgres_store), postgres_store.stats(), postgres_store.checkpoint(STREAM, SHARD)) == before
    # The same connection goes on: the batch retried commits as if the fault never happened.
    assert processor_for(postgres_store).process(batch, checkpoint=later).error is None
    reference = serial([*records[:200], *batch])
    assert contents(postgres_store) == contents(reference)
    assert postgres_store.stats() == reference.stats()
    assert postgres_store.checkpoint(STREAM, SHARD) == later


# -- the read side


def test_all_limits_pages_through_everything_in_id_order(
    postgres_store: PostgresStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sql_core, "_PAGE", 7)
    records = synthetic(300, users=25, seed=11)
    replay(postgres_store, records)
    listed = [item.user_limit_id for item in postgres_store.all_limits()]
    assert len(listed) > 3 * 7
    assert listed == [item.user_limit_id for item in serial(records).all_limits()]


def test_listings_follow_python_order_whatever_the_database_locale(postgres_server: PostgresServer) -> None:
    """A database with a linguistic (ICU) collation, where 'B1' sorts after 'a1': ids still sort as str."""
    name = "icu_collation"
    postgres_server.admin().execute(
        f"CREATE DATABASE {name} TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C'".encode()
    )
    try:
        url = postgres_server.url(name)
        initialize(url)
        postgres_store = PostgresStore(url)
        ids = ["a1", "B1", "_x", "b0", "Zz", "é1", "e2"]
        postgres_store.apply_batch(dict.fromkeys(ids, "U1"), writing(*(limit(1, "0", limit_id) for limit_id in ids)))
        with mock.patch.object(sql_core, "_PAGE", 2):
            assert [item.user_limit_id for item in postgres_store.all_limits()] == sorted(ids)
        assert [item.user_limit_id for item in postgres_store.user_limits("U1")] == sorted(ids)
        postgres_store.close()
    finally:
        postgres_server.drop_database(name)


def test_one_users_limits_are_read_from_the_index(postgres_store: PostgresStore, postgres_store_url: str) -> None:
    with psycopg.connect(postgres_store_url) as connection:
        connection.execute("SET enable_seqscan = off")
        plan = connection.execute(
            "EXPLAIN SELECT user_limit_id FROM user_limits WHERE user_id = 'U1' ORDER BY user_limit_id"
        ).fetchall()
    text = " ".join(row[0] for row in plan)
    assert "user_limits_by_user" in text and "Sort" not in text


def test_each_thread_has_its_connection_and_close_ends_them(
    postgres_store: PostgresStore, postgres_store_url: str, postgres_server: PostgresServer
) -> None:
    database = postgres_store_url.rsplit("/", 1)[1]

    def open_connections() -> int:
        row = (
            postgres_server.admin()
            .execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND application_name = 'user-limits'",
                (database,),
            )
            .fetchone()
        )
        assert row is not None
        count: int = row[0]  # type: ignore[assignment]
        return count

    threads = [threading.Thread(target=postgres_store.ping) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert open_connections() == 4  # the opening thread's and the three others'
    postgres_store.close()
    # A backend leaves pg_stat_activity shortly after its client hangs up.
    for _ in range(200):
        if open_connections() == 0:
            break
        time.sleep(0.025)
    assert open_connections() == 0


@pytest.mark.parametrize("operation", ["read", "batch"])
def test_a_lost_connection_is_one_error_then_reconnects(
    postgres_store: PostgresStore, postgres_store_url: str, postgres_server: PostgresServer, operation: str
) -> None:
    def use() -> None:
        if operation == "read":
            postgres_store.ping()
        else:
            postgres_store.apply_batch({"L1": "U1"}, writing(limit(1, "0")))

    postgres_store.ping()
    postgres_server.admin().execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = %s AND application_name = 'user-limits'",
        (postgres_store_url.rsplit("/", 1)[1],),
    )
    with pytest.raises(StoreError) as raised:
        use()
    assert "\n" not in str(raised.value)
    use()
    assert postgres_store.stats().applied == (1 if operation == "batch" else 0)


def test_a_forked_child_uses_its_own_connection(postgres_store: PostgresStore) -> None:
    postgres_store.ping()
    pid = os.fork()
    if pid == 0:  # the child: write, then close the store as a program does on its way out
        try:
            postgres_store.apply_batch({"L1": "U1"}, writing(limit(1, "0")))
            postgres_store.close()
        finally:
            os._exit(0 if postgres_store.user_limit("U1", "L1") is not None else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    postgres_store.ping()  # the parent's session survived the child's close
    assert postgres_store.user_limit("U1", "L1") == limit(1, "0")


# -- the upstream sample


def test_the_shared_sample_gives_the_expected_read_model(
    postgres_store: PostgresStore, shared_sample: list[dict[str, Any]]
) -> None:
    records = [StreamRecord(json.dumps(envelope).encode()) for envelope in shared_sample]
    counts = replay(postgres_store, records)

    limits = list(postgres_store.all_limits())
    assert [(item.type, item.progress) for item in limits] == [("DEPOSIT", Decimal(0))] * 3
    resets = {
        envelope["payload"]["userLimitId"]: envelope["payload"]["nextResetTime"]
        for envelope in sorted(shared_sample, key=lambda envelope: envelope["sequenceNumber"])
        if envelope["type"] == "USER_LIMIT_RESET"
    }
    assert {item.user_limit_id: item.next_reset_time for item in limits} == {
        item.user_limit_id: resets[item.user_limit_id] for item in limits
    }
    # The two other resets are for limits whose creation is not in the sample: parked.
    assert sorted(event.key for event in postgres_store.parked_events()) == sorted(
        set(resets) - {i.user_limit_id for i in limits}
    )
    assert (counts.applied, counts.ignored, counts.parked) == (9, 6, 2)
    stats = postgres_store.stats()
    assert (stats.applied, stats.ignored, stats.waiting) == (9, 6, 2)
    assert contents(postgres_store) == contents(serial(records))
