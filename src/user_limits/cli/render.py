"""Tables and JSON shapes the CLI prints.

Everything printed here may hold stored text (ids, currencies, dead-letter reasons) or text the
user typed (paths, store URLs): rich never reads it as markup (``[/x]`` would crash the command,
``[link=…]`` would render) nor as emoji codes, and :func:`shown` writes the characters that are
not printable as escapes (rich passes ESC through: a stored value could colour or rewrite the
terminal, or reorder what follows with a bidi control).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table
from rich.text import Text

from user_limits.domain.model import UserLimit, export_dict
from user_limits.stores.base import Totals
from user_limits.stream.records import Counts, DeadLetter

if TYPE_CHECKING:
    from rich.progress import Progress


def shown(text: object) -> str:
    """``text`` as it is, except that characters that are not printable (control and format
    characters, line breaks, spaces other than " ") are written as ``\\x1b``-style escapes."""
    value = str(text)
    if value.isprintable():
        return value
    return "".join(char if char.isprintable() else ascii(char)[1:-1] for char in value)


def when(epoch_ms: int | None) -> str:
    if epoch_ms is None:
        return "-"
    try:
        return datetime.fromtimestamp(epoch_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")
    except (ValueError, OverflowError, OSError):
        return f"{epoch_ms} ms"  # a valid 64-bit epoch beyond what a datetime holds (year 9999)


def limit_json(limit: UserLimit) -> dict[str, object]:
    return {**export_dict(limit), "remaining": str(limit.remaining), "usedPercent": str(limit.used_percent)}


def limits_table(user_id: str, limits: Iterable[UserLimit]) -> Table:
    table = Table(title=Text(f"user {shown(user_id)}"), title_justify="left")
    for column, justify in (
        ("type", "left"),
        ("period", "left"),
        ("status", "left"),
        ("value", "right"),
        ("progress", "right"),
        ("remaining", "right"),
        ("used %", "right"),
        ("next reset", "left"),
    ):
        # Folded, never cut short with an ellipsis: every character of a stored value is shown.
        table.add_column(column, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for limit in limits:
        # Text cells: plain text whatever console renders the table.
        table.add_row(
            *(
                Text(shown(cell))
                for cell in (
                    limit.type,
                    limit.period,
                    limit.status,
                    f"{limit.value} {limit.currency_code}",
                    str(limit.progress),
                    str(limit.remaining),
                    str(limit.used_percent),
                    when(limit.next_reset_time),
                )
            )
        )
    return table


def counts_line(counts: Counts) -> str:
    """What a run or a batch did."""
    return (
        f"applied {counts.applied}, skipped {counts.skipped}, ignored {counts.ignored}, "
        f"parked {counts.parked}, dead-lettered {counts.dead_lettered}, drifted {counts.drifted}"
    )


def totals_line(totals: Totals) -> str:
    """What a store has counted, and what it holds now (parked events waiting, dead letters)."""
    return (
        f"applied {totals.applied}, skipped {totals.skipped}, ignored {totals.ignored}, "
        f"parked {totals.waiting}, dead-lettered {totals.dead_letters}, drifted {totals.drifted}"
    )


def dead_letter_json(letter: DeadLetter) -> dict[str, object]:
    return {
        "id": letter.id,  # what `dead-letters redrive --id` takes
        "reason": letter.reason,
        "data": base64.b64encode(letter.data).decode("ascii"),
        "streamArn": letter.stream_arn,
        "shardId": letter.shard_id,
        "partitionKey": letter.partition_key,
        "sequenceNumber": letter.sequence_number,
        "subSequenceNumber": letter.sub_sequence_number,
        "arrivalTime": letter.arrival_ms,
    }


def console(stderr: bool = False) -> Console:
    import sys

    stream = sys.stderr if stderr else sys.stdout
    # Off a terminal rich assumes 80 columns, which folds the limits table: allow a wide line.
    width = None if stream.isatty() else 120
    # markup and emoji off: a string printed is shown as it is, never parsed.
    return Console(stderr=stderr, markup=False, emoji=False, highlight=False, soft_wrap=True, width=width)


def replay_bar(stderr_console: Console) -> Progress:
    """A transient bar of how much of a file is replayed; its description (a file name) is plain text, not markup."""
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("{task.description}", markup=False, style="progress.description"),
        BarColumn(),
        TaskProgressColumn(),
        TimeRemainingColumn(),
        console=stderr_console,
        transient=True,
    )
