"""The SQLite store as bootstrap opens it: ``sqlite:///path/to/file.db``, created on first use.

The store itself is :mod:`user_limits.stores.sql.sqlite`; this module is its public name and the
store-module contract (``open_store``, ``initialize``, ``READS_IN_PROCESS``).
"""

from __future__ import annotations

from user_limits.stores.base import LimitStore
from user_limits.stores.sql.sqlite import SCHEMA_VERSION, SQLiteStore, sqlite_path

__all__ = ["READS_IN_PROCESS", "SCHEMA_VERSION", "SQLiteStore", "initialize", "open_store", "sqlite_path"]

# A read is a local file read, quicker than a hop to a worker thread.
READS_IN_PROCESS = True


def open_store(url: str, *, read_only: bool = False) -> LimitStore:
    """``read_only``: an existing file, opened so that nothing can write to it."""
    return SQLiteStore(url, read_only=read_only)


def initialize(url: str) -> str:
    """Create the file's schema, or migrate it (which opening does as well)."""
    SQLiteStore(url).close()
    return f"{url}: ready"
