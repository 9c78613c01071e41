"""One throwaway PostgreSQL server for the whole bench run, shared by the benchmarks that need one.

Started at the first :func:`server` call (fsync and synchronous commit off), stopped by
:func:`stop` at the end of ``bench.run`` (and at exit in any case). Without the server binaries
or psycopg, :func:`server` raises :class:`Unavailable` with the reason, and the PostgreSQL rows
say "not available".
"""

from __future__ import annotations

import itertools
from typing import Any

_server: Any = None
_names = itertools.count()


class Unavailable(Exception):
    """No PostgreSQL server can be started here; the message says why."""


def server() -> Any:
    """The bench's server (a ``tests.servers.postgres.PostgresServer``), started once."""
    global _server
    if _server is None:
        try:
            from tests.servers.postgres import PostgresServer
        except ImportError as error:  # psycopg or the test helpers missing
            raise Unavailable(str(error)) from None
        started = PostgresServer(fast=True)
        try:
            started.start()
        except RuntimeError as error:
            started.stop()
            raise Unavailable(str(error).splitlines()[0]) from None
        _server = started
    return _server


def database(prefix: str, *, schema: bool = True) -> str:
    """The URL of a new database on the shared server, with the product's schema unless ``schema`` is False."""
    url: str = server().create_database(f"{prefix}_{next(_names)}")
    if schema:
        from user_limits.bootstrap import initialize

        initialize(url)
    return url


def stop() -> None:
    global _server
    if _server is not None:
        _server.stop()
        _server = None
