"""DynamoDB requests per event: the real Lambda handler on the DynamoDB store, against a local server.

A synthetic messy stream (about 2,000 users, 10,000 records, duplicates, late copies, ignored
types, orphans, poison) in 1,000-record Lambda Kinesis events goes through
``user_limits.aws_lambda.handler`` on a fresh table. Every request the store's client sends is
counted with a botocore event hook. Target: at most 0.5 requests per event (a per-event
read-modify-write needs 2). Records/s are those of the local server (moto), not of DynamoDB.
The read model must equal the in-memory store's, or the figure means nothing.

    python -m bench.dynamodb_requests [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tests.servers.dynamodb_local import DUMMY_CREDENTIALS, DynamoDBServer

from bench.handler_bench import stdout_silenced
from user_limits.testing.lambda_events import lambda_events

TARGET = 0.5
FULL = {"records": 10_000, "users": 2_000, "batch": 1_000}
QUICK = {"records": 3_000, "users": 600, "batch": 1_000}
SEED = 11


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the run only."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def run(quick: bool = False) -> dict[str, object]:
    from user_limits import aws_lambda
    from user_limits.domain.model import export_dict
    from user_limits.kinesis.records import records_from_lambda_event
    from user_limits.replay import replay
    from user_limits.stores.dynamodb_store import DynamoDBStore, initialize
    from user_limits.stores.memory_store import MemoryStore
    from user_limits.testing.synthetic import generate

    size = QUICK if quick else FULL
    stream = generate(size["records"], size["users"], SEED)
    events = lambda_events(((record.partition_key, record.data) for record in stream), size["batch"])
    records = sum(len(event["Records"]) for event in events)

    requests: Counter[str] = Counter()

    def count(model: Any, **_: Any) -> None:
        requests[model.name] += 1

    with DynamoDBServer() as server, environment({**DUMMY_CREDENTIALS, "USER_LIMITS_STORE": server.store_url()}):
        url = os.environ["USER_LIMITS_STORE"]
        initialize(url)
        aws_lambda.reset()
        try:
            store = aws_lambda.processor().store  # opened before timing, as in a warm Lambda
            assert isinstance(store, DynamoDBStore)
            store._client.meta.events.register("before-call.dynamodb", count)
            started = time.perf_counter()
            with stdout_silenced():
                for event in events:
                    failures = aws_lambda.handler(event)["batchItemFailures"]
                    if failures:
                        raise RuntimeError(f"a batch reported failures: {failures[:3]}")
            seconds = time.perf_counter() - started
            store._client.meta.events.unregister("before-call.dynamodb", count)
            export = [export_dict(limit) for limit in store.all_limits()]
            stats = store.stats()
        finally:
            aws_lambda.reset()

    memory = MemoryStore()
    replay(memory, [record for event in events for record in records_from_lambda_event(event)[0]], size["batch"])
    same = export == [export_dict(limit) for limit in memory.all_limits()] and stats == memory.stats()

    total = sum(requests.values())
    # Limit events: the records that are not ignored types or poison (duplicates included).
    limit_events = records - stats.ignored - stats.dead_letters
    per_record, per_limit_event = total / records, total / limit_events
    return {
        "records": records,
        "users": size["users"],
        "batch": size["batch"],
        "requests": dict(sorted(requests.items())),
        "requests_total": total,
        "requests_per_record": round(per_record, 4),
        "requests_per_limit_event": round(per_limit_event, 4),
        "records_per_second": round(records / seconds),
        "stats": stats.as_json(),
        "read_model_equal": same,
        "rows": [
            {
                "metric": f"DynamoDB requests per limit event ({size['batch']:,}-record batches, "
                f"{records:,} records; per record {per_record:.3f})",
                "figure": f"{per_limit_event:.3f}",
                "target": f"<= {TARGET}",
                "met": per_limit_event <= TARGET,
            },
            {
                "metric": "Handler on DynamoDB (local moto server), records/s",
                "figure": f"{records / seconds:,.0f}",
                "target": "",
                "met": None,
            },
            {
                "metric": "DynamoDB and in-memory stores end with the same read model (export + counters)",
                "figure": "equal" if same else "DIFFERENT",
                "target": "equal",
                "met": same,
            },
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller stream")
    result = run(quick=parser.parse_args().quick)
    print(json.dumps({key: value for key, value in result.items() if key != "rows"}, indent=2))
    for row in result["rows"]:  # type: ignore[attr-defined]
        mark = {True: "met", False: "NOT MET", None: ""}[row["met"]]
        print(f"{row['metric']}: {row['figure']} {row['target']} {mark}".rstrip())


if __name__ == "__main__":
    main()
