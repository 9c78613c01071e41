"""Shared fixtures and the test tiers.

Real servers (PostgreSQL, a local DynamoDB/S3/SQS, kinesis-local) are started by the plugins below,
once per session, on loopback ports. The tiers are folders:

- ``tests/unit``: the rules and the pure parts, no server (``make test-fast``);
- ``tests/contract``: the store contract, the only home of behaviour every store shares;
- ``tests/integration``: one part against real servers (stores, API, CLI, Lambda runtime, template);
- ``tests/e2e``: the whole product (the consumer with kill -9, the browser, the images).

Every test that starts a server carries the ``servers`` marker, derived here from the fixtures it
uses, so that ``pytest -m "not servers"`` starts none.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.cli_runner import Run, cli
from user_limits.bootstrap import open_store
from user_limits.stores.base import LimitStore

pytest_plugins = [
    "tests.servers.postgres",
    "tests.servers.dynamodb_local",
    "tests.servers.s3_local",
    "tests.servers.kinesis_local",
]

SHARED_SAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "samples" / "events.json"

STORE_KINDS = [
    "memory",
    "sqlite",
    pytest.param("postgres", marks=pytest.mark.servers),
    pytest.param("dynamodb", marks=pytest.mark.servers),
]


# The fixtures that start a server; any test using one (directly or through another fixture) is marked.
SERVER_FIXTURES = frozenset({"postgres_server", "dynamodb_server", "kinesis_local"})
# Markers of tests that start their own servers (uvicorn and Chromium, podman, the runtime emulator).
SERVER_MARKERS = frozenset({"browser", "containers", "lambda_runtime"})
TIERS = ("unit", "contract", "integration", "e2e")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        tier = next((part for part in item.path.parts[-3:-1] if part in TIERS), None)
        if tier is not None:
            item.add_marker(getattr(pytest.mark, tier))
        starts_server = (
            tier == "e2e"
            or not SERVER_FIXTURES.isdisjoint(getattr(item, "fixturenames", ()))
            or any(item.get_closest_marker(name) for name in SERVER_MARKERS)
        )
        if starts_server:
            if tier == "unit":
                raise pytest.UsageError(f"{item.nodeid}: a unit test starts no server; move it to tests/integration")
            item.add_marker(pytest.mark.servers)


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


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[..., Run]:
    """``run(*ARGS)``: ``user-limits ARGS`` in process (:func:`tests.cli_runner.cli`), with no
    USER_LIMITS_STORE and in the test's own directory, where the default store of a command run
    without ``--store`` lands."""
    monkeypatch.delenv("USER_LIMITS_STORE", raising=False)
    monkeypatch.chdir(tmp_path)

    def invoke(*args: str) -> Run:
        return cli(capsys, monkeypatch, *args)

    return invoke
