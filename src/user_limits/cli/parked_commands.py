"""parked: the parked events per limit (or whole, with --json), and parked expire.

``parked`` is a command with options and a group at once: ``user-limits parked [--json]
[--summary] [--older-than D]`` lists, ``user-limits parked expire --older-than D`` moves. ``--store``
and ``--older-than`` may stand before ``expire`` or after it.
"""

from __future__ import annotations

import sys
import time
from typing import Annotated

import msgspec
import typer
from rich.table import Table
from rich.text import Text

from user_limits.bootstrap import open_store, store_url
from user_limits.cli.app import JsonOption, StoreOption, app, option_once
from user_limits.cli.render import console, shown, when
from user_limits.errors import UserError
from user_limits.operations.parked_review import (
    EXPIRED_REASON,
    LimitSummary,
    expire_batches,
    expire_outcome,
    older_than,
    parse_duration,
    summarize,
)
from user_limits.stores.base import LimitStore
from user_limits.stream.records import CommitError, ParkedEvent

# Parked events moved per commit: a bounded transaction (and lock count) however many there are.
EXPIRE_BATCH = 1000

parked_app = typer.Typer(no_args_is_help=False, pretty_exceptions_enable=False, add_completion=False)
app.add_typer(parked_app, name="parked")

OlderThanOption = Annotated[
    str | None,
    typer.Option("--older-than", metavar="DURATION", help="Only events created longer ago: 30d, 12h, 90m, 45s."),
]
SummaryOption = Annotated[
    bool, typer.Option("--summary", help="With --json: the per-limit summary instead of the envelopes.")
]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def age_text(age_ms: int | None) -> str:
    """``40d 3h``, ``5h 12m``, ``90s``: the two largest units; ``-`` when unknown."""
    if age_ms is None:
        return "-"
    sign, rest = ("-" if age_ms < 0 else ""), abs(age_ms) // 1000
    parts: list[str] = []
    for unit, seconds in (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)):
        if rest >= seconds or (unit == "s" and not parts):
            parts.append(f"{rest // seconds}{unit}")
            rest %= seconds
        if len(parts) == 2:
            break
    return sign + " ".join(parts)


def _summary_table(summaries: list[LimitSummary]) -> Table:
    table = Table(title=Text("parked events per limit"), title_justify="left")
    for column, justify in (
        ("userLimitId", "left"),
        ("count", "right"),
        ("oldest position", "right"),
        ("newest position", "right"),
        ("oldest created", "left"),
        ("age", "right"),
    ):
        table.add_column(column, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for summary in summaries:
        age = age_text(summary.oldest_age_ms)
        if summary.undated:
            age += f" ({summary.undated} undated)"
        cells = (
            summary.user_limit_id,
            str(summary.count),
            str(summary.oldest_position),
            str(summary.newest_position),
            when(summary.oldest_created_at),
            age,
        )
        table.add_row(*(Text(shown(cell)) for cell in cells))
    return table


@parked_app.callback(invoke_without_command=True)
def parked(
    ctx: typer.Context,
    store: StoreOption = None,
    json: JsonOption = False,
    summary: SummaryOption = False,
    older: OlderThanOption = None,
) -> None:
    """List the events waiting for their limit's creation: per limit, or whole with --json."""
    if ctx.invoked_subcommand is not None:
        if json or summary:
            raise UserError(
                f"--json and --summary list parked events; they are not options of {ctx.invoked_subcommand}"
            )
        return  # --store and --older-than are read by the subcommand
    cutoff = None if older is None else parse_duration(older)
    target = open_store(store_url(store))
    try:
        events = target.parked_events()
    finally:
        target.close()
    now = now_ms()
    if cutoff is not None:
        events = older_than(events, now - cutoff)
    if json and not summary:
        # The envelopes whole, as stored: exactly the bytes each was parked with.
        sys.stdout.write("[" + ",".join(event.data.decode() for event in events) + "]\n")
        return
    summaries = summarize(events, now)
    if json:
        out = msgspec.json.format(msgspec.json.encode([s.as_json() for s in summaries]), indent=2)
        sys.stdout.write(out.decode() + "\n")
        return
    out_console = console()
    if summaries:
        out_console.print(_summary_table(summaries))
    scope = "" if older is None else f" older than {older}"
    out_console.print(f"{len(events)} parked{scope}, {len(summaries)} limits")


@parked_app.command()
def expire(
    ctx: typer.Context,
    older: OlderThanOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would move; change nothing.")] = False,
    store: StoreOption = None,
) -> None:
    """Move the events parked longer than --older-than to dead letters ("parked too long")."""
    before = ctx.parent.params if ctx.parent is not None else {}
    duration = option_once("--older-than", older, before.get("older"))
    url = option_once("--store", store, before.get("store"))
    if duration is None:
        raise UserError("parked expire needs --older-than DURATION (30d, 12h, 90m, 45s)")
    cutoff_ms = now_ms() - parse_duration(duration)
    target = open_store(store_url(url))
    try:
        old = older_than(target.parked_events(), cutoff_ms)
        limits = len({event.key for event in old})
        if dry_run:
            console().print(
                f"would move {len(old)} parked events of {limits} limits to dead letters ({EXPIRED_REASON}); "
                "nothing changed (dry run)"
            )
            return
        moved, touched = _expire(target, old, cutoff_ms)
        staying = target.stats().waiting
    finally:
        target.close()
    console().print(
        f"moved {moved} parked events of {touched} limits to dead letters ({EXPIRED_REASON}); {staying} parked stay"
    )


def _expire(store: LimitStore, old: list[ParkedEvent], cutoff_ms: int) -> tuple[int, int]:
    """Commit the moves, a batch of limits at a time; the events moved and their limits."""
    moved = limits = 0
    for keys in expire_batches(old, EXPIRE_BATCH):
        try:
            # The store reads the limits' parked events again inside its commit: what moves is
            # decided there, so an event drained or parked meanwhile is left where it is.
            outcome = store.apply_batch(keys, lambda snapshot: expire_outcome(snapshot, cutoff_ms))
        except CommitError as error:
            raise UserError(
                f"the store failed: {type(error.cause).__name__}: {error.cause} ({moved} parked events moved "
                "before it; running it again is safe: what moved is gone from the parked events)"
            ) from None
        moved += len(outcome.parked_removed)
        limits += len({event.key for _, event in outcome.parked_removed})
    return moved, limits
