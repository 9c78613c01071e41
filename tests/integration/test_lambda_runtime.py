"""lambda.zip in Lambda's own runtime: the package ``build-lambda`` makes, unpacked as Lambda unpacks
it into its task folder, run by ``awslambdaric`` under Python 3.12 (the runtime's version, not this
machine's) behind the Runtime Interface Emulator, and invoked over the emulator's HTTP API.

The handler gets the shared sample (plus a poison record) as a Kinesis event and answers with the
partial batch response; the store, an SQLite file in a temporary folder, is then read here. The API
handler answers an HTTP API (payload 2.0) event from the same store.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SHARED_SAMPLE
from tests.integration.test_api import SECRET, http_api_event, token
from tests.lambda_runtime import Emulator, rie_binary, runtime_python
from tests.servers.process import free_port
from tests.streams import export
from user_limits.bootstrap import open_store
from user_limits.testing.lambda_events import events_from_envelopes

pytestmark = pytest.mark.lambda_runtime

# The sample drifts twice: tests/unit/test_shared_sample.py says why.
EXPECTED_COUNTS = {"applied": 9, "skipped": 0, "ignored": 6, "parked": 2, "deadLettered": 1, "drifted": 2}


@pytest.fixture(scope="module")
def task_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """lambda.zip built for x86_64 (this machine), unpacked into a fresh task folder."""
    out = tmp_path_factory.mktemp("build") / "lambda.zip"
    script = Path(sys.executable).parent / "user-limits"
    done = subprocess.run(
        [str(script), "build-lambda", "--arch", "x86_64", "--output", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr
    root = tmp_path_factory.mktemp("task")
    with zipfile.ZipFile(out) as archive:
        archive.extractall(root)
    return root


@pytest.fixture(scope="module")
def runtime() -> tuple[Path, Path]:
    python, rie = runtime_python(), rie_binary()
    if python is None:
        pytest.skip("no Python 3.12 runtime: `make .venv-lambda/.installed` needs a python3.12 (pyenv or PATH)")
    if rie is None:
        pytest.skip("no aws-lambda-rie: `make .venv-sam/.installed` installs the SAM CLI that ships it")
    return python, rie


def emulator(runtime: tuple[Path, Path], task_root: Path, handler: str, **env: str) -> Emulator:
    python, rie = runtime
    environment = {
        # Lambda's: the task folder first on the path; nothing of this machine's Python environment.
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(task_root),
        "LAMBDA_TASK_ROOT": str(task_root),
        "AWS_LAMBDA_FUNCTION_TIMEOUT": "60",
        "AWS_REGION": "eu-west-1",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "POWERTOOLS_METRICS_NAMESPACE": "UserLimits",
        **env,
    }
    port = free_port()
    address = ["--runtime-interface-emulator-address", f"127.0.0.1:{port}"]
    command = [str(rie), *address, str(python), "-m", "awslambdaric", handler]
    return Emulator(command, environment, cwd=task_root, port=port)


@pytest.fixture(scope="module")
def store_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('store')}/limits.db"


@pytest.fixture(scope="module")
def projected(runtime: tuple[Path, Path], task_root: Path, store_url: str) -> Iterator[dict[str, Any]]:
    """The handler's answer to the shared sample plus one poison record, in one Kinesis event."""
    sample = json.loads(SHARED_SAMPLE.read_text())
    (event,) = events_from_envelopes([*(json.dumps(e).encode() for e in sample), b"\xffnot json"])
    with emulator(runtime, task_root, "user_limits.aws_lambda.handler", USER_LIMITS_STORE=store_url) as running:
        answer = running.invoke(event)
        log = running.log()
    yield {"answer": answer, "log": log, "sample": sample}


def test_the_handler_answers_the_partial_batch_response(projected: dict[str, Any]) -> None:
    assert projected["answer"] == {"batchItemFailures": []}, projected["log"]


def test_the_handler_ran_on_python_3_12_from_the_task_folder(projected: dict[str, Any], task_root: Path) -> None:
    # The product's batch log line, as the runtime passed it on.
    (line,) = [json.loads(text) for text in projected["log"].splitlines() if '"message":"batch"' in text]
    assert {key: line[key] for key in EXPECTED_COUNTS} == EXPECTED_COUNTS
    assert line["records"] == len(projected["sample"]) + 1


def test_the_store_holds_the_samples_read_model(projected: dict[str, Any], store_url: str) -> None:
    store = open_store(store_url)
    try:
        assert store.stats().as_json() == EXPECTED_COUNTS
        created = {e["payload"]["userLimitId"] for e in projected["sample"] if e["type"] == "USER_LIMIT_CREATED"}
        assert {limit["userLimitId"] for limit in export(store)} == created
        (letter,) = store.dead_letters()
        assert letter.data == b"\xffnot json" and letter.sequence_number is not None
    finally:
        store.close()


def test_the_api_handler_answers_an_http_api_event(
    projected: dict[str, Any], runtime: tuple[Path, Path], task_root: Path, store_url: str
) -> None:
    user = next(e["aggregateId"] for e in projected["sample"] if e["type"] == "USER_LIMIT_CREATED")
    headers = {"authorization": f"Bearer {token(user)}"}
    env = {"USER_LIMITS_STORE": store_url, "USER_LIMITS_JWT_SECRET": SECRET}
    with emulator(runtime, task_root, "user_limits.aws_lambda.api_handler", **env) as running:
        answer = running.invoke(http_api_event(f"/api/user-limits/{user}", "sort=userLimitId", headers))
        denied = running.invoke(http_api_event(f"/api/user-limits/{user}"))
        health = running.invoke(http_api_event("/healthz"))
    assert answer["statusCode"] == 200, answer
    body = json.loads(answer["body"])
    assert body["userLimits"] and {limit["userId"] for limit in body["userLimits"]} == {user}
    assert body["asOf"] is not None
    assert denied["statusCode"] == 401
    assert json.loads(denied["body"]) == {"error": {"status": 401, "message": "missing bearer token"}}
    assert health["statusCode"] == 200


def test_the_package_holds_no_boto3_and_no_host_python(task_root: Path) -> None:
    """boto3 comes from the runtime; compiled modules are for CPython 3.12 on Linux."""
    assert not (task_root / "boto3").exists()
    compiled = [path.name for path in task_root.rglob("*.so")]
    assert compiled and all("cpython-312" in name or "abi3" in name or ".cpython" not in name for name in compiled)
    assert not any("cpython-311" in name for name in compiled)
