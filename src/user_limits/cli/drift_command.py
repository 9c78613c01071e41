"""drift: the limits whose producer's figures last disagreed with the read model (``domain.drift``)."""

from __future__ import annotations

import sys

import msgspec
from rich.table import Table
from rich.text import Text

from user_limits.bootstrap import open_store, store_url
from user_limits.cli.app import JsonOption, StoreOption, app
from user_limits.cli.render import console, shown, when
from user_limits.domain.model import UserLimit


def drift_json(limit: UserLimit) -> dict[str, object]:
    """A limit's last drift: decimals as strings, the event's time in epoch ms (null if unknown)."""
    return {
        "userLimitId": limit.user_limit_id,
        "userId": limit.user_id,
        "type": limit.type,
        "period": limit.period,
        "sequenceNumber": limit.drift_sequence_number,
        "eventType": limit.drift_event_type,
        "figure": limit.drift_figure,
        "ours": None if limit.drift_ours is None else str(limit.drift_ours),
        "producer": None if limit.drift_theirs is None else str(limit.drift_theirs),
        "eventCreatedAt": limit.drift_at,
    }


def _table(limits: list[UserLimit]) -> Table:
    table = Table(title=Text("last drift per limit"), title_justify="left")
    for column, justify in (
        ("userId", "left"),
        ("userLimitId", "left"),
        ("type/period", "left"),
        ("position", "right"),
        ("event", "left"),
        ("figure", "left"),
        ("ours", "right"),
        ("producer's", "right"),
        ("when", "left"),
    ):
        table.add_column(column, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for limit in limits:
        cells = (
            limit.user_id,
            limit.user_limit_id,
            f"{limit.type}/{limit.period}",
            limit.drift_sequence_number,
            limit.drift_event_type,
            limit.drift_figure,
            limit.drift_ours,
            limit.drift_theirs,
            when(limit.drift_at),
        )
        table.add_row(*(Text(shown("-" if cell is None else cell)) for cell in cells))
    return table


@app.command()
def drift(store: StoreOption = None, json: JsonOption = False) -> None:
    """List the limits whose last event's figures disagreed with the read model (their last drift)."""
    target = open_store(store_url(store))
    try:
        limits = target.drifted_limits()
    finally:
        target.close()
    if json:
        out = msgspec.json.format(msgspec.json.encode([drift_json(limit) for limit in limits]), indent=2)
        sys.stdout.write(out.decode() + "\n")
        return
    out_console = console()
    if not sys.stdout.isatty():
        out_console.width = 200  # nine columns: a log or a pipe gets each row on one line
    if limits:
        out_console.print(_table(limits))
    out_console.print(f"{len(limits)} limits drifted")
