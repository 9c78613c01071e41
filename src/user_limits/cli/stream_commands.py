"""consume and produce: the standalone Kinesis consumer and producer.

boto3 is imported when one of these commands runs, never when the CLI starts.
"""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from user_limits.bootstrap import open_store, processor, store_url
from user_limits.cli.app import StoreOption, app
from user_limits.errors import UserError
from user_limits.kinesis.fleet import LeaseOptions
from user_limits.kinesis.shards import Assignment

if TYPE_CHECKING:
    from user_limits.observability.metrics import ConsumerMetrics

StreamOption = Annotated[str, typer.Option("--stream", metavar="NAME", help="The Kinesis stream.")]
EndpointOption = Annotated[
    str | None,
    typer.Option(
        "--endpoint",
        metavar="URL",
        help="Kinesis endpoint, e.g. http://127.0.0.1:4568 for kinesis-local (default: AWS, or env AWS_ENDPOINT_URL).",
    ),
]
RegionOption = Annotated[
    str | None, typer.Option("--region", help="AWS region (default: env AWS_DEFAULT_REGION, else us-east-1).")
]


@app.command()
def consume(
    stream: StreamOption,
    store: StoreOption = None,
    endpoint: EndpointOption = None,
    region: RegionOption = None,
    start: Annotated[
        str, typer.Option("--from", metavar="trim-horizon|latest", help="Where a shard without checkpoint starts.")
    ] = "trim-horizon",
    batch_size: Annotated[int, typer.Option("--batch-size", help="Records per GetRecords (1-10000).")] = 1000,
    poll_interval: Annotated[
        float, typer.Option("--poll-interval", min=0, help="Seconds between reads of a caught-up shard.")
    ] = 1.0,
    stop_when_idle: Annotated[
        float | None,
        typer.Option(
            "--stop-when-idle", metavar="SECONDS", min=0, help="Exit once every shard is caught up that long."
        ),
    ] = None,
    worker: Annotated[
        int | None, typer.Option("--worker", min=0, help="This consumer's index among --workers (default 0).")
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option("--workers", min=1, help="Consumers sharing the stream (shard number mod N; default 1)."),
    ] = None,
    lease: Annotated[
        bool,
        typer.Option("--lease", help="Share the shards with the other --lease consumers of this stream and store."),
    ] = False,
    consumer_id: Annotated[
        str | None,
        typer.Option("--consumer-id", metavar="ID", help="This consumer's name in the leases (default host:pid)."),
    ] = None,
    lease_seconds: Annotated[
        float | None,
        typer.Option(
            "--lease-seconds", metavar="N", help="How long a lease lasts unrenewed (default 30); renewed every third."
        ),
    ] = None,
    shard_refresh: Annotated[
        float, typer.Option("--shard-refresh", min=0.1, help="Seconds between shard listings (resharding).")
    ] = 10.0,
    log_interval: Annotated[
        float, typer.Option("--log-interval", min=0.1, help="Seconds between progress lines.")
    ] = 10.0,
    metrics_port: Annotated[
        int | None,
        typer.Option("--metrics-port", min=0, max=65535, help="Serve Prometheus /metrics on this port."),
    ] = None,
    metrics_host: Annotated[str, typer.Option("--metrics-host", help="Interface of /metrics.")] = "127.0.0.1",
) -> None:
    """Read every shard of a Kinesis stream into the store, checkpointing with each batch.

    SIGINT or SIGTERM stop it after the batch in hand (and release its leases).
    """
    from user_limits.aws import check_endpoint, check_region
    from user_limits.kinesis.client import kinesis_client
    from user_limits.kinesis.consumer import Consumer, ConsumerOptions

    check_endpoint(endpoint)  # before the store is opened (or created)
    check_region(region)
    # The flags in the consumer's terms, each refused in the flag's own terms.
    initial_position = _initial_position(start)
    assignment = _assignment(worker, workers, lease)
    lease_options = _lease_options(lease, consumer_id, lease_seconds)
    options = ConsumerOptions(
        stream,
        initial_position=initial_position,
        max_records=_max_records(batch_size),
        idle_time_between_reads=poll_interval,
        stop_after_idle=stop_when_idle,
        assignment=assignment,
        shard_sync_interval=shard_refresh,
        report_interval=log_interval,
        lease=lease_options,
    )
    metrics = _consumer_metrics(metrics_port, metrics_host)
    target = open_store(store_url(store))
    try:
        batches = processor(target)
        if metrics is not None:
            from user_limits.observability.metrics import MeteredProcessor

            batches = MeteredProcessor(batches, metrics)
        leases = None
        if lease_options is not None:
            from user_limits.kinesis.leases import LeaseTable

            if not isinstance(target, LeaseTable):
                raise UserError(
                    f"--lease: the store {target.url} cannot hold leases; use SQLite, PostgreSQL or DynamoDB"
                )
            leases = target
        consumer = Consumer(
            kinesis_client(endpoint, region), batches, target, options, leases=leases, lease_observer=metrics
        )

        def on_signal(signum: int, frame: Any) -> None:
            consumer.stop()

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        consumer.run()
    finally:
        target.close()


