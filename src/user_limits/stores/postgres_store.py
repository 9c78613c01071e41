"""The PostgreSQL store as bootstrap opens it: ``postgresql://USER:PASSWORD@HOST:PORT/DB``.

The store itself is :mod:`user_limits.stores.sql.postgres`; this module is its public name and the
store-module contract (``open_store``, ``initialize``, ``READS_IN_PROCESS``). Importing it imports
psycopg: bootstrap imports it only for a PostgreSQL URL.
"""

from __future__ import annotations

from user_limits.stores.base import LimitStore
from user_limits.stores.sql.postgres import LATEST_VERSION, PostgresStore, initialize, masked, migrations

__all__ = [
    "LATEST_VERSION",
    "READS_IN_PROCESS",
    "PostgresStore",
    "initialize",
    "masked",
    "migrations",
    "open_store",
]

# Every read is a round trip to the server: the API runs them in its thread pool.
READS_IN_PROCESS = False


def open_store(url: str, *, read_only: bool = False) -> LimitStore:
    """``read_only``: every transaction of its sessions is read-only (``default_transaction_read_only``)."""
    return PostgresStore(url, read_only=read_only)
