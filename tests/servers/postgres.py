"""A throwaway PostgreSQL server on loopback, and the pytest fixtures built on it.

:class:`PostgresServer` runs Debian's server binaries in a temporary folder on a free port; it is
also meant for benchmarks and scripts (``python -m tests.servers.postgres`` runs one until
interrupted and prints its URL). initdb refuses to run as root, so as root the server runs as the
``postgres`` system user.
"""

from __future__ import annotations

import atexit
import glob
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.servers.process import free_port
from user_limits.stores.postgres_store import initialize

PASSWORD = "limits-test-password"  # a throwaway loopback server
SUPERUSER = "postgres"
TEMPLATE = "user_limits_template"


def server_bindir() -> Path:
    """The folder of initdb/pg_ctl: $PG_BINDIR, PATH, ``pg_config --bindir``, then Debian's layout."""
    candidates: list[str] = []
    if os.environ.get("PG_BINDIR"):
        candidates.append(os.environ["PG_BINDIR"])
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(str(Path(on_path).parent))
    pg_config = shutil.which("pg_config")
    if pg_config:
        result = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        candidates.append(result.stdout.strip())
    # Debian: /usr/lib/postgresql/<major>/bin, newest first.
    debian = glob.glob("/usr/lib/postgresql/*/bin")
    candidates += sorted(debian, key=lambda path: int(Path(path).parent.name), reverse=True)
    for candidate in candidates:
        if candidate and (Path(candidate) / "initdb").is_file() and (Path(candidate) / "pg_ctl").is_file():
            return Path(candidate)
    raise RuntimeError(
        "PostgreSQL server binaries (initdb, pg_ctl) not found: install Debian's `postgresql` package "
        "(scripts/install-system-deps.sh) or set PG_BINDIR"
    )


class PostgresServer:
    """One server: ``start()``, ``url(database)``, ``create_database``/``drop_database``, ``stop()``."""

    def __init__(self, *, fast: bool = True) -> None:
        self.fast = fast  # fsync and full-page writes off: for tests, never for data you keep
        self.port = 0
        self.root: Path | None = None
        self._as_root = os.geteuid() == 0
        self._admin: psycopg.Connection[tuple[object, ...]] | None = None

    # -- lifecycle

    def start(self) -> PostgresServer:
        bindir = server_bindir()
        # System temp, not pytest's (a root-only folder the postgres user could not enter).
        self.root = Path(tempfile.mkdtemp(prefix="user-limits-pg-"))
        data, sockets = self.root / "data", self.root / "sockets"
        sockets.mkdir()
        pwfile = self.root / "pwfile"
        pwfile.write_text(PASSWORD + "\n")
        if self._as_root:
            try:
                account = pwd.getpwnam("postgres")
            except KeyError:
                raise RuntimeError("running as root needs the `postgres` system user (Debian's postgresql)") from None
            for path in (self.root, sockets, pwfile):
                os.chown(path, account.pw_uid, account.pw_gid)
        atexit.register(self.stop)
        self._run(
            str(bindir / "initdb"),
            "-D", str(data),
            "-U", SUPERUSER,
            "--pwfile", str(pwfile),
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )  # fmt: skip
        settings = [
            "-c listen_addresses=127.0.0.1",
            f"-c unix_socket_directories={sockets}",
            "-c max_connections=100",
        ]
        if self.fast:
            settings += ["-c fsync=off", "-c full_page_writes=off", "-c synchronous_commit=off"]
        for attempt in itertools.count():
            self.port = free_port()
            try:
                self._run(
                    str(bindir / "pg_ctl"),
                    "-D", str(data),
                    "-l", str(self.root / "server.log"),
                    "-o", " ".join([f"-p {self.port}", *settings]),
                    "-w", "-t", "60",
                    "start",
                )  # fmt: skip
                break
            except RuntimeError:
                if attempt == 2:  # the port may have been taken between probe and bind
                    raise
        return self

    def stop(self) -> None:
        if self._admin is not None:
            self._admin.close()
            self._admin = None
        if self.root is None:
            return
        root, self.root = self.root, None
        if (root / "data" / "postmaster.pid").exists():
            self._run(str(server_bindir() / "pg_ctl"), "-D", str(root / "data"), "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self, *command: str) -> None:
        if self._as_root:
            command = ("runuser", "-u", "postgres", "--", *command)
        result = subprocess.run(command, capture_output=True, text=True, check=False, cwd=self.root)
        if result.returncode != 0:
            log = self.root / "server.log" if self.root else None
            tail = log.read_text()[-2000:] if log and log.is_file() else ""
            raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}{tail}")

    # -- databases

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}:{PASSWORD}@127.0.0.1:{self.port}/{database}"

    def admin(self) -> psycopg.Connection[tuple[object, ...]]:
        if self._admin is None or self._admin.closed:
            self._admin = psycopg.connect(self.url(), autocommit=True)
        return self._admin

    def create_database(self, name: str, template: str = "template0") -> str:
        """An empty database (or a copy of ``template``); returns its URL."""
        self.admin().execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'.encode())
        return self.url(name)

    def drop_database(self, name: str) -> None:
        self.admin().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


# -- pytest fixtures

_names = itertools.count(1)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One server for the session; its admin URL is ``postgres_server.url()``."""
    server = PostgresServer()
    try:
        server.start()
    except RuntimeError as error:
        server.stop()
        pytest.fail(f"cannot start PostgreSQL: {error}", pytrace=False)
    try:
        # Fresh databases are copies of one migrated template: quicker than migrating each.
        initialize(server.create_database(TEMPLATE))
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_database(postgres_server: PostgresServer) -> Iterator[str]:
    """The URL of a fresh EMPTY database (no schema), dropped afterwards."""
    name = f"empty_{os.getpid()}_{next(_names)}"
    url = postgres_server.create_database(name)
    yield url
    postgres_server.drop_database(name)


@pytest.fixture
def postgres_store_url(postgres_server: PostgresServer) -> Iterator[str]:
    """The URL of a fresh, initialised, empty store, dropped afterwards."""
    name = f"store_{os.getpid()}_{next(_names)}"
    url = postgres_server.create_database(name, template=TEMPLATE)
    yield url
    postgres_server.drop_database(name)


def main() -> None:
    """Run one server until SIGINT or SIGTERM, printing its admin URL first (for scripts)."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # unwind, so the server is stopped
    with PostgresServer(fast=False) as running:
        print(running.url(), flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
