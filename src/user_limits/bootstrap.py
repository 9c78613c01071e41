"""The composition root: the one place that knows store URL schemes and wires the batch path.

- :data:`STORE_MODULES`: the one table from URL scheme to store module. Each module is imported
  only when its scheme is chosen (cold start: boto3 only for DynamoDB, psycopg only for
  PostgreSQL) and offers ``open_store(url)``, ``initialize(url)`` and ``READS_IN_PROCESS``.
- :func:`processor`: the batch processor the Lambda handler, ``replay`` and the consumer share:
  the user-limit family on a store.
"""

from __future__ import annotations

import importlib
import os
from typing import Protocol, cast

from user_limits.domain.events import UserLimitEvent
from user_limits.domain.model import UserLimit
from user_limits.family import UserLimitFamily
from user_limits.stores.base import LimitStore, StoreError
from user_limits.stream.batch import BatchProcessor

DEFAULT_STORE_URL = "sqlite:///user-limits.db"
STORE_ENV = "USER_LIMITS_STORE"

STORE_MODULES = {
    "memory": "user_limits.stores.memory_store",
    "sqlite": "user_limits.stores.sqlite_store",
    "postgresql": "user_limits.stores.postgres_store",
    "postgres": "user_limits.stores.postgres_store",
    "dynamodb": "user_limits.stores.dynamodb_store",
}


class StoreModule(Protocol):
    """What each store module offers (the modules named in :data:`STORE_MODULES`)."""

    # True: reads take microseconds in this process (the API reads inline); False: reads go over
    # the network (the API reads in its thread pool).
    READS_IN_PROCESS: bool

    def open_store(self, url: str, *, read_only: bool = False) -> LimitStore:
        """``read_only``: open it without writing anything, where the store allows refuse writes too."""
        ...

    def initialize(self, url: str) -> str:
        """Create what the store needs (schema, migrations, table); returns what was done, for the user."""
        ...


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


def store_module(url: str) -> StoreModule:
    """The module of ``url``'s scheme; StoreError (one line) for a URL without one or an unknown one."""
    scheme, sep, _ = url.partition("://")
    if not sep:
        raise StoreError(f"bad store URL {url!r}: expected SCHEME://…, for example {DEFAULT_STORE_URL}")
    name = STORE_MODULES.get(scheme)
    if name is None:
        raise StoreError(
            f"unknown store URL scheme {scheme!r} in {url!r}: use memory://, sqlite:///PATH, "
            "postgresql://USER:PASSWORD@HOST:PORT/DB or dynamodb://TABLE?region=REGION"
        )
    return cast(StoreModule, importlib.import_module(name))


def open_store(url: str, *, read_only: bool = False) -> LimitStore:
    return store_module(url).open_store(url, read_only=read_only)


def initialize(url: str) -> str:
    """Create what the store needs (schema, migrations, table); returns what was done, for the user."""
    return store_module(url).initialize(url)


def reads_in_process(url: str) -> bool:
    """Whether the store of ``url`` reads in this process (memory, SQLite) rather than over the network."""
    name = STORE_MODULES.get(url.partition("://")[0])
    return name is not None and cast(StoreModule, importlib.import_module(name)).READS_IN_PROCESS


def processor(store: LimitStore) -> BatchProcessor[UserLimitEvent, UserLimit]:
    """The batch path on ``store``: what the Lambda handler, ``replay`` and the consumer run."""
    return BatchProcessor(UserLimitFamily(), store)
