"""Throughput of the real Lambda handler against the field-standard reference, on the same events.

A synthetic messy stream (duplicates, late copies, ignored types, orphan resets, poison records)
is cut into 1,000-record Lambda Kinesis events. Each run starts from a fresh store; the figure is
the best of N runs in records per second. After the runs, the reference's read model (export and
counters) must equal the product's, or the comparison means nothing.

The handler's per-batch log line and metrics are written to /dev/null (file descriptor 1 is
redirected while timing): the work of producing them is measured, the terminal stays readable.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

from bench.lambda_events import lambda_events
from bench.reference_handler import ReferenceProjector

Event = dict[str, Any]

FULL = {"records": 30_000, "users": 2_000, "batch": 1_000, "runs": 3}
QUICK = {"records": 3_000, "users": 200, "batch": 1_000, "runs": 1}
TARGET_SQLITE_RATIO = 3.0
TARGET_MEMORY_RPS = 100_000.0
SEED = 20_260_101


def build_events(records: int, users: int, batch: int, seed: int = SEED) -> list[Event]:
    from user_limits.synthetic import generate

    stream = generate(records, users, seed)
    return lambda_events(((record.partition_key, record.data) for record in stream), batch)


@contextmanager
def stdout_silenced() -> Iterator[None]:
    """Send whatever is written to stdout (log lines, EMF metrics) to /dev/null, at the fd level."""
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def timed(handler: Callable[[Event, Any], dict[str, Any]], events: list[Event]) -> float:
    """Seconds to hand every event to ``handler``; every batch must succeed completely."""
    started = time.perf_counter()
    for event in events:
        response = handler(event, None)
        if response.get("batchItemFailures"):
            raise RuntimeError(f"a batch reported failures: {response['batchItemFailures'][:3]}")
    return time.perf_counter() - started


def product_run(url: str, events: list[Event]) -> tuple[float, list[dict[str, object]], dict[str, int]]:
    """One run of ``user_limits.aws_lambda.handler`` on a fresh store; returns seconds, export, counters."""
    from user_limits import aws_lambda
    from user_limits.domain.model import export_dict
    from user_limits.stores.base import LimitStore

    os.environ["USER_LIMITS_STORE"] = url
    aws_lambda.reset()
    # Opened (schema created) before timing, as in a warm Lambda.
    store = cast(LimitStore, aws_lambda.processor().store)
    with stdout_silenced():
        seconds = timed(aws_lambda.handler, events)
    export = [export_dict(limit) for limit in store.all_limits()]
    stats = store.stats().as_json()
    aws_lambda.reset()
    return seconds, export, stats


def reference_run(path: str, events: list[Event]) -> tuple[float, list[dict[str, object]], dict[str, int]]:
    reference = ReferenceProjector(path)
    try:
        with stdout_silenced():
            seconds = timed(reference.handler, events)
        return seconds, reference.export(), reference.stats()
    finally:
        reference.close()


def run(quick: bool = False) -> dict[str, object]:
    size = QUICK if quick else FULL
    events = build_events(size["records"], size["users"], size["batch"])
    records = sum(len(event["Records"]) for event in events)
    best = {"sqlite": float("inf"), "reference": float("inf"), "memory": float("inf")}
    results: dict[str, tuple[list[dict[str, object]], dict[str, int]]] = {}
    previous = os.environ.get("USER_LIMITS_STORE")
    try:
        with tempfile.TemporaryDirectory(prefix="user-limits-bench-") as folder:
            for attempt in range(size["runs"]):
                ours = Path(folder) / f"bench-{attempt}.db"
                seconds, export, stats = product_run(f"sqlite:///{ours}", events)
                best["sqlite"] = min(best["sqlite"], seconds)
                results["sqlite"] = (export, stats)

                theirs = Path(folder) / f"reference-{attempt}.db"
                seconds, export, stats = reference_run(str(theirs), events)
                best["reference"] = min(best["reference"], seconds)
                results["reference"] = (export, stats)

                seconds, export, stats = product_run("memory://", events)
                best["memory"] = min(best["memory"], seconds)
                results["memory"] = (export, stats)
    finally:
        if previous is None:
            os.environ.pop("USER_LIMITS_STORE", None)
        else:
            os.environ["USER_LIMITS_STORE"] = previous

    rps = {name: records / seconds for name, seconds in best.items()}
    ratio = rps["sqlite"] / rps["reference"]
    same_export = results["sqlite"][0] == results["reference"][0] == results["memory"][0]
    same_stats = results["sqlite"][1] == results["reference"][1] == results["memory"][1]
    return {
        "records": records,
        "users": size["users"],
        "batch": size["batch"],
        "events": len(events),
        "runs": size["runs"],
        "records_per_second": {name: round(value) for name, value in rps.items()},
        "best_seconds": {name: round(value, 4) for name, value in best.items()},
        "sqlite_vs_reference": round(ratio, 2),
        "memory_vs_reference": round(rps["memory"] / rps["reference"], 2),
        "limits": len(results["sqlite"][0]),
        "stats": results["sqlite"][1],
        "reference_stats": results["reference"][1],
        "export_equal": same_export,
        "stats_equal": same_stats,
        "rows": [
            {
                "metric": f"Handler on SQLite, records/s (best of {size['runs']}, {records:,} records)",
                "figure": f"{rps['sqlite']:,.0f}",
                "target": "",
                "met": None,
            },
            {
                "metric": "Reference handler on SQLite (Powertools BatchProcessor + pydantic + row-at-a-time)",
                "figure": f"{rps['reference']:,.0f}",
                "target": "",
                "met": None,
            },
            {
                "metric": "Handler on SQLite vs reference",
                "figure": f"{ratio:.1f}x",
                "target": f">= {TARGET_SQLITE_RATIO:.0f}x",
                "met": ratio >= TARGET_SQLITE_RATIO,
            },
            {
                "metric": "Handler in memory, records/s",
                "figure": f"{rps['memory']:,.0f}",
                "target": f">= {TARGET_MEMORY_RPS:,.0f}",
                "met": rps["memory"] >= TARGET_MEMORY_RPS,
            },
            {
                "metric": "Reference and product end with the same read model (export + counters)",
                "figure": "equal" if same_export and same_stats else "DIFFERENT",
                "target": "equal",
                "met": same_export and same_stats,
            },
        ],
    }
