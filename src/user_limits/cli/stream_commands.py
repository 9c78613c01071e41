"""consume and produce: the standalone Kinesis consumer and producer.

boto3 is imported when one of these commands runs, never when the CLI starts.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from user_limits.bootstrap import open_store, store_url
from user_limits.cli.app import StoreOption, app
from user_limits.errors import UserError

if TYPE_CHECKING:
    from user_limits.metrics import ConsumerMetrics

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
    worker: Annotated[int, typer.Option("--worker", min=0, help="This consumer's index among --workers.")] = 0,
    workers: Annotated[
        int, typer.Option("--workers", min=1, help="Consumers sharing the stream (shard number mod N).")
    ] = 1,
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

    SIGINT or SIGTERM stop it after the batch in hand.
    """
    from user_limits.kinesis_consumer import Consumer, ConsumerOptions, check_endpoint, check_region
    from user_limits.kinesis_consumer import consume as run_consumer

    check_endpoint(endpoint)  # before the store is opened (or created)
    check_region(region)
    options = ConsumerOptions(
        stream, start, batch_size, poll_interval, stop_when_idle, worker, workers, shard_refresh, log_interval
    )
    metrics = _consumer_metrics(metrics_port, metrics_host)
    target = open_store(store_url(store))

    def install(consumer: Consumer) -> None:
        if metrics is not None:
            from user_limits.metrics import MeteredProcessor

            consumer.processor = MeteredProcessor(consumer.processor, metrics)

        def on_signal(signum: int, frame: Any) -> None:
            consumer.stop()

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)

    try:
        run_consumer(target, options, endpoint, region, on_consumer=install)
    finally:
        target.close()


def _consumer_metrics(port: int | None, host: str) -> ConsumerMetrics | None:
    """The consumer's metrics, served on ``host:port``; None without a port."""
    if port is None:
        return None
    try:
        from user_limits.metrics import ConsumerMetrics
    except ImportError:
        raise UserError("--metrics-port needs prometheus-client: pip install 'user-limits[metrics]'") from None
    metrics = ConsumerMetrics()
    try:
        metrics.serve(port, host)
    except OSError as error:
        raise UserError(f"--metrics-port {port}: cannot listen on {host}: {error.strerror or error}") from None
    return metrics


@app.command()
def produce(
    files_: Annotated[list[Path], typer.Argument(metavar="FILE...", help="JSON array, JSON Lines or Lambda event")],
    stream: StreamOption,
    endpoint: EndpointOption = None,
    region: RegionOption = None,
) -> None:
    """Put the records of FILEs on a Kinesis stream (PutRecords, partition key = aggregateId)."""
    from user_limits.kinesis_producer import produce as put_files

    counts = put_files(files_, stream, endpoint, region)
    print(f"{stream}: put {counts.put}, retried {counts.retried}, failed {counts.failed}")
    if counts.failed:
        raise typer.Exit(1)
