"""A real kinesis-local (kinesis-mock) server on a free loopback port, for the whole test session.

``KinesisLocalServer`` is reusable outside pytest: ``python -m tests.servers.kinesis_local NAME:SHARDS``
runs one until SIGTERM, with that stream, and prints its endpoint (``scripts/stack.sh``). Plain HTTP only; no
persistence; stream creation and resharding take no simulated time, so waiting for ACTIVE is short.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.servers.process import free_port

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "tools" / "servers" / "node_modules" / "kinesis-local"
REGION = "us-east-1"
# kinesis-local accepts any credentials; boto3 only needs some to sign requests.
DUMMY_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local", "AWS_DEFAULT_REGION": REGION}


class KinesisLocalServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self._workdir = tempfile.TemporaryDirectory(prefix="kinesis-local-")

    def start(self, timeout: float = 30.0) -> KinesisLocalServer:
        main = PACKAGE / "main.js"
        if not main.is_file():
            raise RuntimeError(f"kinesis-local is not installed: {main} (run `npm ci` in tools/servers)")
        no_delay = "0ms"
        env = {
            **os.environ,
            **DUMMY_CREDENTIALS,
            "KINESIS_MOCK_PLAIN_PORT": str(self.port),
            # The TLS listener cannot be turned off: give it a free port too, so servers never collide.
            "KINESIS_MOCK_TLS_PORT": str(free_port()),
            "KINESIS_MOCK_CERT_PATH": str(PACKAGE / "server.json"),
            "SHOULD_PERSIST_DATA": "false",
            "LOAD_DATA_IF_EXISTS": "false",
            "CREATE_STREAM_DURATION": no_delay,
            "DELETE_STREAM_DURATION": no_delay,
            "SPLIT_SHARD_DURATION": no_delay,
            "MERGE_SHARDS_DURATION": no_delay,
            "UPDATE_SHARD_COUNT_DURATION": no_delay,
            "SHARD_LIMIT": "200",
            "LOG_LEVEL": "WARN",
        }
        log = open(Path(self._workdir.name) / "kinesis-local.log", "wb")  # noqa: SIM115 (kept by the child)
        self.process = subprocess.Popen(
            ["node", str(main)], cwd=self._workdir.name, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"kinesis-local exited at start:\n{self.log()}")
            try:
                self.client().list_streams(Limit=1)
                return self
            except Exception:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"kinesis-local did not answer on {self.endpoint} within {timeout}s:\n{self.log()}")

    def log(self) -> str:
        path = Path(self._workdir.name) / "kinesis-local.log"
        return path.read_text(errors="replace")[-4000:] if path.is_file() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        self._workdir.cleanup()

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "kinesis",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            config=Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=2, read_timeout=10),
        )

    def create_stream(self, shards: int, name: str | None = None) -> str:
        """Create an N-shard stream and wait until it is ACTIVE; returns its name."""
        name = name or f"stream-{uuid.uuid4().hex[:12]}"
        client = self.client()
        client.create_stream(StreamName=name, ShardCount=shards)
        self.wait_active(name)
        return name

    def wait_active(self, name: str, timeout: float = 30.0) -> None:
        client = self.client()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            summary = client.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
            if summary["StreamStatus"] == "ACTIVE":
                return
            time.sleep(0.1)
        raise RuntimeError(f"stream {name} not ACTIVE after {timeout}s")

    def put(self, stream: str, records: Iterable[tuple[str, bytes]]) -> list[str]:
        """Put (partition key, data) records one call at a time, in order; returns their sequence numbers."""
        client = self.client()
        sequence_numbers = []
        for key, data in records:
            sequence_numbers.append(client.put_record(StreamName=stream, PartitionKey=key, Data=data)["SequenceNumber"])
        return sequence_numbers

    def __enter__(self) -> KinesisLocalServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture(scope="session")
def kinesis_local() -> Iterator[KinesisLocalServer]:
    server = KinesisLocalServer()
    try:
        server.start()
    except RuntimeError as error:
        pytest.fail(str(error))
    yield server
    server.stop()


@pytest.fixture
def kinesis_env(kinesis_local: KinesisLocalServer, monkeypatch: pytest.MonkeyPatch) -> KinesisLocalServer:
    """Dummy credentials in the environment, for code that builds its own boto3 client."""
    for name, value in DUMMY_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    return kinesis_local


def _serve(streams: list[str]) -> None:
    """Run a server until SIGTERM/SIGINT, for scripts (``make stack``): creates the streams given as
    NAME:SHARDS, then prints the endpoint."""
    server = KinesisLocalServer().start()
    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        for spec in streams:
            name, _, shards = spec.partition(":")
            server.create_stream(int(shards or 1), name)
        print(server.endpoint, flush=True)
        while not stop and server.process is not None and server.process.poll() is None:
            time.sleep(0.2)
    finally:
        server.stop()


if __name__ == "__main__":
    _serve(sys.argv[1:])
