"""The composition root: builds a store from its URL. Backends are imported only when chosen."""

from __future__ import annotations

import os

from user_limits.stores.base import LimitStore, StoreError

DEFAULT_STORE_URL = "sqlite:///user-limits.db"
STORE_ENV = "USER_LIMITS_STORE"


def store_url(explicit: str | None = None) -> str:
    """``--store``, else USER_LIMITS_STORE, else the default. An empty value is refused, never
    taken for "not given": ``--store "$UNSET_VARIABLE"`` must not write to the default file."""
    if explicit is not None:
        if not explicit.strip():
            raise StoreError(f"--store {explicit!r}: empty; give a store URL such as {DEFAULT_STORE_URL}")
        return explicit
    from_env = os.environ.get(STORE_ENV)
    if from_env is not None:
        if not from_env.strip():
            raise StoreError(
                f"{STORE_ENV} is set but empty: set a store URL, or unset it for the default {DEFAULT_STORE_URL}"
            )
        return from_env
    return DEFAULT_STORE_URL


def open_store(url: str) -> LimitStore:
    scheme, sep, _ = url.partition("://")
    if not sep:
        raise StoreError(f"bad store URL {url!r}: expected SCHEME://…, for example {DEFAULT_STORE_URL}")
    if scheme == "memory":
        from user_limits.stores.memory_store import MemoryStore

        return MemoryStore(url)
    if scheme == "sqlite":
        from user_limits.stores.sqlite_store import SQLiteStore

        return SQLiteStore(url)
    if scheme in ("postgresql", "postgres"):
        from user_limits.stores.postgres_store import PostgresStore

        return PostgresStore(url)
    if scheme == "dynamodb":
        from user_limits.stores.dynamodb_store import DynamoDBStore

        return DynamoDBStore(url)
    raise StoreError(
        f"unknown store URL scheme {scheme!r} in {url!r}: use memory://, sqlite:///PATH, "
        "postgresql://USER:PASSWORD@HOST:PORT/DB or dynamodb://TABLE?region=REGION"
    )


def initialize(url: str) -> str:
    """Create what the store needs (schema, migrations, table); returns what was done, for the user."""
    scheme = url.partition("://")[0]
    if scheme in ("postgresql", "postgres"):
        from user_limits.stores import postgres_store

        return postgres_store.initialize(url)
    if scheme == "dynamodb":
        from user_limits.stores import dynamodb_store

        return dynamodb_store.initialize(url)
    store = open_store(url)  # memory and SQLite create their schema on first use
    store.close()
    return f"{url}: ready"
