"""Shared fixtures. Real servers (PostgreSQL, a local DynamoDB, kinesis-local) are started by the plugins
below, once per session, on loopback ports."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from user_limits.bootstrap import open_store
from user_limits.stores.base import LimitStore

pytest_plugins = [
    "tests.servers.postgres",
    "tests.servers.dynamodb_local",
    "tests.servers.s3_local",
    "tests.servers.kinesis_local",
]

SHARED_SAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "samples" / "events.json"

STORE_KINDS = ["memory", "sqlite", "postgres", "dynamodb"]


@pytest.fixture
def shared_sample() -> list[dict[str, object]]:
    if not SHARED_SAMPLE.is_file():
        pytest.fail(f"the upstream sample is missing: {SHARED_SAMPLE}")
    return json.loads(SHARED_SAMPLE.read_text())


@pytest.fixture(params=STORE_KINDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty store of each kind."""
    kind = request.param
    if kind == "memory":
        return "memory://"
    if kind == "sqlite":
        return f"sqlite:///{tmp_path}/store.db"
    url: str = request.getfixturevalue(f"{kind}_store_url")
    return url


@pytest.fixture
def store(store_url: str) -> Iterator[LimitStore]:
    opened = open_store(store_url)
    yield opened
    opened.close()
