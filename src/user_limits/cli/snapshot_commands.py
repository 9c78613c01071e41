"""snapshot, import-snapshot: a store's limits as JSON Lines, and their import into a store."""

from __future__ import annotations

import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Annotated

import typer

from user_limits.bootstrap import open_store, store_url
from user_limits.cli.app import StoreOption, app
from user_limits.cli.render import console, replay_bar, shown
from user_limits.inputs import InputError
from user_limits.operations.snapshots.format import SnapshotFile
from user_limits.operations.snapshots.importer import ImportCounts, import_snapshot, write_snapshot
from user_limits.stores.base import LimitStore

PROGRESS_BYTES = 4 * 1024 * 1024


@app.command()
def snapshot(store: StoreOption = None) -> None:
    """Write every limit to stdout as JSON Lines: the export fields and sequenceNumber."""
    target = open_store(store_url(store))
    try:
        out = sys.stdout.buffer
        write_snapshot(target, out)
        out.flush()
    finally:
        target.close()


@app.command("import-snapshot")
def import_snapshot_command(
    file: Annotated[str, typer.Argument(metavar="FILE|-", help="JSON Lines or a JSON array of snapshot lines")],
    store: StoreOption = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Limits per batch.")] = 1000,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Check and count; write nothing.")] = False,
) -> None:
    """Apply a snapshot: each limit where the store has none or an older one; then its parked events drain."""
    with _opened(file) as source:
        target = open_store(store_url(store))
        try:
            counts = _import_with_progress(target, source, batch_size, dry_run)
        finally:
            target.close()
    console().print(_summary(source.name, counts, dry_run))


@contextmanager
def _opened(file: str) -> Iterator[SnapshotFile]:
    """The snapshot file. It is read twice: ``-`` (stdin), or a pipe, is first kept in a temporary file."""
    if file == "-":
        with _spooled(sys.stdin.buffer, "stdin") as spooled:
            yield spooled
        return
    try:
        stream = open(file, "rb")  # noqa: SIM115 - closed below, or by the spool
    except IsADirectoryError:
        raise InputError(f"{file}: is a folder, not a file") from None
    except OSError as error:
        raise InputError(f"{file}: cannot read: {error.strerror or error}") from None
    with stream:
        info = os.fstat(stream.fileno())
        if not stat.S_ISREG(info.st_mode):
            with _spooled(stream, file) as spooled:
                yield spooled
            return
    yield SnapshotFile(lambda: open(file, "rb"), file, info.st_size)  # noqa: SIM115 - the reader closes it


@contextmanager
def _spooled(stream: IO[bytes], name: str) -> Iterator[SnapshotFile]:
    with tempfile.TemporaryFile() as spool:
        shutil.copyfileobj(stream, spool)
        spool.flush()
        size = spool.tell()

        def reopen() -> IO[bytes]:
            copy = os.fdopen(os.dup(spool.fileno()), "rb")  # shares the offset: one reading at a time
            copy.seek(0)
            return copy

        yield SnapshotFile(reopen, name, size)


def _import_with_progress(target: LimitStore, source: SnapshotFile, batch_size: int, dry_run: bool) -> ImportCounts:
    # A bar for a file big enough to wait for, by bytes read, once to check it and once to apply it.
    if not (sys.stderr.isatty() and source.size is not None and source.size > PROGRESS_BYTES):
        return import_snapshot(target, source, batch_size, dry_run)
    with replay_bar(console(stderr=True)) as bar:
        tasks = {
            phase: bar.add_task(f"{phase} {shown(source.name)}", total=source.size)
            for phase in ("checking", "importing")
        }

        def advanced(phase: str, consumed: int) -> None:
            if phase == "importing":
                bar.update(tasks["checking"], completed=source.size)
            bar.update(tasks[phase], completed=consumed)

        return import_snapshot(target, source, batch_size, dry_run, advanced)


def _summary(name: str, counts: ImportCounts, dry_run: bool) -> str:
    verb = ("would apply", "would skip") if dry_run else ("applied", "skipped")
    line = (
        f"{shown(name)}: {counts.limits} limits: {verb[0]} {counts.applied}, {verb[1]} {counts.skipped} "
        f"(the store's is as new or newer); parked events drained: {verb[0]} {counts.drained}, "
        f"{verb[1]} {counts.drained_skipped} (at or below the limit's position), "
        f"dead-lettered {counts.drained_dead_lettered}, ignored {counts.drained_ignored}"
    )
    return f"dry run, nothing written: {line}" if dry_run else line
