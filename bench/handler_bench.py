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
from functools import partial
from pathlib import Path
from typing import Any, cast

from bench.reference_handler import ReferenceProjector
from user_limits.testing.lambda_events import lambda_events

Event = dict[str, Any]

FULL = {"records": 30_000, "users": 2_000, "batch": 1_000, "runs": 5}
QUICK = {"records": 3_000, "users": 200, "batch": 1_000, "runs": 1}
TARGET_SQLITE_RATIO = 2.0
TARGET_FLOOR_RATIO = 0.50
TARGET_POSTGRES_RATIO = 9.7
SEED = 20_260_101


def build_events(records: int, users: int, batch: int, seed: int = SEED) -> list[Event]:
    from user_limits.testing.synthetic import generate

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


def timed(handler: Callable[[Event, Any], dict[str, Any]], events: list[Event]) -> tuple[float, float]:
    """Wall and CPU seconds to hand every event to ``handler``; every batch must succeed completely.

    CPU time is kept beside wall time because the bench machine may be shared: it is what the
    handler itself costs, whatever else runs."""
    started, cpu = time.perf_counter(), time.process_time()
    for event in events:
        response = handler(event, None)
        if response.get("batchItemFailures"):
            raise RuntimeError(f"a batch reported failures: {response['batchItemFailures'][:3]}")
    return time.perf_counter() - started, time.process_time() - cpu


Run = tuple[tuple[float, float], list[dict[str, object]], dict[str, int]]


def floor_run(events: list[Event]) -> tuple[float, float]:
    """The decode floor: each record's base64 data decoded, then its JSON decoded generically
    (msgspec, no types, no rules), nothing else. What any handler of these events must at least do."""
    from binascii import a2b_base64

    import msgspec

    decode = msgspec.json.decode
    started, cpu = time.perf_counter(), time.process_time()
    for event in events:
        for record in event["Records"]:
            try:  # noqa: SIM105 (a with-statement per record would cost more than the decode)
                decode(a2b_base64(record["kinesis"]["data"]))
            except msgspec.DecodeError:  # the stream's poison records
                pass
    return time.perf_counter() - started, time.process_time() - cpu


def decode_run(events: list[Event]) -> tuple[float, float]:
    """The handler's first two steps alone: each event read into stream records (the transport) and
    their bytes decoded by the family's rules, without the projection, the store or the log line.
    Over the floor, this is the ceiling of the handler's ratio to the floor."""
    from user_limits import bootstrap
    from user_limits.kinesis.records import records_from_lambda_event
    from user_limits.stream.engine import decode_batch

    family = bootstrap.processor(bootstrap.open_store("memory://")).family  # the handler's, as wired
    started, cpu = time.perf_counter(), time.process_time()
    for event in events:
        records, _ = records_from_lambda_event(event)
        decode_batch(family, records)
    return time.perf_counter() - started, time.process_time() - cpu


def product_run(url: str, events: list[Event]) -> Run:
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


def reference_run(path: str, events: list[Event]) -> Run:
    reference = ReferenceProjector.sqlite(path)
    try:
        with stdout_silenced():
            seconds = timed(reference.handler, events)
        return seconds, reference.export(), reference.stats()
    finally:
        reference.close()


Results = dict[str, tuple[list[dict[str, object]], dict[str, int]]]


def postgres_comparison(events: list[Event], runs: int) -> tuple[dict[str, Any], Results]:
    """The same comparison on the bench's throwaway PostgreSQL server (fsync and synchronous commit
    off, for both), where every statement of the reference is a round trip."""
    from bench import postgres

    try:
        postgres.server()
    except postgres.Unavailable as error:
        return {"available": False, "reason": str(error)}, {}
    best = {"postgres": float("inf"), "reference_postgres": float("inf")}
    results: Results = {}
    for _ in range(runs):
        (seconds, _), export, stats = product_run(postgres.database("bench_product"), events)
        best["postgres"] = min(best["postgres"], seconds)
        results["postgres"] = (export, stats)
        reference = ReferenceProjector.postgres(postgres.database("bench_reference", schema=False))
        try:
            with stdout_silenced():
                seconds, _ = timed(reference.handler, events)
            best["reference_postgres"] = min(best["reference_postgres"], seconds)
            results["reference_postgres"] = (reference.export(), reference.stats())
        finally:
            reference.close()
    records = sum(len(event["Records"]) for event in events)
    return {
        "available": True,
        "records_per_second": {name: round(records / seconds) for name, seconds in best.items()},
        "ratio": round(best["reference_postgres"] / best["postgres"], 2),
        "equal": results["postgres"] == results["reference_postgres"],
    }, results


