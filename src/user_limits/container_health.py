"""The container image's HEALTHCHECK: ``python -m user_limits.container_health``.

It reads the command of the container's main process (PID 1) and probes what that command
serves: ``serve`` answers ``GET /healthz`` on its ``--port`` (503 when the store does not answer),
``consume --metrics-port N`` answers ``GET /metrics``. A one-off command (``demo``, ``replay``...)
serves nothing and is healthy while it runs. Exit 0 healthy, 1 unhealthy, as Docker expects.
"""

from __future__ import annotations

import sys
import urllib.request
from pathlib import Path

SERVE_PORT = 8000  # serve's default --port
TIMEOUT = 4.0  # seconds, under the HEALTHCHECK's --timeout


def _option(args: list[str], name: str) -> str | None:
    for index, arg in enumerate(args):
        if arg == name and index + 1 < len(args):
            return args[index + 1]
        if arg.startswith(f"{name}="):
            return arg.split("=", 1)[1]
    return None


def _command(args: list[str]) -> tuple[str | None, list[str]]:
    """The user-limits command (``serve``...) and its arguments, from ``[python] user-limits CMD ...``
    or ``python -m user_limits CMD ...``."""
    for index, arg in enumerate(args):
        if Path(arg).name == "user-limits" or (arg == "user_limits" and args[index - 1 : index] == ["-m"]):
            rest = args[index + 1 :]
            return (rest[0], rest[1:]) if rest else (None, [])
    return None, []


def probe_url(args: list[str]) -> str | None:
    """What to GET for the main process's command line; None when it serves nothing."""
    command, options = _command(args)
    if command == "serve":
        return f"http://127.0.0.1:{_option(options, '--port') or SERVE_PORT}/healthz"
    if command == "consume":
        metrics_port = _option(options, "--metrics-port")
        return f"http://127.0.0.1:{metrics_port}/metrics" if metrics_port else None
    return None


def main_process_args(cmdline: Path = Path("/proc/1/cmdline")) -> list[str]:
    try:
        return [part.decode(errors="replace") for part in cmdline.read_bytes().split(b"\0") if part]
    except OSError:
        return []


def healthy(url: str | None) -> bool:
    if url is None:
        return True
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as answer:
            return bool(answer.status == 200)
    except OSError:  # refused, timed out, or an HTTP error status (HTTPError is an OSError)
        return False


def main() -> None:
    sys.exit(0 if healthy(probe_url(main_process_args())) else 1)


if __name__ == "__main__":
    main()
