"""replay s3://BUCKET/PREFIX: a Kinesis Data Firehose archive through the same batch path as a file.

Every archive named is checked (its URL, the options, that it can be listed and holds an object)
before the store is opened. boto3 is imported only when an archive is named.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from user_limits.cli.render import console, counts_line, shown
from user_limits.errors import UserError
from user_limits.operations.archive import Archive, is_archive_url, parse_archive_url, parse_hour, s3_client
from user_limits.replay import replay
from user_limits.stores.base import LimitStore

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

EndpointOption = Annotated[
    str | None,
    typer.Option(
        "--endpoint",
        metavar="URL",
        help="s3:// only: the S3 endpoint, e.g. http://127.0.0.1:5000 (default: AWS, or env AWS_ENDPOINT_URL).",
    ),
]
RegionOption = Annotated[
    str | None,
    typer.Option("--region", help="s3:// only: the AWS region (default: env AWS_DEFAULT_REGION, else us-east-1)."),
]
SinceOption = Annotated[
    str | None,
    typer.Option(
        "--since",
        metavar="DATE",
        help="s3:// only: objects from this UTC date or hour on, by their key (2026-11-30 or 2026-11-30T12).",
    ),
]
UntilOption = Annotated[
    str | None,
    typer.Option(
        "--until",
        metavar="DATE",
        help="s3:// only: objects up to this UTC date or hour, included (a date: its whole day).",
    ),
]


def open_archives(
    sources: list[str], endpoint: str | None, region: str | None, since: str | None, until: str | None
) -> list[Archive | None]:
    """For each source, its Archive (checked), or None for a file."""
    if not any(is_archive_url(source) for source in sources):
        for option, value in (("--endpoint", endpoint), ("--region", region), ("--since", since), ("--until", until)):
            if value is not None:
                raise UserError(f"{option} applies to s3:// archives only")
        return [None] * len(sources)
    urls = [parse_archive_url(source) if is_archive_url(source) else None for source in sources]
    first = None if since is None else parse_hour(since, "--since", last=False)
    last = None if until is None else parse_hour(until, "--until", last=True)
    if first is not None and last is not None and first > last:
        raise UserError(f"--since {since!r} is after --until {until!r}")
    client = s3_client(endpoint, region)
    archives = [None if url is None else Archive(url, client, first, last) for url in urls]
    for archive in archives:
        if archive is not None:
            archive.check()
    return archives


def archive_progress_bar(stderr_console: Console) -> Progress:
    """A transient bar of bytes read, with the objects read; the archive's name is plain text."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("{task.description}", markup=False, style="progress.description"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[objects]}", markup=False),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=stderr_console,
        transient=True,
    )


def replay_archive(store: LimitStore, archive: Archive, batch_size: int, bar_console: Console | None = None) -> None:
    """Apply the archive's records in batches as they are read, and print the counts; a progress
    bar of objects and bytes on ``bar_console``, or on stderr when it is a terminal."""
    if bar_console is None and sys.stderr.isatty():
        bar_console = console(stderr=True)
    name = str(archive.url)
    say = console(stderr=True).print
    warnings = 0
    done = 0

    def warn(message: str) -> None:
        nonlocal warnings
        warnings += 1
        say(f"user-limits: warning: {shown(message)}")

    def advanced(records: int) -> None:
        nonlocal done
        done += records

    archive.warn = warn
    if bar_console is None:
        counts = replay(store, archive.records(), batch_size, name, advanced)
    else:
        # A first listing for the totals: only the sums are kept, never the keys.
        objects = size = 0
        for item in archive.objects():
            objects += 1
            size += item.size
        with archive_progress_bar(bar_console) as bar:
            say = bar.console.print  # above the bar
            task = bar.add_task(f"replaying {shown(name)}", total=size, objects=f"0/{objects} objects")

            def advanced_bar(records: int) -> None:
                advanced(records)
                # Objects written since the first listing may be read too.
                read = archive.objects_read
                bar.update(
                    task,
                    completed=archive.bytes_read,
                    total=max(size, archive.bytes_read),
                    objects=f"{read}/{max(objects, read)} objects",
                )

            counts = replay(store, archive.records(), batch_size, name, advanced_bar)
            advanced_bar(0)
    line = f"{shown(name)}: {_many(archive.objects_read, 'object')}, {_many(archive.bytes_read, 'byte')}, "
    line += f"{done} records: {counts_line(counts)}"
    if warnings:
        line += f"; {_many(warnings, 'warning')} (above)"
    console().print(line)


def _many(count: int, thing: str) -> str:
    return f"{count} {thing}{'' if count == 1 else 's'}"
