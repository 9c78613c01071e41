"""leases: every lease of a consumer fleet in the store, with its shard's checkpoint.

``stats --json`` carries the same list under ``leases``. A store that cannot hold a fleet
(memory) has none.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from rich.table import Table
from rich.text import Text

from user_limits.bootstrap import open_store, store_url
from user_limits.cli.app import JsonOption, StoreOption, app
from user_limits.cli.render import console, shown
from user_limits.kinesis.leases import LeaseTable
from user_limits.kinesis.shards import is_finished
from user_limits.stores.base import LimitStore


def lease_list(store: LimitStore) -> list[dict[str, object]]:
    """Each lease as JSON: stream, shard, holder (null when free), counter, expiresAt (epoch ms,
    null when free), checkpoint (null when none) and whether the shard is finished."""
    if not isinstance(store, LeaseTable):
        return []
    listed: list[dict[str, object]] = []
    for lease in store.leases():
        checkpoint = store.checkpoint(lease.stream, lease.shard_id)
        listed.append(
            {
                "stream": lease.stream,
                "shard": lease.shard_id,
                "holder": lease.holder,
                "counter": lease.counter,
                "expiresAt": lease.expires_ms if lease.holder is not None else None,
                "checkpoint": None
                if checkpoint is None
                else {
                    "sequenceNumber": checkpoint.sequence_number,
                    "subSequenceNumber": checkpoint.sub_sequence_number,
                },
                "finished": is_finished(checkpoint),
            }
        )
    return listed


def _expiry(expires_ms: int, now_ms: int) -> str:
    """To the second (leases last seconds), and how far off."""
    try:
        text = datetime.fromtimestamp(expires_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (ValueError, OverflowError, OSError):
        text = f"{expires_ms} ms"
    if expires_ms <= now_ms:
        return f"{text} (expired)"
    return f"{text} (in {(expires_ms - now_ms) // 1000}s)"


@app.command()
def leases(store: StoreOption = None, json: JsonOption = False) -> None:
    """List the consumer fleet's leases: shard, holder, expiry, checkpoint."""
    target = open_store(store_url(store))
    try:
        listed = lease_list(target)
    finally:
        target.close()
    if json:
        from user_limits.cli.projection_commands import _print_json

        _print_json(listed)
        return
    out = console()
    now_ms = time.time_ns() // 1_000_000
    table = Table(title=Text("leases"), title_justify="left")
    for column in ("stream", "shard", "holder", "expires", "checkpoint"):
        table.add_column(column)
    holders: set[str] = set()
    for lease in listed:
        holder, expires = lease["holder"], lease["expiresAt"]
        if isinstance(holder, str) and isinstance(expires, int) and expires > now_ms:
            holders.add(holder)
        checkpoint = lease["checkpoint"]
        position = "-"
        if lease["finished"]:
            position = "finished"
        elif isinstance(checkpoint, dict):
            position = str(checkpoint["sequenceNumber"])
        expiry = "-" if not isinstance(expires, int) else _expiry(expires, now_ms)
        table.add_row(
            Text(shown(lease["stream"])), Text(shown(lease["shard"])),
            Text("-" if holder is None else shown(holder)), Text(expiry), Text(position),
        )  # fmt: skip
    if listed:
        out.print(table)
    out.print(f"{len(listed)} leases, {len(holders)} live consumers")
