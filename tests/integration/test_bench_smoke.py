"""`make bench` smoke run: the field-standard reference handler and the product's handler end with
the same read model on the same Lambda Kinesis events. A correctness check; no timing is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quick_handler_bench_reference_and_product_agree(tmp_path: Path) -> None:
    results = tmp_path / "latest.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--only", "handler", "--results", str(results)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    handler = json.loads(results.read_text())["results"]["handler"]
    assert handler["available"] is True
    assert handler["export_equal"] is True
    assert handler["stats_equal"] is True
    assert handler["stats"] == handler["reference_stats"]
    # The stream exercises every rule, so agreeing means something.
    assert all(
        handler["stats"][rule] > 0 for rule in ("applied", "skipped", "ignored", "parked", "deadLettered", "drifted")
    )
    assert handler["limits"] > 0
    assert "| Handler on SQLite vs reference |" in done.stdout
