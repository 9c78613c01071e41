"""dead-letters: the records that could not be applied, and dead-letters redrive.

``dead-letters`` is a command with options and a group at once, as ``parked`` is: ``user-limits
dead-letters [--json]`` lists, ``user-limits dead-letters redrive [--reason TEXT] [--id ID]...
[--dry-run] [--json]`` takes them back through today's rules (:mod:`user_limits.operations.redrive`).
``--store`` and ``--json`` may stand before ``redrive`` or after it.
"""

from __future__ import annotations

import sys
from typing import Annotated

import msgspec
import typer

from user_limits.bootstrap import open_store, store_url
from user_limits.cli.app import JsonOption, StoreOption, app, option_once
from user_limits.cli.render import console, dead_letter_json, replay_bar, shown
from user_limits.errors import UserError
from user_limits.operations.archive import is_archive_url
from user_limits.operations.redrive import RedriveCounts, missing_ids, redrive_all, select
from user_limits.stores.base import LimitStore
from user_limits.stream.records import DeadLetter

dead_letters_app = typer.Typer(no_args_is_help=False, pretty_exceptions_enable=False, add_completion=False)
app.add_typer(dead_letters_app, name="dead-letters")

_encode = msgspec.json.Encoder().encode


def _print_json(value: object) -> None:
    sys.stdout.write(msgspec.json.format(_encode(value), indent=2).decode() + "\n")


@dead_letters_app.callback(invoke_without_command=True)
def dead_letters(ctx: typer.Context, store: StoreOption = None, json: JsonOption = False) -> None:
    """Print the records that could not be applied, with their reasons."""
    if ctx.invoked_subcommand is not None:
        return  # --store and --json are read by the subcommand
    target = open_store(store_url(store))
    try:
        letters = target.dead_letters()
    finally:
        target.close()
    if json:
        _print_json([dead_letter_json(letter) for letter in letters])
        return
    out = console()
    for letter in letters:
        if letter.sequence_number:
            where = f"shard {letter.shard_id} seq {letter.sequence_number}"
        elif letter.partition_key and is_archive_url(letter.partition_key):
            where = letter.partition_key  # replayed from an archive: the object and offset
        else:
            where = "no coordinates"
        out.print(f"{shown(where)}: {shown(letter.reason)}")
    out.print(f"{len(letters)} dead letters")


@dead_letters_app.command()
def redrive(
    ctx: typer.Context,
    reason: Annotated[
        str | None,
        typer.Option("--reason", metavar="TEXT", help="Only dead letters whose reason contains TEXT (case sensitive)."),
    ] = None,
    ids: Annotated[
        list[str] | None, typer.Option("--id", metavar="ID", help="Only the dead letter of this id; repeatable.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Decode and report what would happen; change nothing.")
    ] = False,
    store: StoreOption = None,
    json: Annotated[bool, typer.Option("--json", help="Print the counts as JSON.")] = False,
) -> None:
    """Run the selected dead letters through today's rules, in stream order; what decodes leaves the dead letters."""
    before = ctx.parent.params if ctx.parent is not None else {}
    url = option_once("--store", store, before.get("store"))
    as_json = json or bool(before.get("json"))
    if reason is not None and not reason:
        raise UserError("--reason is empty: give the text to look for, or leave it out to redrive every dead letter")
    wanted = ids or []
    if any(not letter_id for letter_id in wanted):
        raise UserError("--id is empty: give a dead letter's id (dead-letters --json lists them)")
    target = open_store(store_url(url))
    try:
        held = target.dead_letters()
        for letter_id in missing_ids(held, wanted):
            # Not an error: a redrive run again finds the letters it took back gone.
            print(f"user-limits: no dead letter with id {shown(letter_id)}", file=sys.stderr)
        chosen = select(held, reason, wanted)
        counts = _redrive(target, chosen, dry_run)
    finally:
        target.close()
    if as_json:
        _print_json({**counts.as_json(), "dryRun": dry_run})
    elif dry_run:
        console().print(f"would have {counts.line()}; nothing changed (dry run)")
    else:
        console().print(counts.line())


def _redrive(store: LimitStore, letters: list[DeadLetter], dry_run: bool) -> RedriveCounts:
    if not (sys.stderr.isatty() and letters):
        return redrive_all(store, letters, dry_run)
    with replay_bar(console(stderr=True)) as bar:
        task = bar.add_task("redriving dead letters", total=len(letters))
        return redrive_all(store, letters, dry_run, advanced=lambda done: bar.advance(task, done))
