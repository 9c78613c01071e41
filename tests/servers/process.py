"""A server in a child process on a loopback port, for the tests and the benchmarks: started,
waited for until it listens, its output kept for the error message, and stopped (SIGTERM, then
SIGKILL if it does not go). moto's server (DynamoDB, S3, SQS) and Lambda's Runtime Interface
Emulator run through it; kinesis-local and PostgreSQL have start-up rituals of their own and only
share ``free_port``.
"""

from __future__ import annotations

import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import IO


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class LoopbackProcess:
    """``command`` as a child process, ready once 127.0.0.1:``port`` accepts a connection."""

    def __init__(
        self, name: str, command: list[str], port: int, env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> None:
        self.name = name
        self.command = command
        self.port = port
        self.env = env
        self.cwd = cwd
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self, timeout: float) -> None:
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - kept open for the process's life
        self._process = subprocess.Popen(
            self.command, env=self.env, cwd=self.cwd, stdout=self._log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self._process.returncode}: {self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    output = self.log()
                    self.stop()
                    raise RuntimeError(f"{self.name} did not listen on port {self.port}: {output}") from None
                time.sleep(0.1)

    def log(self, tail: int = 4000) -> str:
        """The end of what the process wrote (stdout and stderr)."""
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read()[-tail:].decode(errors="replace")

    def stop(self, timeout: float = 15.0) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None
