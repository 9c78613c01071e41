"""Lambda's own runtime on this machine: the Runtime Interface Emulator (``aws-lambda-rie``, from the
aws-sam-cli wheel in ``.venv-sam``) in front of ``awslambdaric`` under Python 3.12 (``.venv-lambda``,
made by ``make`` from tools/lambda-runtime/requirements.txt, with the interpreter that
scripts/find-python.sh finds).

``Emulator`` runs one handler: it starts the RIE on a free loopback port with a bootstrap command
(``python -m awslambdaric HANDLER``, or a container that runs it) and invokes it as Lambda's
service would, through ``POST /2015-03-31/functions/function/invocations``.
"""

from __future__ import annotations

import json
import platform
import subprocess
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.servers.process import LoopbackProcess, free_port

ROOT = Path(__file__).resolve().parents[1]
LAMBDA_VENV = ROOT / ".venv-lambda"
SAM_VENV = ROOT / ".venv-sam"
LAMBDA_PYTHON = "3.12"
INVOCATIONS = "/2015-03-31/functions/function/invocations"


def rie_binary() -> Path | None:
    """The emulator the SAM CLI ships for this machine's architecture."""
    arch = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine())
    if arch is None:
        return None
    found = sorted(SAM_VENV.glob(f"lib/python*/site-packages/samcli/local/rapid/aws-lambda-rie-{arch}"))
    return found[0] if found else None


def runtime_python() -> Path | None:
    """``.venv-lambda``'s interpreter, if it is Python 3.12."""
    python = LAMBDA_VENV / "bin" / "python"
    if not python.is_file():
        return None
    done = subprocess.run(
        [str(python), "-c", "import sys, awslambdaric; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return python if done.returncode == 0 and done.stdout.strip() == LAMBDA_PYTHON else None


class Emulator:
    """The RIE running ``command`` (the runtime's bootstrap), on 127.0.0.1:port."""

    def __init__(
        self, command: list[str], env: dict[str, str], cwd: Path | None = None, port: int | None = None
    ) -> None:
        self.command = command
        self.env = env
        self.cwd = cwd
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}{INVOCATIONS}"
        self._process = LoopbackProcess("the emulator", command, self.port, env, cwd)

    def start(self, timeout: float = 60.0) -> Emulator:
        self._process.start(timeout)
        return self

    def invoke(self, event: dict[str, Any], timeout: float = 120.0) -> Any:
        request = urllib.request.Request(
            self.url, data=json.dumps(event).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return json.loads(answer.read())

    def log(self) -> str:
        return self._process.log()

    def stop(self) -> None:
        self._process.stop()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()
