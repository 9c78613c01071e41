"""Tables and JSON shapes the CLI prints."""

from __future__ import annotations

import base64
from collections.abc import Iterable
from datetime import UTC, datetime

from rich.console import Console
from rich.table import Table

from user_limits.domain.model import UserLimit, export_dict
from user_limits.stream.records import Counts, DeadLetter


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
    table = Table(title=f"user {user_id}", title_justify="left")
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
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for limit in limits:
        table.add_row(
            limit.type,
            limit.period,
            limit.status,
            f"{limit.value} {limit.currency_code}",
            str(limit.progress),
            str(limit.remaining),
            str(limit.used_percent),
            when(limit.next_reset_time),
        )
    return table


def counts_line(counts: Counts) -> str:
    return (
        f"applied {counts.applied}, skipped {counts.skipped}, ignored {counts.ignored}, "
        f"parked {counts.parked}, dead-lettered {counts.dead_lettered}"
    )


def dead_letter_json(letter: DeadLetter) -> dict[str, object]:
    return {
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
    return Console(stderr=stderr, highlight=False, soft_wrap=True, width=width)
