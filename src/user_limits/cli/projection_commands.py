"""demo, replay, export, show, stats (parked and dead-letters: see their own modules)."""

from __future__ import annotations

import sys
from importlib.resources import files
from typing import Annotated

import msgspec
import typer

from user_limits.bootstrap import open_store, store_url
from user_limits.cli import archive_replay
from user_limits.cli.app import JsonOption, StoreOption, app
from user_limits.cli.lease_commands import lease_list
from user_limits.cli.parked_commands import age_text, now_ms
from user_limits.cli.render import (
    console,
    counts_line,
    limit_json,
    limits_table,
    replay_bar,
    shown,
    totals_line,
)
from user_limits.domain.model import export_dict
from user_limits.errors import UserError
from user_limits.inputs import Source, check_readable, open_input, parse_records
from user_limits.operations.parked_review import oldest_age_ms
from user_limits.replay import replay
from user_limits.stores.base import LimitStore

_encode = msgspec.json.Encoder().encode
BAR_MIN_BYTES = 4 * 1024 * 1024


def _print_json(value: object) -> None:
    sys.stdout.write(msgspec.json.format(_encode(value), indent=2).decode() + "\n")


def _replay_file(store: LimitStore, source: Source, batch_size: int) -> None:
    name = source.name
    done = 0

    def advanced(records: int) -> None:
        nonlocal done
        done += records

    # A bar for a file big enough to wait for, by bytes read: the number of records is known only at the end.
    if sys.stderr.isatty() and source.size is not None and source.size > BAR_MIN_BYTES:
        with replay_bar(console(stderr=True)) as bar:
            task = bar.add_task(f"replaying {shown(name)}", total=source.size)

            def advanced_bar(records: int) -> None:
                advanced(records)
                bar.update(task, completed=source.consumed)

            counts = replay(store, source.records(), batch_size, name, advanced_bar)
    else:
        counts = replay(store, source.records(), batch_size, name, advanced)
    console().print(f"{shown(name)}: {done} records: {counts_line(counts)}")


@app.command()
def demo(store: StoreOption = None) -> None:
    """Process the bundled sample stream and print each user's limits."""
    url = store_url(store)
    target = open_store(url)
    data = files("user_limits.data").joinpath("sample_events.json").read_bytes()
    records = parse_records(data, "bundled sample")
    counts = replay(target, records)
    out = console()
    out.print(f"Replayed the bundled sample ({len(records)} events) into {shown(url)}")
    out.print(f"this run: {counts_line(counts)}")
    users = sorted({limit.user_id for limit in target.all_limits()})
    for user_id in users:
        out.print(limits_table(user_id, sorted(target.user_limits(user_id), key=lambda x: (x.type, x.period))))
    out.print(f"store totals: {totals_line(target.stats())}")
    target.close()


@app.command("replay")
def replay_command(
    sources: Annotated[
        list[str],
        typer.Argument(
            metavar="SOURCE...",
            help="A file (JSON array, JSON Lines or Lambda event) or s3://BUCKET/PREFIX (a Firehose archive)",
        ),
    ],
    store: StoreOption = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Records per batch.")] = 1000,
    endpoint: archive_replay.EndpointOption = None,
    region: archive_replay.RegionOption = None,
    since: archive_replay.SinceOption = None,
    until: archive_replay.UntilOption = None,
) -> None:
    """Apply the events of SOURCEs (files, archives) to the store, in batches as they are read; print the counts."""
    # Every file is opened and every archive listed first: a missing or unreadable one stops the
    # run before anything is applied. Each is then read as it is applied, in bounded memory.
    archives = archive_replay.open_archives(sources, endpoint, region, since, until)
    for source, archive in zip(sources, archives, strict=True):
        if archive is None:
            check_readable(source)
    target = open_store(store_url(store))
    try:
        for source, archive in zip(sources, archives, strict=True):
            if archive is not None:
                archive_replay.replay_archive(target, archive, batch_size)
                continue
            with open_input(source) as opened:
                _replay_file(target, opened, batch_size)
    finally:
        target.close()


@app.command()
def export(store: StoreOption = None) -> None:
    """Print every limit as one JSON array sorted by userLimitId."""
    target = open_store(store_url(store))
    out = sys.stdout
    out.write("[")
    for n, limit in enumerate(target.all_limits()):
        out.write(",\n" if n else "\n")
        out.write(_encode(export_dict(limit)).decode())
    out.write("\n]\n")
    target.close()


@app.command()
def show(
    user_id: Annotated[str, typer.Argument(metavar="USER_ID")], store: StoreOption = None, json: JsonOption = False
) -> None:
    """Print one user's limits."""
    target = open_store(store_url(store))
    limits = sorted(target.user_limits(user_id), key=lambda x: (x.type, x.period, x.user_limit_id))
    target.close()
    if json:
        _print_json([limit_json(limit) for limit in limits])
    elif not limits:
        raise UserError(f"no limits for user {user_id!r}")
    else:
        console().print(limits_table(user_id, limits))


@app.command()
def stats(store: StoreOption = None, json: JsonOption = False) -> None:
    """Print the counters: applied, skipped, ignored, parked (waiting now), deadLettered, drifted.

    --json adds the age of the oldest parked event and the leases."""
    target = open_store(store_url(store))
    try:
        totals = target.stats()
        # A full read of the parked events, for their createdAt: no store keeps the oldest yet.
        # Cheap while few events wait; a store may keep it one day if many do.
        oldest = oldest_age_ms(target.parked_events(), now_ms()) if totals.waiting else None
        leases = lease_list(target) if json else []
    finally:
        target.close()
    if json:
        _print_json({**totals.as_json(), "parkedOldestAgeMs": oldest, "leases": leases})
        return
    out = console()
    out.print(totals_line(totals))
    if oldest is not None:
        out.print(f"oldest parked event: {age_text(oldest)} old")
