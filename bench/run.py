"""``make bench``: every benchmark, one Markdown table, and ``bench/results/latest.json``.

    python -m bench.run                    # everything (a few minutes on 2 cores)
    python -m bench.run --quick            # a smaller smoke run
    python -m bench.run --only handler,import
    python -m bench.run --only rebuild         # the 1M/3M-record replays (a few minutes)

Each benchmark module exposes ``run(quick: bool = False) -> dict[str, object]``; a ``rows`` entry
(a list of {metric, figure, target, met, command}) becomes lines of the table, anything else is
kept in the JSON. Modules written separately (the API, DynamoDB requests) are imported lazily and
reported as not available when absent or failing.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import platform
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

BENCHMARKS = {
    "handler": "bench.handler_bench",
    "decoder": "bench.decoder_bench",
    "import": "bench.import_time",
    "rebuild": "bench.rebuild",
    "api": "bench.api_bench",
    "dynamodb": "bench.dynamodb_requests",
}
RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"


def run_one(name: str, module_name: str, quick: bool) -> dict[str, Any]:
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name != module_name:
            raise
        return {"available": False, "reason": f"{module_name} not found"}
    print(f"… {name}", file=sys.stderr, flush=True)
    started = time.perf_counter()
    try:
        result = dict(module.run(quick=quick))
    except Exception as error:  # one broken benchmark must not hide the others
        traceback.print_exc()
        return {"available": False, "reason": f"{type(error).__name__}: {error}"}
    result.setdefault("available", True)
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result


def rows_of(name: str, result: dict[str, Any], quick: bool) -> list[dict[str, Any]]:
    if not result.get("available", True):
        return [{"metric": name, "figure": f"not available ({result.get('reason', '')})", "target": "", "met": None}]
    command = f"python -m bench.run {'--quick ' if quick else ''}--only {name}"
    rows = result.get("rows")
    if not isinstance(rows, list):
        # A module without rows: its scalar figures, as they are.
        rows = [
            {"metric": f"{name}: {key}", "figure": str(value), "target": "", "met": None}
            for key, value in result.items()
            if isinstance(value, int | float | str) and key not in ("available", "seconds")
        ]
    return [{"command": command, **row} for row in rows if isinstance(row, dict)]


def table(rows: Sequence[dict[str, Any]]) -> str:
    marks: dict[object, str] = {True: "met", False: "**not met**"}
    lines = ["| Metric | Figure | Target | Met? | Reproduce |", "|---|---|---|---|---|"]
    for row in rows:
        command = f"`{row['command']}`" if row.get("command") else ""
        cells = [str(row.get("metric", "")), str(row.get("figure", "")), str(row.get("target", ""))]
        lines.append("| " + " | ".join([*cells, marks.get(row.get("met"), ""), command]) + " |")
    return "\n".join(lines)


def machine() -> dict[str, object]:
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller inputs and a single run each")
    parser.add_argument("--only", default="", help=f"comma-separated subset of: {', '.join(BENCHMARKS)}")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where to write the JSON results")
    args = parser.parse_args(argv)
    chosen = [name.strip() for name in args.only.split(",") if name.strip()] or list(BENCHMARKS)
    unknown = [name for name in chosen if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")

    started, load_before = time.perf_counter(), os.getloadavg()[0]
    try:
        results = {name: run_one(name, BENCHMARKS[name], args.quick) for name in chosen}
    finally:
        from bench import postgres

        postgres.stop()
    load_after = os.getloadavg()[0]
    rows = [row for name in chosen for row in rows_of(name, results[name], args.quick)]
    info = machine()
    report = {
        "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "machine": info,
        "load_average": {"before": round(load_before, 2), "after": round(load_after, 2)},
        "seconds": round(time.perf_counter() - started, 1),
        "results": results,
        "table": table(rows),
    }
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"\n{info['implementation']} {info['python']}, {info['cpus']} CPUs, {info['platform']}")
    busy = max(load_before, load_after) > 1.0
    print(f"Load average (1 min) {load_before:.2f} before, {load_after:.2f} after", end="")
    print(": other work was running; wall-clock figures are depressed." if busy else ".")
    if args.quick:
        print("Quick run: smaller inputs, one run each; figures are indicative only.")
    print()
    print(report["table"])
    for name in chosen:
        for note in results[name].get("notes", ()):
            print(f"\n- {note}", end="")
    print()
    print(f"\nResults: {args.results}  ({report['seconds']} s)")
    # Missed speed targets are reported, not failed; a reference that disagrees with the product is.
    handler = results.get("handler", {})
    disagree = handler.get("available") and not (handler.get("export_equal") and handler.get("stats_equal"))
    rebuilt = results.get("rebuild", {}).get("postgres", {})
    disagree = disagree or (rebuilt.get("available") and not rebuilt.get("equal"))
    return 1 if disagree else 0


if __name__ == "__main__":
    sys.exit(main())
