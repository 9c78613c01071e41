"""AWS Lambda entry points.

``handler``: a Kinesis event source mapping with ``ReportBatchItemFailures``. The whole batch is
one outcome; if the store fails, the first record whose effect is not committed is reported, and
nothing after it is ever reported as done (Lambda retries from the lowest reported record).
Poison records are dead-lettered, never reported.

``api_handler``: the read API behind API Gateway (Mangum), imported only when called.

Cold start matters: only the modules the configured store needs are imported.
"""

from __future__ import annotations

import os
import time
from operator import attrgetter
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from user_limits import bootstrap
from user_limits.domain.events import UserLimitEvent
from user_limits.domain.model import UserLimit
from user_limits.kinesis.records import records_from_lambda_event
from user_limits.stream.batch import BatchProcessor, BatchResult
from user_limits.stream.records import StreamRecord

_arrival_ms = attrgetter("arrival_ms")

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "user-limits"))
metrics = Metrics(
    namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "UserLimits"),
    service=os.environ.get("POWERTOOLS_SERVICE_NAME", "user-limits"),
)

_processor: BatchProcessor[UserLimitEvent, UserLimit] | None = None
_api: Any = None


def processor() -> BatchProcessor[UserLimitEvent, UserLimit]:
    """Built once per execution environment, from ``USER_LIMITS_STORE``."""
    global _processor
    if _processor is None:
        _processor = bootstrap.processor(bootstrap.open_store(bootstrap.store_url()))
    return _processor


def reset() -> None:
    """Forget the cached store (tests, or a changed ``USER_LIMITS_STORE``)."""
    global _processor
    if _processor is not None:
        _processor.store.close()
    _processor = None


def handler(event: dict[str, Any], context: Any = None) -> dict[str, list[dict[str, str]]]:
    started = time.perf_counter()
    records, parents = records_from_lambda_event(event)
    result = processor().process(records)
    failures = []
    if result.first_uncommitted is not None and result.first_uncommitted < len(parents):
        failures.append({"itemIdentifier": parents[result.first_uncommitted]})
    _log_batch(records, result, failures, time.perf_counter() - started)
    return {"batchItemFailures": failures}


def _log_batch(
    records: list[StreamRecord], result: BatchResult, failures: list[dict[str, str]], seconds: float
) -> None:
    counts = result.counts.as_json()
    arrivals = [ms for ms in map(_arrival_ms, records) if ms is not None]
    now_ms = time.time() * 1000
    age_ms = {"oldest": round(now_ms - min(arrivals)), "newest": round(now_ms - max(arrivals))} if arrivals else None
    line: dict[str, Any] = {
        "records": len(records),
        **counts,
        "recordAgeMs": age_ms,
        "durationMs": round(seconds * 1000, 3),
    }
    if result.error is not None:
        # The counts are what the store committed: all of the batch, part of it, or nothing.
        line["failedItem"] = failures[0]["itemIdentifier"] if failures else None
        line["error"] = f"{type(result.error).__name__}: {result.error}"
        if not failures:
            logger.warning("batch committed, a later write failed", extra=line)
        elif result.first_uncommitted or any(result.counts.as_json().values()):
            logger.error("batch partly committed", extra=line)
        else:
            logger.error("batch not committed", extra=line)
    else:
        logger.info("batch", extra=line)
    for name, value in counts.items():
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    metrics.add_metric(name="batchFailed", unit=MetricUnit.Count, value=1 if failures else 0)
    if age_ms is not None:
        metrics.add_metric(name="recordAge", unit=MetricUnit.Milliseconds, value=age_ms["oldest"])
    metrics.flush_metrics()


def api_handler(event: dict[str, Any], context: Any = None) -> Any:
    """The read API behind API Gateway (REST or HTTP API), through Mangum."""
    global _api
    if _api is None:
        from mangum import Mangum

        from user_limits.api.app import create_app

        _api = Mangum(create_app(), lifespan="off")
    return _api(event, context)
