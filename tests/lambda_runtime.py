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
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import IO, Any

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


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


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
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self, timeout: float = 60.0) -> Emulator:
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - kept for the process's life
        self._process = subprocess.Popen(
            self.command, env=self.env, cwd=self.cwd, stdout=self._log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(f"the emulator exited with {self._process.returncode}: {self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the emulator did not listen on port {self.port}: {self.log()}") from None
                time.sleep(0.1)

    def invoke(self, event: dict[str, Any], timeout: float = 120.0) -> Any:
        request = urllib.request.Request(
            self.url, data=json.dumps(event).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return json.loads(answer.read())

    def log(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read()[-4000:].decode(errors="replace")

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()
