"""A local DynamoDB for the tests and the benchmarks, on a free loopback port, in memory.

The server is moto's server mode (``moto[server]``, in the dev extra), not dynalite: the store
commits with TransactWriteItems, which dynalite does not implement (it answers
``UnknownOperationException``). The module keeps its name, the plugin registered by conftest.

Run as a module (``python -m tests.servers.dynamodb_local PORT``), it is the server process:
moto, with two changes. moto backs a transaction up by copying each table it touches once per
action, so a transaction of 100 actions on a table of thousands of items takes seconds; here each
table is copied once per transaction (the same backup: the copies are all taken before the first
write), and transactions run one at a time, as moto's whole-table rollback needs. And every write
(transaction, single item or batch) runs one at a time: moto checks a condition and then writes
with no lock between, so two concurrent conditional writes of one item could both succeed, which
DynamoDB never lets happen.

Fixtures: ``dynamodb_server`` (one per session, stopped at its end) and ``dynamodb_store_url`` (a
fresh table per test, created by ``initialize`` and deleted afterwards, with dummy credentials in
the environment for that test only).
"""

from __future__ import annotations

import os
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType

import pytest

from tests.servers.process import LoopbackProcess, free_port

ROOT = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
# moto accepts any credentials; boto3 only needs some. The environment of whatever talks to the server.
DUMMY_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
# Variables that would make boto3 look elsewhere for credentials.
_UNSET = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB")


class DynamoDBServer:
    """moto's DynamoDB in a child process on 127.0.0.1; ``start()``/``stop()`` or a ``with`` block."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "tests.servers.dynamodb_local", str(self.port)]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self._process = LoopbackProcess("the DynamoDB server", command, self.port, env, cwd=ROOT)

    def start(self, timeout: float = 60.0) -> DynamoDBServer:
        self._process.start(timeout)
        return self

    def log(self) -> str:
        return self._process.log()

    def stop(self) -> None:
        self._process.stop(timeout=10)

    def __enter__(self) -> DynamoDBServer:
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()

    def store_url(self, table: str | None = None) -> str:
        """The store URL of a table on this server (a fresh name if none is given)."""
        return f"dynamodb://{table or new_table_name()}?region={REGION}&endpoint={self.endpoint}"

    def delete_table(self, table: str) -> None:
        import boto3

        client = boto3.session.Session().client(
            "dynamodb",
            region_name=REGION,
            endpoint_url=self.endpoint,
            aws_access_key_id=DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )
        try:
            client.delete_table(TableName=table)
        except client.exceptions.ResourceNotFoundException:
            pass
        finally:
            client.close()


# The name the conftest plugin was planned under.


def new_table_name() -> str:
    return f"user-limits-{uuid.uuid4().hex[:12]}"


def set_dummy_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in DUMMY_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    for name in _UNSET:
        monkeypatch.delenv(name, raising=False)
    # No shared config or credentials file of the machine's user either.
    missing = str(Path(tempfile.gettempdir()) / f"no-aws-config-{uuid.uuid4().hex}")
    monkeypatch.setenv("AWS_CONFIG_FILE", missing)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", missing)


@pytest.fixture(scope="session")
def dynamodb_server() -> Iterator[DynamoDBServer]:
    with DynamoDBServer() as server:
        yield server


@pytest.fixture
def dynamodb_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dummy AWS credentials in the environment, for this test only."""
    set_dummy_credentials(monkeypatch)


@pytest.fixture
def dynamodb_store_url(dynamodb_server: DynamoDBServer, dynamodb_credentials: None) -> Iterator[str]:
    """A fresh, empty table (created by ``initialize``), deleted after the test."""
    from user_limits.stores.dynamodb_store import initialize

    table = new_table_name()
    url = dynamodb_server.store_url(table)
    initialize(url)
    yield url
    dynamodb_server.delete_table(table)


def serve(port: int) -> None:
    """The server process (see the module's docstring)."""
    import copy
    import threading

    from moto import server

    try:
        from moto.dynamodb import models
        from moto.dynamodb.models.table import Table

        transact = models.DynamoDBBackend.transact_write_items
    except (ImportError, AttributeError):  # another moto layout: serve it as it is, only slower
        server.main(["-H", "127.0.0.1", "-p", str(port)])
        return

    class TablesCopiedOnce:
        """Stands for the ``copy`` module inside moto's transact_write_items."""

        def __init__(self) -> None:
            self.tables: dict[int, Table] = {}

        def deepcopy(self, value: object, memo: dict[int, object] | None = None) -> object:
            if not isinstance(value, Table):
                return copy.deepcopy(value, memo)
            if id(value) not in self.tables:
                self.tables[id(value)] = copy.deepcopy(value)
            return self.tables[id(value)]

    # Re-entrant: a batch write may go through the single-item writes.
    one_at_a_time = threading.RLock()

    def transact_write_items(self: models.DynamoDBBackend, transact_items: list[dict[str, object]]) -> None:
        with one_at_a_time:
            models.copy = TablesCopiedOnce()  # type: ignore[assignment, attr-defined]
            try:
                transact(self, transact_items)
            finally:
                models.copy = copy  # type: ignore[attr-defined]

    models.DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]

    def serialised(write: Callable[..., object]) -> Callable[..., object]:
        def run(self: models.DynamoDBBackend, *args: object, **kwargs: object) -> object:
            with one_at_a_time:
                return write(self, *args, **kwargs)

        return run

    # moto checks a write's condition and then writes, with no lock between: two consumers taking
    # the same free lease both succeeded. DynamoDB makes each conditional write atomic; so does this
    # server, one write at a time.
    # A write moto no longer has fails the server's start here, rather than run unserialised.
    for name in ("put_item", "update_item", "delete_item", "batch_write_item"):
        setattr(models.DynamoDBBackend, name, serialised(getattr(models.DynamoDBBackend, name)))
    server.main(["-H", "127.0.0.1", "-p", str(port)])


if __name__ == "__main__":
    serve(int(sys.argv[1]))
