"""A rebuild: a big JSON Lines file replayed with the real CLI into a fresh store, records/s and peak memory.

The file is written as it is generated (``user_limits.testing.synthetic.stream``, late copies from
a bounded history), never held whole. ``user-limits replay FILE --store URL`` runs in a child
process; its peak RSS is the ``ru_maxrss`` that ``os.wait4`` reports for that child alone, and its
records/s is the file's records over the child's wall time (interpreter start included).

Peak memory must not depend on the input's size: the same stream is replayed at two sizes (the
larger file starts with the smaller one) into SQLite, and the two peaks compared. The smaller
file is also replayed into PostgreSQL (the bench's shared server), and both stores must end with
the same read model.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import time
from itertools import islice
from pathlib import Path
from typing import Any

from bench import postgres

FULL = {"sizes": (1_000_000, 3_000_000), "users": 50_000}
QUICK = {"sizes": (20_000, 60_000), "users": 1_000}
SEED = 20_260_102
HISTORY = 32  # late copies come from a user's last 32 events: the generator's memory stays bounded
TARGET_RSS_MB = 300.0
# "Independent of the input size": the larger input may cost at most this much more at its peak.
RSS_GROWTH = 0.10


def write_files(folder: Path, sizes: tuple[int, ...], users: int) -> list[Path]:
    """One JSON Lines file per size, each the first ``size`` records of the same stream, written in one pass."""
    from user_limits.testing.synthetic import stream

    paths = [folder / f"rebuild-{size}.jsonl" for size in sizes]
    outputs = [path.open("wb", buffering=1 << 20) for path in paths]
    try:
        for number, record in enumerate(islice(stream(users, SEED, history=HISTORY), max(sizes))):
            data = record.data
            if data[:1] == b"{" and data[-1:] != b"}":
                # A poison record cut short is no line of JSON Lines (the reader stops there): closed,
                # it is still bad JSON between braces, a record to dead-letter.
                data += b"}"
            line = data + b"\n"
            for size, output in zip(sizes, outputs, strict=True):
                if number < size:
                    output.write(line)
    finally:
        for output in outputs:
            output.close()
    return paths


def cli() -> list[str]:
    """The installed ``user-limits`` command beside this interpreter, else the same CLI as a module."""
    script = Path(sys.executable).with_name("user-limits")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "user_limits"]


# Runs argv[2:] and writes its exit code and ru_maxrss (kB on Linux) to argv[1]. Why a wrapper: a
# child started from this big process by vfork (as subprocess does) inherits this process's peak
# RSS in its own ru_maxrss at exec; started from a small interpreter, it inherits that one's.
_MEASURE = """
import os, subprocess, sys
child = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(child.pid, 0)
open(sys.argv[1], "w").write(f"{os.waitstatus_to_exitcode(status)} {usage.ru_maxrss}")
"""


def replay(path: Path, url: str, folder: Path) -> dict[str, Any]:
    """``user-limits replay PATH --store URL`` in a child process: its seconds, peak RSS and summary line."""
    out, err, measured = folder / "replay.out", folder / "replay.err", folder / "replay.rusage"
    command = [sys.executable, "-c", _MEASURE, str(measured), *cli(), "replay", str(path), "--store", url]
    with out.open("wb") as stdout, err.open("wb") as stderr:
        started = time.perf_counter()
        subprocess.run(command, stdout=stdout, stderr=stderr, check=True)
        seconds = time.perf_counter() - started
    code, max_rss_kb = (int(field) for field in measured.read_text().split())
    if code != 0:
        raise RuntimeError(f"replay into {url} exited {code}: {err.read_text()[-2000:]}")
    return {"seconds": seconds, "rss_mb": max_rss_kb / 1024, "summary": out.read_text().strip()}


def read_model(url: str) -> tuple[str, dict[str, int], int]:
    """A digest of every exported limit (in id order), the counters, and the number of limits."""
    from user_limits.bootstrap import open_store
    from user_limits.domain.model import export_dict
    from user_limits.stores.base import LimitStore

    store: LimitStore = open_store(url)
    try:
        digest, limits = hashlib.sha256(), 0
        for limit in store.all_limits():
            digest.update(repr(sorted(export_dict(limit).items())).encode())
            limits += 1
        return digest.hexdigest(), store.stats().as_json(), limits
    finally:
        store.close()


def run(quick: bool = False) -> dict[str, object]:
    size = QUICK if quick else FULL
    sizes: tuple[int, ...] = size["sizes"]  # type: ignore[assignment]
    users: int = size["users"]  # type: ignore[assignment]
    sqlite: dict[int, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="user-limits-rebuild-") as name:
        folder = Path(name)
        started = time.perf_counter()
        paths = write_files(folder, sizes, users)
        generated = time.perf_counter() - started
        for records, path in zip(sizes, paths, strict=True):
            url = f"sqlite:///{folder / f'rebuild-{records}.db'}"
            sqlite[records] = {**replay(path, url, folder), "url": url}
        small = sizes[0]
        digest, stats, limits = read_model(sqlite[small]["url"])
        try:
            url = postgres.database("bench_rebuild")
            pg: dict[str, Any] = replay(paths[0], url, folder)
            pg_model = read_model(url)
            pg.update(available=True, equal=pg_model == (digest, stats, limits))
        except postgres.Unavailable as error:
            pg = {"available": False, "reason": str(error)}
    for result in sqlite.values():
        result.pop("url")
    peaks = [sqlite[records]["rss_mb"] for records in sizes]
    bounded = max(peaks) <= TARGET_RSS_MB
    flat = peaks[-1] <= peaks[0] * (1 + RSS_GROWTH)
    rows: list[dict[str, Any]] = [
        {
            "metric": f"`replay` of {small:,} JSON Lines records into a fresh SQLite file, records/s",
            "figure": f"{small / sqlite[small]['seconds']:,.0f} ({sqlite[small]['seconds']:.1f} s)",
            "target": "reported",
            "met": None,
        },
        {
            "metric": "Peak RSS of that `replay`, MB, at "
            + " / ".join(f"{records:,}" for records in sizes)
            + " records",
            "figure": " / ".join(f"{peak:.0f}" for peak in peaks),
            "target": f"<= {TARGET_RSS_MB:.0f}, not growing with the input (+{RSS_GROWTH:.0%} at most)",
            "met": bounded and flat,
        },
    ]
    if pg.get("available"):
        rows.append(
            {
                "metric": f"`replay` of the same {small:,} records into PostgreSQL, records/s",
                "figure": f"{small / pg['seconds']:,.0f} ({pg['seconds']:.1f} s, peak RSS {pg['rss_mb']:.0f} MB)",
                "target": "reported",
                "met": None,
            }
        )
        rows.append(
            {
                "metric": "SQLite and PostgreSQL rebuilds end with the same read model (export + counters)",
                "figure": "equal" if pg["equal"] else "DIFFERENT",
                "target": "equal",
                "met": pg["equal"],
            }
        )
    return {
        "users": users,
        "generated_seconds": round(generated, 1),
        "limits": limits,
        "stats": stats,
        "sqlite": {str(records): result for records, result in sqlite.items()},
        "postgres": pg,
        "rows": rows,
        "notes": [
            f"Rebuild: the synthetic stream ({users:,} players) written to JSON Lines as it is generated; "
            "`user-limits replay FILE --store URL` in a child process, records/s over its whole wall time "
            "(interpreter start included), peak RSS from os.wait4 for that child alone (started by a small "
            "wrapper, so that it does not inherit the bench process's own peak)."
        ],
    }
