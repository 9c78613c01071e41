"""The read API under load: ``GET /api/user-limits/{userId}`` against a bare constant endpoint.

    python -m bench.api_bench            # 100,000 users x 4 limits, wrk -t1 -c16 -d10s
    python -m bench.api_bench --quick    # 2,000 users, 3 s runs

The store (a SQLite file) is filled through the real batch path with generated CREATED events.
The real app runs in uvicorn (auth on, HS256) in a subprocess on loopback, with one extra route
added by this launcher only: a constant answer, the floor of what FastAPI and uvicorn cost on
this machine in the same run. ``wrk`` (another process) calls the API for random users with an
admin token, then the floor. Target: the API's p99 within 3x the floor's.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.servers.process import free_port

LIMITS_PER_USER = 4
TYPES = ("DEPOSIT", "LOSS", "BET", "SESSION")
PERIODS = ("DAY", "WEEK", "MONTH", "INDEFINITE")
BASE_TIME = 1_795_000_000_000
SECRET = "api-bench-secret-0123456789abcdef0123"
TARGET_RATIO = 3.0

# wrk calls done() once at the end: one machine-readable line (latencies in microseconds).
DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("BENCH %d %d %d %d %d\\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), e.status + e.connect + e.read + e.write + e.timeout))
end
"""
RANDOM_USERS = """
math.randomseed(20261122)
request = function()
  return wrk.format("GET", string.format("/api/user-limits/user-%07d", math.random(0, {users} - 1)))
end
"""


def user_id(n: int) -> str:
    return f"user-{n:07d}"


def load(url: str, users: int) -> float:
    """Fill the store with users x 4 limits through the batch path; returns the seconds it took."""
    import msgspec

    from user_limits.bootstrap import open_store
    from user_limits.replay import replay
    from user_limits.stream.records import StreamRecord

    encode = msgspec.json.Encoder().encode
    started = time.perf_counter()
    store = open_store(url)
    chunk = 25_000  # users per replay call: bounded memory
    seq = 0
    for first in range(0, users, chunk):
        records = []
        for n in range(first, min(first + chunk, users)):
            for k in range(LIMITS_PER_USER):
                seq += 1
                period = PERIODS[k]
                payload = {
                    "activeFrom": BASE_TIME,
                    "brandId": "brand-1",
                    "currencyCode": "EUR",
                    "period": period,
                    "status": "ACTIVE",
                    "type": TYPES[k],
                    "userId": user_id(n),
                    "userLimitId": f"{user_id(n)}-{k}",
                    "value": str(100 * (k + 1)),
                    **({} if period == "INDEFINITE" else {"nextResetTime": BASE_TIME + 86_400_000 * (k + 1)}),
                }
                envelope = {
                    "aggregateId": user_id(n),
                    "context": {},
                    "createdAt": BASE_TIME + seq,
                    "eventId": f"e{seq}",
                    "payload": payload,
                    "sequenceNumber": seq,
                    "source": "limitUser",
                    "type": "USER_LIMIT_CREATED",
                }
                records.append(StreamRecord(encode(envelope)))
        replay(store, records, batch_size=10_000, name="bench")
    store.close()
    return time.perf_counter() - started


def serve(url: str, port: int) -> None:
    """The launcher run in the server subprocess: the real app plus the floor route."""
    import uvicorn

    from user_limits.api.app import create_app
    from user_limits.api.settings import load_settings

    app = create_app(load_settings(store=url))

    @app.get("/bench/floor", include_in_schema=False)
    async def floor() -> dict[str, bool]:
        return {"ok": True}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def wait_healthy(base: str, server: subprocess.Popen[bytes]) -> None:
    for _ in range(300):
        if server.poll() is not None:
            raise RuntimeError(f"the API server exited with {server.returncode}")
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=1) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("the API server did not become healthy")


