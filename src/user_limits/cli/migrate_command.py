"""migrate: copy everything a store holds into another store, of any kind."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from user_limits.bootstrap import initialize, open_store, store_module
from user_limits.cli.app import app
from user_limits.cli.render import console, replay_bar, shown
from user_limits.operations.migrate import PHASES, Advanced, MigrateCounts, holds_anything, migrate
from user_limits.stores.base import LimitStore, StoreError


@app.command("migrate")
def migrate_command(
    from_url: Annotated[
        str, typer.Option("--from", metavar="URL", help="The store to copy from; only read.", show_default=False)
    ],
    to_url: Annotated[
        str,
        typer.Option(
            "--to", metavar="URL", help="The store to copy into, initialised as `init` does.", show_default=False
        ),
    ],
    force: Annotated[bool, typer.Option("--force", help="Copy into a store that is not empty.")] = False,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Rows written per batch.")] = 1000,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Read the source and count, look at the target; write nothing.")
    ] = False,
) -> None:
    """Copy limits, parked events, dead letters, counters, checkpoints and asOf into another store."""
    for option, url in (("--from", from_url), ("--to", to_url)):
        if not url.strip():
            raise StoreError(f"{option} {url!r}: empty; give a store URL such as sqlite:///user-limits.db")
        store_module(url)  # an unknown scheme is refused before any store is opened
    if from_url == to_url:
        raise StoreError("--from and --to name the same store")
    source = open_store(from_url, read_only=True)
    try:
        if dry_run:
            target_note = _dry_run_target(to_url, force)
            counts = _with_progress(source, None, batch_size)
        else:
            initialize(to_url)
            target = open_store(to_url)
            try:
                if not force and holds_anything(target):
                    raise StoreError(_NOT_EMPTY)
                counts = _with_progress(source, target, batch_size)
            finally:
                target.close()
    finally:
        source.close()
    console().print(_summary(counts, dry_run))
    if dry_run:
        console().print(target_note)


_NOT_EMPTY = (
    "the --to store is not empty: migrate copies into an empty store "
    "(--force copies into this one: a limit only over an older one, the counters replaced)"
)


def _dry_run_target(url: str, force: bool) -> str:
    """What a dry run says of the target, read without writing; a target that holds something is
    refused as the copy would refuse it."""
    try:
        target = open_store(url, read_only=True)
    except StoreError as error:
        return f"the --to store cannot be read as it is ({error}): the copy initialises it first"
    try:
        if not holds_anything(target):
            return "the --to store is empty"
        if not force:
            raise StoreError(_NOT_EMPTY)
        return "the --to store is not empty: --force copies into it"
    finally:
        target.close()


def _with_progress(source: LimitStore, target: LimitStore | None, batch_size: int) -> MigrateCounts:
    if not sys.stderr.isatty():
        return migrate(source, target, batch_size)
    with replay_bar(console(stderr=True)) as bar:
        verb = "counting" if target is None else "copying"
        tasks = {phase: bar.add_task(f"{verb} {phase}", total=None) for phase in PHASES}

        def advanced(phase: str, done: int, total: int | None) -> None:
            # The number of limits is known only at the end: the count shows how far it got.
            bar.update(tasks[phase], completed=done, total=total, description=f"{verb} {phase}: {done}")

        reporting: Advanced = advanced
        return migrate(source, target, batch_size, reporting)


def _summary(counts: MigrateCounts, dry_run: bool) -> str:
    counters = ", ".join(f"{shown(name)} {value}" for name, value in sorted(counts.counters.items()))
    as_of = "none" if counts.as_of is None else str(counts.as_of)
    line = (
        f"{counts.limits} limits, {counts.parked} parked events, {counts.dead_letters} dead letters, "
        f"{counts.checkpoints} checkpoints; counters: {counters or 'none'}; asOf {as_of}"
    )
    return f"dry run, nothing written: would copy {line}" if dry_run else f"copied {line}"
