"""The DynamoDB client of the store: its timeouts and retries, the table's check, and the backoff of our own retries.

botocore retries each request (standard mode, 5 attempts); the store retries on top of that what
botocore cannot see as retryable: throttled BatchGetItem keys and transactions cancelled by a
conflict with another transaction, up to :data:`RETRIES` times with :func:`backoff`.
"""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from user_limits.stores.base import StoreError
from user_limits.stores.dynamodb.layout import Location

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

RETRIES = 8  # our own retries of throttled/conflicting requests, on top of botocore's


def connect(location: Location) -> DynamoDBClient:
    config = Config(
        retries={"mode": "standard", "max_attempts": 5},
        connect_timeout=5,
        read_timeout=30,
        max_pool_connections=16,
    )
    session = boto3.session.Session()
    try:
        return session.client("dynamodb", region_name=location.region, endpoint_url=location.endpoint, config=config)
    except (ValueError, BotoCoreError) as error:  # what parse_url let through and botocore refuses
        raise StoreError(f"cannot use DynamoDB ({where(location)}): {error}") from None


def where(location: Location) -> str:
    return f"region {location.region}" + (f", endpoint {location.endpoint}" if location.endpoint else "")


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def describe(client: DynamoDBClient, location: Location, url: str) -> str:
    """The table's status; a StoreError naming what to do if it cannot be used."""
    try:
        table = client.describe_table(TableName=location.table)["Table"]
    except ClientError as error:
        if error_code(error) == "ResourceNotFoundException":
            raise StoreError(
                f"DynamoDB table {location.table} does not exist ({where(location)}): "
                f"run `user-limits init --store {url}`"
            ) from None
        raise StoreError(f"cannot open DynamoDB table {location.table}: {error}") from None
    except BotoCoreError as error:
        raise StoreError(f"cannot reach DynamoDB ({where(location)}): {error}") from None
    keys = {(key["AttributeName"], key["KeyType"]) for key in table.get("KeySchema", [])}
    if keys != {("PK", "HASH"), ("SK", "RANGE")}:
        raise StoreError(f"DynamoDB table {location.table} is not a user-limits table (its key is not PK, SK)")
    return str(table.get("TableStatus", ""))


def backoff(attempt: int) -> None:
    """Sleep before retry ``attempt`` (1, 2, ...): exponential, capped at 2 s, with jitter."""
    time.sleep(min(2.0, 0.025 * 2**attempt) * random.uniform(0.5, 1.0))
