"""recover: the batches Lambda gave up on, from its on-failure destination (an SQS queue or S3 bucket).

boto3 is imported when the command runs, never when the CLI starts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from user_limits.bootstrap import open_store, store_url
from user_limits.cli.app import StoreOption, app
from user_limits.cli.render import console, counts_line, shown
from user_limits.errors import UserError

if TYPE_CHECKING:
    from user_limits.operations.recover import Report, Tally


@app.command()
def recover(
    queue: Annotated[
        str | None, typer.Option("--queue", metavar="URL", help="The SQS queue of the on-failure destination.")
    ] = None,
    bucket: Annotated[
        str | None,
        typer.Option("--bucket", metavar="s3://BUCKET/PREFIX", help="Or: the S3 bucket of the on-failure destination."),
    ] = None,
    endpoint: Annotated[
        str | None,
        typer.Option("--endpoint", metavar="URL", help="SQS or S3 endpoint, e.g. a local one (default: AWS)."),
    ] = None,
    kinesis_endpoint: Annotated[
        str | None,
        typer.Option(
            "--kinesis-endpoint", metavar="URL", help="Kinesis endpoint, e.g. http://127.0.0.1:4568 (default: AWS)."
        ),
    ] = None,
    region: Annotated[
        str | None,
        typer.Option(
            "--region",
            help="Region of the queue or bucket (default: the queue URL's, else AWS_DEFAULT_REGION, else "
            "us-east-1). The stream's is read from its ARN.",
        ),
    ] = None,
    store: StoreOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be recovered; apply, delete and move nothing.")
    ] = False,
) -> None:
    """Recover the batches a Kinesis event source mapping sent to its on-failure destination.

    From --queue, each message's records are read back from the stream; from --bucket, each object holds
    them. Once committed, the message is deleted or the object moved under recovered/. Exit 1 if any is kept.
    """
    from user_limits.aws import check_region
    from user_limits.operations import recover as recovering

    # Every argument is checked before anything is opened, received or read.
    if (queue is None) == (bucket is None):
        raise UserError("give --queue URL (an SQS on-failure destination) or --bucket s3://BUCKET/PREFIX, not both")
    recovering.check_url("--endpoint", endpoint, "http://127.0.0.1:5000")
    recovering.check_url("--kinesis-endpoint", kinesis_endpoint, "http://127.0.0.1:4568")
    check_region(region)
    if bucket is not None and kinesis_endpoint is not None:
        raise UserError("--kinesis-endpoint is for --queue: an S3 object holds its records, the stream is not read")
    if queue is not None:
        recovering.check_queue_url(queue)
    where = None if bucket is None else recovering.parse_bucket(bucket)
    url = store_url(store)  # an empty --store is refused even in a dry run

    out = console()

    def report(line: Report) -> None:
        out.print(_line(line))

    target = None if dry_run else open_store(url)
    try:
        recovery = recovering.Recovery(target, report, kinesis_endpoint)
        if where is not None:
            s3 = recovering.s3_client(endpoint, region)
            recovering.recover_bucket(recovery, s3, *where)
        else:
            assert queue is not None
            sqs = recovering.sqs_client(endpoint, region or recovering.queue_region(queue))
            recovering.recover_queue(recovery, sqs, queue)
    finally:
        if target is not None:
            target.close()
    out.print(_summary(recovery.tally, dry_run))
    if recovery.tally.kept:
        raise typer.Exit(1)


def _line(report: Report) -> str:
    parts = [report.name]
    if report.info is not None:
        info = report.info
        condition = f", {info.condition}" if info.condition else ""
        parts.append(f"{info.range} (batch of {info.batch_size}{condition})")
    applied = f"{report.records} records applied ({counts_line(report.counts)})"
    if report.outcome == "recovered":
        parts.append(f"recovered, {applied}" + (f"; {report.detail}" if report.detail else ""))
    elif report.outcome == "would-recover":
        parts.append(report.detail)
    else:
        kind = "kept, aged out of the stream's retention" if report.outcome == "aged-out" else "kept"
        parts.append(f"{kind}: {report.detail}" + (f" ({applied})" if report.records else ""))
    return shown(": ".join(parts))


def _summary(tally: Tally, dry_run: bool) -> str:
    if dry_run:
        would = tally.messages - tally.kept
        return (
            f"recover --dry-run: {tally.messages} found: {would} to recover, {tally.kept} kept; "
            "nothing applied, deleted or moved"
        )
    aged = f" ({tally.aged_out} aged out)" if tally.aged_out else ""
    return (
        f"recover: {tally.messages} found: recovered {tally.recovered}, kept {tally.kept}{aged}; "
        f"{tally.records} records: {counts_line(tally.counts)}"
    )