def wrk(url: str, script: Path, duration: str, token: str) -> dict[str, float]:
    command = ["wrk", "-t1", "-c16", f"-d{duration}", "--latency", "-s", str(script)]
    command += ["-H", f"Authorization: Bearer {token}", url]
    output = subprocess.run(command, capture_output=True, text=True, check=True, timeout=120).stdout
    found = re.search(r"^BENCH (\d+) (\d+) (\d+) (\d+) (\d+)$", output, re.MULTILINE)
    if found is None:
        raise RuntimeError(f"unexpected wrk output:\n{output}")
    requests, duration_us, p50, p99, errors = (int(value) for value in found.groups())
    if errors:
        raise RuntimeError(f"wrk saw {errors} errors or non-2xx answers on {url}")
    return {"rps": round(requests / (duration_us / 1e6)), "p50Ms": p50 / 1000, "p99Ms": p99 / 1000}


def run(quick: bool = False) -> dict[str, object]:
    import jwt

    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed (Debian package wrk)")
    users = 2_000 if quick else 100_000
    duration = "3s" if quick else "10s"
    token = jwt.encode(
        {"sub": "bench", "scope": "user-limits:admin", "exp": int(time.time()) + 3600}, SECRET, algorithm="HS256"
    )
    with tempfile.TemporaryDirectory(prefix="api-bench-") as folder:
        url = f"sqlite:///{folder}/bench.db"
        load_seconds = load(url, users)
        api_script = Path(folder, "api.lua")
        api_script.write_text(RANDOM_USERS.replace("{users}", str(users)) + DONE)
        floor_script = Path(folder, "floor.lua")
        floor_script.write_text(DONE)
        port = free_port()
        env = {**os.environ, "USER_LIMITS_JWT_SECRET": SECRET, "USER_LIMITS_AUTH": "on"}
        env.pop("USER_LIMITS_JWKS_URL", None)
        server = subprocess.Popen(
            [sys.executable, "-m", "bench.api_bench", "--serve", url, str(port)],
            env=env,
            cwd=Path(__file__).resolve().parents[1],
        )
        base = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(base, server)
            wrk(f"{base}/api/user-limits/x", api_script, "1s" if quick else "3s", token)  # warm-up
            api = wrk(f"{base}/api/user-limits/x", api_script, duration, token)
            floor = wrk(f"{base}/bench/floor", floor_script, duration, token)
        finally:
            server.terminate()
            server.wait(timeout=10)
    ratio = round(api["p99Ms"] / floor["p99Ms"], 2)
    command = f"python -m bench.api_bench{' --quick' if quick else ''}"
    rows: list[dict[str, object]] = [
        {"metric": "API GET /api/user-limits/{userId}: requests/s", "figure": api["rps"], "target": "", "met": None},
        {"metric": "API: p50 / p99 latency (ms)", "figure": f"{api['p50Ms']} / {api['p99Ms']}", "target": ""},
        {"metric": "floor (constant route): requests/s", "figure": floor["rps"], "target": "", "met": None},
        {"metric": "floor: p50 / p99 latency (ms)", "figure": f"{floor['p50Ms']} / {floor['p99Ms']}", "target": ""},
        {
            "metric": "API p99 / floor p99",
            "figure": f"{ratio}x",
            "target": f"<= {TARGET_RATIO:g}x",
            "met": ratio <= TARGET_RATIO,
        },
    ]
    return {
        "users": users,
        "limits": users * LIMITS_PER_USER,
        "loadSeconds": round(load_seconds, 1),
        "wrk": f"wrk -t1 -c16 -d{duration} --latency",
        "api": api,
        "floor": floor,
        "p99Ratio": ratio,
        "rows": [{**row, "command": command} for row in rows],
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.api_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2,000 users and 3 s runs")
    parser.add_argument("--serve", nargs=2, metavar=("STORE_URL", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]))
        return
    result = run(quick=args.quick)
    summary: dict[str, Any] = {key: value for key, value in result.items() if key != "rows"}
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