def _consumer_metrics(port: int | None, host: str) -> ConsumerMetrics | None:
    """The consumer's metrics, served on ``host:port``; None without a port."""
    if port is None:
        return None
    try:
        from user_limits.observability.metrics import ConsumerMetrics
    except ImportError:
        raise UserError("--metrics-port needs prometheus-client: pip install 'user-limits[metrics]'") from None
    metrics = ConsumerMetrics()
    try:
        metrics.serve(port, host)
    except OSError as error:
        raise UserError(f"--metrics-port {port}: cannot listen on {host}: {error.strerror or error}") from None
    return metrics


START_POSITIONS = {"trim-horizon": "TRIM_HORIZON", "latest": "LATEST"}


def _initial_position(start: str) -> str:
    if start not in START_POSITIONS:
        raise UserError(f"--from {start!r}: use trim-horizon or latest")
    return START_POSITIONS[start]


def _assignment(worker: int | None, workers: int | None, lease: bool) -> Assignment:
    if lease and (worker is not None or workers is not None):
        raise UserError("--lease and --worker/--workers are exclusive: leases share the shards, give no static share")
    worker, workers = worker or 0, workers or 1
    if not 0 <= worker < workers:
        raise UserError(f"--worker {worker} --workers {workers}: need 0 <= worker < workers")
    return Assignment(worker, workers)


def _lease_options(lease: bool, consumer_id: str | None, lease_seconds: float | None) -> LeaseOptions | None:
    if not lease:
        for flag, value in (("--consumer-id", consumer_id), ("--lease-seconds", lease_seconds)):
            if value is not None:
                raise UserError(f"{flag} needs --lease")
        return None
    if consumer_id is not None and (not consumer_id.strip() or not consumer_id.isprintable()):
        raise UserError(f"--consumer-id {consumer_id!r}: give a non-blank name of printable characters")
    seconds = 30.0 if lease_seconds is None else lease_seconds
    if not 1 <= seconds <= 86_400:  # NaN and inf fail too
        raise UserError(f"--lease-seconds {lease_seconds}: give 1 to 86400")
    return LeaseOptions(consumer_id or f"{socket.gethostname()}:{os.getpid()}", seconds)


def _max_records(batch_size: int) -> int:
    if not 1 <= batch_size <= 10_000:
        raise UserError(f"--batch-size {batch_size}: GetRecords takes 1 to 10000")
    return batch_size


@app.command()
def produce(
    files_: Annotated[list[Path], typer.Argument(metavar="FILE...", help="JSON array, JSON Lines or Lambda event")],
    stream: StreamOption,
    endpoint: EndpointOption = None,
    region: RegionOption = None,
) -> None:
    """Put the records of FILEs on a Kinesis stream (PutRecords, partition key = aggregateId)."""
    from user_limits.kinesis.producer import produce as put_files

    counts = put_files(files_, stream, endpoint, region)
    print(f"{stream}: put {counts.put}, retried {counts.retried}, failed {counts.failed}")
    if counts.failed:
        raise typer.Exit(1)
