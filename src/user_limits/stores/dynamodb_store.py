"""The DynamoDB store as bootstrap opens it: ``dynamodb://TABLE?region=REGION[&endpoint=URL]``.

The store itself is the package :mod:`user_limits.stores.dynamodb`; this module is its public name
and the store-module contract (``open_store``, ``initialize``, ``READS_IN_PROCESS``). Importing it
imports boto3: bootstrap imports it only for a DynamoDB URL.
"""

from __future__ import annotations

from user_limits.stores.base import LimitStore
from user_limits.stores.dynamodb.layout import parse_url
from user_limits.stores.dynamodb.store import DynamoDBStore, initialize

__all__ = ["READS_IN_PROCESS", "DynamoDBStore", "initialize", "open_store", "parse_url"]

# Every read is a request to DynamoDB: the API runs them in its thread pool.
READS_IN_PROCESS = False


def open_store(url: str, *, read_only: bool = False) -> LimitStore:
    """``read_only``: opening writes nothing (DynamoDB has no read-only session: the role decides)."""
    return DynamoDBStore(url, read_only=read_only)
