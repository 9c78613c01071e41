"""Snapshots: the format, each import rule on its own on every store, and the commands.

- a snapshot limit is applied only where the store has none of that id or an older position (rule 3);
- once applied, its parked events above its position drain, those at or below are removed (rule 7);
- a malformed file is refused whole, naming the line and the field, before anything is written;
- a dry run reads the store and writes nothing.
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.cli_runner import cli
from tests.streams import BASE_TIME, created, export, process, progress, records, reset
from user_limits.domain.model import EXPORT_FIELDS
from user_limits.operations.snapshots.format import FIELDS, SnapshotFile, SnapshotFormatError
from user_limits.operations.snapshots.importer import ImportCounts, import_snapshot, write_snapshot
from user_limits.stores.base import LimitStore


def line(limit_id: str, seq: int, user_id: str = "u1", **fields: Any) -> dict[str, Any]:
    return {
        "userLimitId": limit_id,
        "userId": user_id,
        "brandId": "brand-1",
        "type": "LOSS",
        "period": "WEEK",
        "status": "ACTIVE",
        "value": "500.00",
        "progress": "12.50",
        "currencyCode": "EUR",
        "activeFrom": BASE_TIME,
        "activeUntil": None,
        "nextResetTime": BASE_TIME + 7 * 86_400_000,
        "createdAt": BASE_TIME + 1000,
        "sequenceNumber": seq,
        **fields,
    }


def write(path: Path, lines: list[dict[str, Any]] | bytes) -> Path:
    path.write_bytes(lines if isinstance(lines, bytes) else b"".join(json.dumps(x).encode() + b"\n" for x in lines))
    return path


def snapshot_file(path: Path) -> SnapshotFile:
    return SnapshotFile(lambda: open(path, "rb"), path.name, path.stat().st_size)


def imported(store: LimitStore, path: Path, **options: Any) -> ImportCounts:
    return import_snapshot(store, snapshot_file(path), **options)


def exported(limit: dict[str, Any]) -> dict[str, Any]:
    return {name: limit[name] for name in EXPORT_FIELDS}


def view(store: LimitStore) -> object:
    return export(store), store.parked_events(), store.dead_letters(), store.stats().as_json()


# -- the rules, on every store


def test_a_limit_the_store_lacks_is_applied_with_its_position(store: LimitStore, tmp_path: Path) -> None:
    lines = [line("L2", 40, "u2", activeUntil=BASE_TIME + 5, progress="-0"), line("L1", 7)]
    counts = imported(store, write(tmp_path / "s.jsonl", lines))
    assert export(store) == [exported(lines[1]), exported(lines[0])]
    limit = store.user_limit("u2", "L2")
    assert limit is not None and limit.last_sequence_number == 40
    assert (counts.limits, counts.applied, counts.skipped) == (2, 2, 0)


def test_a_snapshot_older_than_the_store_or_as_old_is_skipped(store: LimitStore, tmp_path: Path) -> None:
    process(store, records([created("L1", 1), progress("L1", 5, "5", "1"), created("L2", 3, value="7")]))
    before = export(store)
    counts = imported(store, write(tmp_path / "s.jsonl", [line("L1", 4), line("L2", 3)]))
    assert export(store) == before
    assert (counts.applied, counts.skipped) == (0, 2)


def test_a_snapshot_newer_than_the_store_replaces_its_limit(store: LimitStore, tmp_path: Path) -> None:
    process(store, records([created("L1", 1), progress("L1", 2, "5", "1")]))
    snapshot = line("L1", 9, value="80", progress="79.99", status="IN_COOLDOWN")
    counts = imported(store, write(tmp_path / "s.jsonl", [snapshot]))
    assert export(store) == [exported(snapshot)]
    # Then the guard holds at the snapshot's position: a late copy of the stream is skipped.
    process(store, records([progress("L1", 8, "1", "1")], 50))
    assert export(store) == [exported(snapshot)]
    assert (counts.applied, counts.skipped) == (1, 0)


def test_parked_events_above_the_snapshot_drain_and_those_at_or_below_are_removed(
    store: LimitStore, tmp_path: Path
) -> None:
    process(
        store,
        records(
            [progress("L1", 3, "1", "1"), progress("L1", 7, "2", "2"), reset("L1", 12, 99), progress("L2", 4, "1", "0")]
        ),
    )
    counts = imported(store, write(tmp_path / "s.jsonl", [line("L1", 7)]))
    [limit] = export(store)
    assert (limit["progress"], limit["nextResetTime"]) == ("0", 99)  # the reset at 12 applied on the snapshot
    assert store.user_limit("u1", "L1").last_sequence_number == 12  # type: ignore[union-attr]
    assert [(event.key, event.position) for event in store.parked_events()] == [("L2", 4)]
    assert (counts.applied, counts.drained, counts.drained_skipped) == (1, 1, 2)


def test_a_malformed_line_refuses_the_whole_file_and_writes_nothing(store: LimitStore, tmp_path: Path) -> None:
    process(store, records([created("L0", 1), progress("L9", 3, "1", "0")]))
    before = view(store)
    lines = [line("L1", 2), line("L9", 5), line("L3", 4, value="12,5")]
    with pytest.raises(SnapshotFormatError, match=r"^s\.jsonl: line 3: field value: .*not decimal text"):
        imported(store, write(tmp_path / "s.jsonl", lines), batch_size=1)
    assert view(store) == before


def test_a_dry_run_counts_what_an_import_does_and_writes_nothing(store: LimitStore, tmp_path: Path) -> None:
    process(store, records([created("L1", 1), progress("L2", 6, "1", "0"), progress("L2", 2, "1", "0")]))
    path = write(tmp_path / "s.jsonl", [line("L1", 4), line("L2", 5, "u2"), line("L3", 1)])
    before = view(store)
    dry = imported(store, path, dry_run=True, batch_size=2)
    assert view(store) == before
    real = imported(store, path, batch_size=2)
    assert dry == real == ImportCounts(limits=3, applied=3, drained=1, drained_skipped=1)
    assert view(store) != before


def test_a_snapshot_imported_into_a_fresh_store_exports_the_same(store: LimitStore, tmp_path: Path) -> None:
    process(
        store, records([created("L1", 1, value="1E+5"), progress("L1", 4, "0.10", "9800.00"), created("L2", 2, "u2")])
    )
    out = io.BytesIO()
    assert write_snapshot(store, out) == 2
    lines = [json.loads(text) for text in out.getvalue().splitlines()]
    assert [list(x) for x in lines] == [list(FIELDS)] * 2
    assert [x["sequenceNumber"] for x in lines] == [4, 2]
    from user_limits.bootstrap import open_store

    fresh = open_store("memory://")
    imported(fresh, write(tmp_path / "s.jsonl", out.getvalue()))
    assert export(fresh) == export(store)


# -- the format, on its own


def _bad(**fields: Any) -> dict[str, Any]:
    return line("L1", 3, **fields)


def _without(name: str) -> dict[str, Any]:
    value = line("L1", 3)
    del value[name]
    return value


MALFORMED: list[tuple[bytes | dict[str, Any], str]] = [
    (b'{"userLimitId": "L1",', "malformed JSON"),
    (b"[1, 2]", "not a JSON object"),
    (_without("nextResetTime"), "field nextResetTime: missing"),
    (_bad(updatedAt=1), "field updatedAt: not a field"),
    (_bad(value=100), "field value: expected a decimal string"),
    (_bad(progress=" 1"), "field progress: .* is not decimal text"),
    (_bad(value="1_000"), "field value: .* is not decimal text"),
    (_bad(value="NaN"), "field value: .* is not decimal text"),
    (_bad(value="1E+38"), "field value: .* is out of range"),
    (_bad(progress="0.1234567890123456789012345678901234567891"), "field progress: .* is out of range"),
    (_bad(type="SPEND"), "field type: expected one of BALANCE"),
    (_bad(period="DAYS"), "field period: expected one of"),
    (_bad(status=None), "field status: expected one of"),
    (_bad(sequenceNumber="3"), "field sequenceNumber: expected an integer"),
    (_bad(sequenceNumber=-1), "field sequenceNumber: expected an integer"),
    (_bad(sequenceNumber=2**63), "field sequenceNumber: expected an integer"),
    (_bad(sequenceNumber=3.0), "field sequenceNumber: expected an integer"),
    (_bad(createdAt=True), "field createdAt: expected an integer"),
    (_bad(userLimitId="x" * 201), "field userLimitId: expected a string of at most 200"),
    (_bad(brandId="a\x00b"), "field brandId: contains the NUL character"),
    (line("L0", 9), "field userLimitId: the same id as line 1"),
]


@pytest.mark.parametrize(("bad", "message"), MALFORMED)
def test_each_malformation_is_named_by_line_and_field(
    tmp_path: Path, bad: bytes | dict[str, Any], message: str
) -> None:
    from user_limits.bootstrap import open_store

    text = bad if isinstance(bad, bytes) else json.dumps(bad).encode()
    path = write(tmp_path / "s.jsonl", json.dumps(line("L0", 1)).encode() + b"\n\n" + text + b"\n")
    store = open_store("memory://")
    with pytest.raises(SnapshotFormatError, match=rf"^s\.jsonl: line 3: {message}"):
        imported(store, path)
    assert export(store) == []


def test_a_json_array_of_the_same_objects_is_read_with_line_numbers(tmp_path: Path) -> None:
    from user_limits.bootstrap import open_store

    good = [line("L1", 2), line("L2", 3)]
    path = write(tmp_path / "s.json", json.dumps(good, indent=1).encode())
    store = open_store("memory://")
    assert imported(store, path).applied == 2
    assert export(store) == [exported(x) for x in good]
    bad = json.dumps([line("L1", 2), line("L2", 3, type="X")], indent=1).encode()
    # The second object's opening brace is on the line before its first field.
    line_of_second = bad[: bad.index(b'"L2"')].count(b"\n")
    with pytest.raises(SnapshotFormatError, match=rf"line {line_of_second}: field type"):
        imported(open_store("memory://"), write(tmp_path / "b.json", bad))


def test_an_empty_file_is_an_empty_snapshot(tmp_path: Path) -> None:
    from user_limits.bootstrap import open_store

    assert imported(open_store("memory://"), write(tmp_path / "s.jsonl", b"\n")) == ImportCounts()


# -- the commands


def test_snapshot_then_import_from_stdin_through_the_commands(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    source, target = f"sqlite:///{tmp_path}/a.db", f"sqlite:///{tmp_path}/b.db"
    stream = tmp_path / "events.jsonl"
    stream.write_text(
        "".join(json.dumps(e) + "\n" for e in [created("L1", 1), progress("L1", 2, "3", "4"), created("L2", 3)])
    )
    assert cli(capsys, monkeypatch, "replay", str(stream), "--store", source).code == 0
    done = cli(capsys, monkeypatch, "snapshot", "--store", source)
    assert done.code == 0
    assert [json.loads(x)["sequenceNumber"] for x in done.out.splitlines()] == [2, 3]
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(done.out.encode())))
    dry = cli(capsys, monkeypatch, "import-snapshot", "-", "--store", target, "--dry-run")
    assert dry.code == 0 and dry.out.startswith(
        "dry run, nothing written: stdin: 2 limits: would apply 2, would skip 0"
    )
    assert cli(capsys, monkeypatch, "export", "--store", target).out.strip() == "[\n]"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(done.out.encode())))
    real = cli(capsys, monkeypatch, "import-snapshot", "-", "--store", target, "--batch-size", "1")
    assert real.code == 0 and real.out.startswith("stdin: 2 limits: applied 2, skipped 0")
    assert (
        cli(capsys, monkeypatch, "export", "--store", target).out
        == cli(capsys, monkeypatch, "export", "--store", source).out
    )


def test_a_malformed_file_is_one_error_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = write(tmp_path / "s.jsonl", [line("L1", 2), line("L2", 3, period="FORTNIGHT")])
    done = cli(capsys, monkeypatch, "import-snapshot", str(path), "--store", f"sqlite:///{tmp_path}/t.db")
    assert done.code == 2
    assert done.err.count("\n") == 1 and "line 2: field period:" in done.err and "Traceback" not in done.err
    assert cli(capsys, monkeypatch, "export", "--store", f"sqlite:///{tmp_path}/t.db").out.strip() == "[\n]"
    missing = cli(capsys, monkeypatch, "import-snapshot", str(tmp_path / "nope"), "--store", "memory://")
    assert missing.code == 2 and "cannot read" in missing.err
