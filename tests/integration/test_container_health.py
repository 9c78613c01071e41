"""The image's HEALTHCHECK command: what it probes for each main process, and its verdict against
real HTTP servers on loopback (healthy, answering 503, not listening)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.servers.process import free_port
from user_limits.container_health import healthy, main_process_args, probe_url

VENV = ["/opt/user-limits/bin/python", "/opt/user-limits/bin/user-limits"]


@pytest.mark.parametrize(
    "args, url",
    [
        ([*VENV, "serve", "--host", "0.0.0.0"], "http://127.0.0.1:8000/healthz"),
        ([*VENV, "serve", "--host", "0.0.0.0", "--port", "9000"], "http://127.0.0.1:9000/healthz"),
        ([*VENV, "serve", "--port=9001"], "http://127.0.0.1:9001/healthz"),
        (["python", "-m", "user_limits", "serve"], "http://127.0.0.1:8000/healthz"),
        ([*VENV, "consume", "--stream", "s", "--metrics-port", "9100"], "http://127.0.0.1:9100/metrics"),
        ([*VENV, "consume", "--stream", "serve"], None),
        ([*VENV, "demo"], None),
        ([*VENV, "replay", "serve"], None),
        ([*VENV], None),
        (["sh", "-c", "serve"], None),
    ],
)
def test_what_is_probed(args: list[str], url: str | None) -> None:
    assert probe_url(args) == url


def test_the_main_process_command_line(tmp_path: Path) -> None:
    cmdline = tmp_path / "cmdline"
    cmdline.write_bytes(b"/opt/user-limits/bin/python\0/opt/user-limits/bin/user-limits\0serve\0")
    assert main_process_args(cmdline) == ["/opt/user-limits/bin/python", "/opt/user-limits/bin/user-limits", "serve"]
    assert main_process_args(tmp_path / "missing") == []


class Answer(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(params=[200, 503])
def server(request: pytest.FixtureRequest) -> Iterator[tuple[str, int]]:
    handler = type("Handler", (Answer,), {"status": request.param})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/healthz", request.param
    httpd.shutdown()
    httpd.server_close()


def test_the_verdict_follows_the_status(server: tuple[str, int]) -> None:
    url, status = server
    assert healthy(url) is (status == 200)


def test_nothing_listening_is_unhealthy_and_nothing_to_probe_is_healthy() -> None:
    assert healthy(f"http://127.0.0.1:{free_port()}/healthz") is False
    assert healthy(None) is True