def run(quick: bool = False) -> dict[str, object]:
    size = QUICK if quick else FULL
    events = build_events(size["records"], size["users"], size["batch"])
    records = sum(len(event["Records"]) for event in events)
    best = {name: float("inf") for name in ("sqlite", "reference", "memory", "floor", "decode")}
    best_cpu = dict(best)
    results: Results = {}
    previous = os.environ.get("USER_LIMITS_STORE")
    try:
        with tempfile.TemporaryDirectory(prefix="user-limits-bench-") as folder:
            for attempt in range(size["runs"]):
                ours, theirs = Path(folder) / f"bench-{attempt}.db", Path(folder) / f"reference-{attempt}.db"
                runs: dict[str, Callable[[], Run]] = {
                    "sqlite": partial(product_run, f"sqlite:///{ours}", events),
                    "reference": partial(reference_run, str(theirs), events),
                    "memory": partial(product_run, "memory://", events),
                }
                for name, one_run in runs.items():
                    (seconds, cpu), export, stats = one_run()
                    best[name] = min(best[name], seconds)
                    best_cpu[name] = min(best_cpu[name], cpu)
                    results[name] = (export, stats)
                for name, timing in (("floor", floor_run), ("decode", decode_run)):
                    seconds, cpu = timing(events)
                    best[name] = min(best[name], seconds)
                    best_cpu[name] = min(best_cpu[name], cpu)
    finally:
        if previous is None:
            os.environ.pop("USER_LIMITS_STORE", None)
        else:
            os.environ["USER_LIMITS_STORE"] = previous

    # PostgreSQL: full runs only (the quick smoke run needs no server).
    postgres, pg_results = postgres_comparison(events, size["runs"]) if not quick else ({}, {})

    rps = {name: records / seconds for name, seconds in best.items()}
    cpu_rps = {name: records / seconds for name, seconds in best_cpu.items()}
    ratio = rps["sqlite"] / rps["reference"]
    cpu_ratio = cpu_rps["sqlite"] / cpu_rps["reference"]
    floor_ratio, cpu_floor_ratio = rps["memory"] / rps["floor"], cpu_rps["memory"] / cpu_rps["floor"]
    decode_ratio, cpu_decode_ratio = rps["decode"] / rps["floor"], cpu_rps["decode"] / cpu_rps["floor"]
    same_export = results["sqlite"][0] == results["reference"][0] == results["memory"][0]
    same_stats = results["sqlite"][1] == results["reference"][1] == results["memory"][1]
    if pg_results:  # PostgreSQL must end with the same read model too
        same_export = same_export and all(export == results["sqlite"][0] for export, _ in pg_results.values())
        same_stats = same_stats and all(stats == results["sqlite"][1] for _, stats in pg_results.values())
    return {
        "records": records,
        "users": size["users"],
        "batch": size["batch"],
        "events": len(events),
        "runs": size["runs"],
        "records_per_second": {name: round(value) for name, value in rps.items()},
        "cpu_records_per_second": {name: round(value) for name, value in cpu_rps.items()},
        "best_seconds": {name: round(value, 4) for name, value in best.items()},
        "best_cpu_seconds": {name: round(value, 4) for name, value in best_cpu.items()},
        "sqlite_vs_reference": round(ratio, 2),
        "memory_vs_reference": round(rps["memory"] / rps["reference"], 2),
        "memory_vs_floor": round(floor_ratio, 2),
        "decode_vs_floor": round(decode_ratio, 2),
        "sqlite_vs_reference_cpu": round(cpu_ratio, 2),
        "limits": len(results["sqlite"][0]),
        "stats": results["sqlite"][1],
        "reference_stats": results["reference"][1],
        "postgres": postgres,
        "export_equal": same_export,
        "notes": [
            "Handler figures: best of N wall-clock runs from a fresh store, records/s of Lambda Kinesis records; "
            "(CPU: …) is the same from process CPU time, steadier on a shared machine.",
            "While timing, file descriptor 1 goes to /dev/null: the handler's per-batch log line and EMF "
            "metrics are produced but not shown. The reference writes no log line or metric.",
        ],
        "stats_equal": same_stats,
        "rows": [
            {
                "metric": f"Handler on SQLite, records/s (best of {size['runs']}, {records:,} records)",
                "figure": f"{rps['sqlite']:,.0f} (CPU: {cpu_rps['sqlite']:,.0f})",
                "target": "",
                "met": None,
            },
            {
                "metric": "Reference handler on SQLite (Powertools BatchProcessor, pydantic, row-at-a-time)",
                "figure": f"{rps['reference']:,.0f} (CPU: {cpu_rps['reference']:,.0f})",
                "target": "",
                "met": None,
            },
            {
                "metric": "Handler on SQLite vs reference",
                "figure": f"{ratio:.2f}x (CPU: {cpu_ratio:.2f}x)",
                "target": f">= {TARGET_SQLITE_RATIO:.1f}x",
                "met": ratio >= TARGET_SQLITE_RATIO,
            },
            {
                "metric": "Handler in memory vs reference on SQLite (the ceiling of the ratio above)",
                "figure": f"{rps['memory'] / rps['reference']:.2f}x",
                "target": "",
                "met": None,
            },
            {
                "metric": "Handler in memory, records/s",
                "figure": f"{rps['memory']:,.0f} (CPU: {cpu_rps['memory']:,.0f})",
                "target": "",
                "met": None,
            },
            {
                "metric": "Decode floor (base64 + generic msgspec decode of the same events), records/s",
                "figure": f"{rps['floor']:,.0f} (CPU: {cpu_rps['floor']:,.0f})",
                "target": "",
                "met": None,
            },
            {
                "metric": "Handler's transport and decode alone (no projection, no store, no log), records/s",
                "figure": f"{rps['decode']:,.0f} (CPU: {cpu_rps['decode']:,.0f})",
                "target": "",
                "met": None,
            },
            {
                "metric": "Transport and decode alone vs the decode floor (the ceiling of the ratio below)",
                "figure": f"{decode_ratio:.2f} (CPU: {cpu_decode_ratio:.2f})",
                "target": "",
                "met": None,
            },
            {
                "metric": "Handler in memory vs the decode floor",
                "figure": f"{floor_ratio:.2f} (CPU: {cpu_floor_ratio:.2f})",
                "target": f">= {TARGET_FLOOR_RATIO:.2f}",
                "met": floor_ratio >= TARGET_FLOOR_RATIO,
            },
            *postgres_rows(postgres),
            {
                "metric": "Reference and product end with the same read model (export + counters)",
                "figure": "equal" if same_export and same_stats else "DIFFERENT",
                "target": "equal",
                "met": same_export and same_stats,
            },
        ],
    }


def postgres_rows(postgres: dict[str, Any]) -> list[dict[str, Any]]:
    if not postgres.get("available"):
        return []
    rps = postgres["records_per_second"]
    return [
        {
            "metric": "Handler on PostgreSQL vs the same reference on PostgreSQL, records/s",
            "figure": f"{rps['postgres']:,} vs {rps['reference_postgres']:,} ({postgres['ratio']:.1f}x)",
            "target": f">= {TARGET_POSTGRES_RATIO}x",
            "met": postgres["ratio"] >= TARGET_POSTGRES_RATIO,
        }
    ]
