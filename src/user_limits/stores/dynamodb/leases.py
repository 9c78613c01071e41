"""The DynamoDB store's leases: one item per shard under the ``LEASE`` partition, written with
condition expressions (pure: keys, items and conditions; the store sends them).

``LEASE``, ``<stream>|<shardId>`` (as a checkpoint's sort key): ``stream``, ``shardId``,
``counter``, ``expiresMs`` and ``holder`` (absent when free). A write is conditional on the
counter and the holder read; a guarded batch adds a ``ConditionCheck`` of the same condition to
each of its transactions, and to the one that writes its checkpoint.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from user_limits.stores.dynamodb.layout import checkpoint_sk, item_key, number_attr, text_attr
from user_limits.stores.text import storable, unstored
from user_limits.stream.records import Lease, LeaseGuard

if TYPE_CHECKING:
    from user_limits.stores.dynamodb.layout import Item

LEASES = "LEASE"


def lease_key(stream: str, shard_id: str) -> Item:
    return item_key(LEASES, checkpoint_sk(stream, shard_id))


def free_item(stream: str, shard_id: str) -> Item:
    return {
        **lease_key(stream, shard_id),
        "stream": text_attr(storable(stream)),
        "shardId": text_attr(storable(shard_id)),
        "counter": number_attr(0),
        "expiresMs": number_attr(0),
    }


def item_lease(item: Mapping[str, Any]) -> Lease:
    holder = item.get("holder")
    return Lease(
        unstored(item["stream"]["S"]),
        unstored(item["shardId"]["S"]),
        None if holder is None else unstored(holder["S"]),
        int(item["counter"]["N"]),
        int(item["expiresMs"]["N"]),
    )


def held_condition(holder: str | None, counter: int) -> dict[str, Any]:
    """The condition that the stored lease still has this holder (None: free) and counter."""
    values: dict[str, Any] = {":counter": number_attr(counter)}
    if holder is None:
        expression = "#counter = :counter AND attribute_not_exists(holder)"
    else:
        expression = "#counter = :counter AND holder = :holder"
        values[":holder"] = text_attr(storable(holder))
    return {
        "ConditionExpression": expression,
        "ExpressionAttributeNames": {"#counter": "counter"},
        "ExpressionAttributeValues": values,
    }


def write_update(table: str, expected: Lease, new: Lease) -> dict[str, Any]:
    """UpdateItem arguments: ``new``'s holder, counter and expiry, if ``expected``'s still hold."""
    condition = held_condition(expected.holder, expected.counter)
    values = {**condition["ExpressionAttributeValues"], ":new": number_attr(new.counter)}
    values[":expires"] = number_attr(new.expires_ms)
    assignments = "SET #counter = :new, expiresMs = :expires"
    if new.holder is None:
        update = f"{assignments} REMOVE holder"
    else:
        update = f"{assignments}, holder = :next"
        values[":next"] = text_attr(storable(new.holder))
    return {
        "TableName": table,
        "Key": lease_key(expected.stream, expected.shard_id),
        "UpdateExpression": update,
        **condition,
        "ExpressionAttributeValues": values,
    }


def guard_check(table: str, stream: str, shard_id: str, guard: LeaseGuard) -> dict[str, Any]:
    """A transaction's ConditionCheck that the guard's lease still holds."""
    return {
        "ConditionCheck": {
            "TableName": table,
            "Key": lease_key(stream, shard_id),
            **held_condition(guard.holder, guard.counter),
        }
    }
