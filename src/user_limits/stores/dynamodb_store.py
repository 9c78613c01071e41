"""The DynamoDB store: one on-demand table, a single-table design keyed for the read API.

Items (``PK``, ``SK``, both strings):

- ``USER#<userId>``, ``LIMIT#<userLimitId>``: a limit. A user's limits are one Query. ``value`` and
  ``progress`` are strings: a DynamoDB number would turn ``"9800.00"`` into ``9800``.
- ``USER#<userId>``, ``PARKED#<userLimitId>``: the events parked for that limit, one attribute
  ``E<position>`` (bytes) each, so a batch reads a limit and its parked events in one BatchGetItem.
- ``DEADLETTER``, ``<DeadLetter.id>``: a dead letter, put only if absent (kept once).
- ``META``, ``COUNTERS#<n>``: applied/skipped/ignored, spread over a few items (fewer transaction
  conflicts between shards) and summed on read. ``META``, ``ASOF``: the newest event time applied.
- ``CHECKPOINT``, ``<stream>|<shardId>``: a shard's checkpoint, with a zero-padded ``orderKey``.

A batch is read with BatchGetItem (100 keys a request, consistent reads) and written with
TransactWriteItems (up to 100 actions each, a ClientRequestToken so botocore's retries are
idempotent). Each touched limit is one unit: its Put (or, when only its parked events change, a
ConditionCheck) is conditional on the limit being as the snapshot had it (``attribute_not_exists``
or ``lastSequenceNumber = :expected``), so no writer moves a limit backwards or applies an event
twice. When another writer got there first, that unit is dropped from the transaction, the rest
is retried, and the dropped limits are read again and the batch projected again for them (the
projection is pure), so concurrent writers of one stream end as one serial writer would, counters
included.

There is no transaction over a whole batch, so a failure part-way raises :class:`CommitError` with
the first record whose effect is not committed (units are committed in record order); re-delivering
from there is harmless, the stored positions skip what is already applied. Under failures and
retries:

- ``applied`` is exact: each transaction ADDs the applied events of exactly the units it commits.
- parked events (``E<position>`` set or removed), dead letters (put if absent), the checkpoint and
  ``asOf`` (conditional maximums) are idempotent; the checkpoint is written last.
- ``skipped`` and ``ignored`` are added by the batch's last transaction: exact when a batch commits
  in full; a batch that fails part-way adds none, and its re-delivered remainder counts its own
  records (events the failed attempt had already applied then count as skipped). A batch delivered
  again after it committed counts its records as skipped again, as every store does.

Costs: about 2 keys read per touched limit (limit and parked item) and one transaction per ~99
touched limits, plus one conditional UpdateItem (``asOf``) per batch. ``stats``, ``all_limits``
and ``parked_events`` Scan the table (CLI use); the read API uses one Query and one GetItem.
"""

from __future__ import annotations

import os
import random
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import parse_qs, urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from user_limits.domain.events import LimitPeriod, LimitStatus, LimitType
from user_limits.domain.model import UserLimit
from user_limits.stores.base import StoreError
from user_limits.stream.records import (
    Checkpoint,
    CommitError,
    Counts,
    DeadLetter,
    Outcome,
    ParkedEvent,
    Snapshot,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import (
        AttributeValueTypeDef,
        TransactWriteItemTypeDef,
    )

    Item = dict[str, AttributeValueTypeDef]
    Action = TransactWriteItemTypeDef

USER, LIMIT, PARKED = "USER#", "LIMIT#", "PARKED#"
DEAD_LETTERS, META, CHECKPOINTS = "DEADLETTER", "META", "CHECKPOINT"
COUNTERS, AS_OF = "COUNTERS#", "ASOF"
COUNTER_SHARDS = 8
PARKED_PREFIX = "E"  # attribute E<position> of a PARKED# item

BATCH_GET_KEYS = 100  # DynamoDB's limit per BatchGetItem
TRANSACTION_ACTIONS = 100  # DynamoDB's limit per TransactWriteItems
TRANSACTION_BYTES = 3_500_000  # under the 4 MB request limit, with room for the expressions
MAX_ITEM_DATA = 350_000  # dead-letter bytes kept: an item holds at most 400 KB
RETRIES = 8  # our own retries of throttled/conflicting requests, on top of botocore's
ROUNDS = 5  # reads and projections of a batch whose limits other writers keep changing


@dataclass(frozen=True, slots=True)
class Location:
    table: str
    region: str
    endpoint: str | None


def parse_url(url: str) -> Location:
    """``dynamodb://TABLE?region=REGION&endpoint=URL``; the region falls back to AWS_REGION."""
    parts = urlsplit(url)
    table = parts.netloc
    if parts.scheme != "dynamodb" or not table:
        raise StoreError(f"bad DynamoDB store URL {url!r}: use dynamodb://TABLE?region=REGION[&endpoint=URL]")
    if not 3 <= len(table) <= 255 or not all(c.isalnum() or c in "_.-" for c in table):
        raise StoreError(f"bad DynamoDB table name {table!r}: 3 to 255 letters, digits, '_', '-' or '.'")
    query = parse_qs(parts.query)
    region = (
        next(iter(query.get("region", [])), None)
        or os.environ.get("AWS_REGION")
        or os.environ.get("AWS_DEFAULT_REGION")
    )
    if not region:
        raise StoreError(f"no AWS region for {url}: add ?region=REGION to the URL or set AWS_REGION")
    endpoint = next(iter(query.get("endpoint", [])), None) or None
    return Location(table, region, endpoint)


def _client(location: Location) -> DynamoDBClient:
    config = Config(
        retries={"mode": "standard", "max_attempts": 5},
        connect_timeout=5,
        read_timeout=30,
        max_pool_connections=16,
    )
    session = boto3.session.Session()
    return session.client("dynamodb", region_name=location.region, endpoint_url=location.endpoint, config=config)


def _where(location: Location) -> str:
    return f"region {location.region}" + (f", endpoint {location.endpoint}" if location.endpoint else "")


def _error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _describe(client: DynamoDBClient, location: Location, url: str) -> str:
    """The table's status; a StoreError naming what to do if it cannot be used."""
    try:
        table = client.describe_table(TableName=location.table)["Table"]
    except ClientError as error:
        if _error_code(error) == "ResourceNotFoundException":
            raise StoreError(
                f"DynamoDB table {location.table} does not exist ({_where(location)}): "
                f"run `user-limits init --store {url}`"
            ) from None
        raise StoreError(f"cannot open DynamoDB table {location.table}: {error}") from None
    except BotoCoreError as error:
        raise StoreError(f"cannot reach DynamoDB ({_where(location)}): {error}") from None
    keys = {(key["AttributeName"], key["KeyType"]) for key in table.get("KeySchema", [])}
    if keys != {("PK", "HASH"), ("SK", "RANGE")}:
        raise StoreError(f"DynamoDB table {location.table} is not a user-limits table (its key is not PK, SK)")
    return str(table.get("TableStatus", ""))


def initialize(url: str) -> str:
    """Create the table (on-demand billing) if it does not exist and wait until it is active."""
    location = parse_url(url)
    client = _client(location)
    try:
        client.create_table(
            TableName=location.table,
            KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"}, {"AttributeName": "SK", "KeyType": "RANGE"}],
            AttributeDefinitions=[
                {"AttributeName": "PK", "AttributeType": "S"},
                {"AttributeName": "SK", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        done = f"created DynamoDB table {location.table} (on-demand, {_where(location)})"
    except ClientError as error:
        if _error_code(error) != "ResourceInUseException":
            raise StoreError(f"cannot create DynamoDB table {location.table}: {error}") from None
        done = f"DynamoDB table {location.table} already exists ({_where(location)})"
    except BotoCoreError as error:
        raise StoreError(f"cannot reach DynamoDB ({_where(location)}): {error}") from None
    try:
        client.get_waiter("table_exists").wait(TableName=location.table, WaiterConfig={"Delay": 1, "MaxAttempts": 300})
        _describe(client, location, url)
    finally:
        client.close()
    return f"{url}: {done}"


# -- items


def _s(value: str) -> AttributeValueTypeDef:
    return {"S": value}


def _n(value: int) -> AttributeValueTypeDef:
    return {"N": str(value)}


def _key(pk: str, sk: str) -> Item:
    return {"PK": {"S": pk}, "SK": {"S": sk}}


def limit_item(limit: UserLimit) -> Item:
    item: Item = {
        "PK": _s(USER + limit.user_id),
        "SK": _s(LIMIT + limit.user_limit_id),
        "userLimitId": _s(limit.user_limit_id),
        "userId": _s(limit.user_id),
        "brandId": _s(limit.brand_id),
        "type": _s(limit.type),
        "period": _s(limit.period),
        "status": _s(limit.status),
        "value": _s(str(limit.value)),
        "progress": _s(str(limit.progress)),
        "currencyCode": _s(limit.currency_code),
        "activeFrom": _n(limit.active_from),
        "createdAt": _n(limit.created_at),
        "lastSequenceNumber": _n(limit.last_sequence_number),
        "updatedAt": _n(limit.updated_at),
    }
    if limit.active_until is not None:
        item["activeUntil"] = _n(limit.active_until)
    if limit.next_reset_time is not None:
        item["nextResetTime"] = _n(limit.next_reset_time)
    return item


def _optional_int(item: Mapping[str, Any], name: str) -> int | None:
    value = item.get(name)
    return None if value is None or "N" not in value else int(value["N"])


def item_limit(item: Mapping[str, Any]) -> UserLimit:
    return UserLimit(
        user_limit_id=item["userLimitId"]["S"],
        user_id=item["userId"]["S"],
        brand_id=item["brandId"]["S"],
        type=cast(LimitType, item["type"]["S"]),
        period=cast(LimitPeriod, item["period"]["S"]),
        status=cast(LimitStatus, item["status"]["S"]),
        value=Decimal(item["value"]["S"]),
        progress=Decimal(item["progress"]["S"]),
        currency_code=item["currencyCode"]["S"],
        active_from=int(item["activeFrom"]["N"]),
        active_until=_optional_int(item, "activeUntil"),
        next_reset_time=_optional_int(item, "nextResetTime"),
        created_at=int(item["createdAt"]["N"]),
        last_sequence_number=int(item["lastSequenceNumber"]["N"]),
        updated_at=int(item["updatedAt"]["N"]),
    )


def item_parked(item: Mapping[str, Any]) -> list[ParkedEvent]:
    key = item["SK"]["S"].removeprefix(PARKED)
    return sorted(
        ParkedEvent(key, int(name[1:]), bytes(value["B"]))
        for name, value in item.items()
        if name.startswith(PARKED_PREFIX) and name[1:].isdigit()
    )


def dead_letter_item(letter: DeadLetter, index: int, stored_at: int) -> Item:
    data = letter.data
    item: Item = {
        "PK": _s(DEAD_LETTERS),
        "SK": _s(letter.id),
        "reason": _s(letter.reason),
        "data": {"B": data[:MAX_ITEM_DATA]},
        # The order dead letters are listed in: when stored, then where in their batch.
        "storedAt": _n(stored_at),
        "batchIndex": _n(index),
    }
    if len(data) > MAX_ITEM_DATA:
        item["dataLength"] = _n(len(data))  # the record was larger than an item can hold
    for name, value in (
        ("sequenceNumber", letter.sequence_number),
        ("partitionKey", letter.partition_key),
        ("streamArn", letter.stream_arn),
        ("shardId", letter.shard_id),
    ):
        if value is not None:
            item[name] = _s(value)
    for name, number in (("subSequenceNumber", letter.sub_sequence_number), ("arrivalMs", letter.arrival_ms)):
        if number is not None:
            item[name] = _n(number)
    return item


def item_dead_letter(item: Mapping[str, Any]) -> DeadLetter:
    def text(name: str) -> str | None:
        value = item.get(name)
        return None if value is None else str(value["S"])

    return DeadLetter(
        item["reason"]["S"],
        bytes(item["data"]["B"]),
        text("sequenceNumber"),
        _optional_int(item, "subSequenceNumber"),
        text("partitionKey"),
        _optional_int(item, "arrivalMs"),
        text("streamArn"),
        text("shardId"),
    )


def checkpoint_order(checkpoint: Checkpoint) -> str:
    """Zero-padded, so that the strings compare as the numbers do. Kinesis allows sequence numbers
    of up to 129 digits (``0|([1-9]\\d{0,128})``); sub-sequence numbers are 64-bit."""
    sequence, sub = checkpoint.order()
    return f"{sequence:0129d}.{sub:020d}"


# -- the commit of one outcome


@dataclass(slots=True)
class _Unit:
    """Actions committed together or not at all: one limit with its parked events, conditional on
    the limit being as the snapshot had it; or a dead letter."""

    index: int  # the first batch record whose effect the unit carries
    actions: list[Action]
    key: str | None = None  # the limit's id; None for a dead letter
    applied: int = 0
    updated_at: int | None = None
    size: int = 0


@dataclass(slots=True)
class _Progress:
    """What the transactions of one batch have committed so far."""

    applied: int = 0
    skipped: int = 0
    ignored: int = 0
    newest: int | None = None
    committed_any: bool = False


def _expected(position: int | None) -> dict[str, Any]:
    """The condition that a limit is still at the snapshot's ``position`` (absent for None)."""
    if position is None:
        return {"ConditionExpression": "attribute_not_exists(PK)"}
    return {
        "ConditionExpression": "lastSequenceNumber = :expected",
        "ExpressionAttributeValues": {":expected": _n(position)},
    }


class DynamoDBStore:
    def __init__(self, url: str) -> None:
        self.url = url
        self.location = parse_url(url)
        self.table = self.location.table
        self._client = _client(self.location)
        status = _describe(self._client, self.location, url)
        if status not in ("ACTIVE", "UPDATING"):
            raise StoreError(f"DynamoDB table {self.table} is {status}: wait until it is ACTIVE")

    # -- write side

    def apply_batch(
        self, keys: Mapping[str, str], project: Callable[[Snapshot[UserLimit]], Outcome[UserLimit]]
    ) -> Outcome[UserLimit]:
        snapshot = self._snapshot(keys)
        outcome = project(snapshot)
        progress = _Progress()
        pending: set[str] | None = None  # the limits still to commit; None: the whole outcome
        for _ in range(ROUNDS):
            conflicts = self._commit(keys, outcome, pending, progress)
            if not conflicts:
                break
            # Another writer changed these limits since they were read: read them again and
            # project the batch again (projection is pure; the other limits come out the same).
            fresh = self._snapshot({key: keys[key] for key in conflicts})
            for key in conflicts:
                _replace(snapshot.states, key, fresh.states.get(key))
                _replace(snapshot.parked, key, fresh.parked.get(key))
            outcome = project(snapshot)
            pending = set(conflicts)
        else:
            raise CommitError(min(conflicts.values()), RuntimeError(f"limits changing under {ROUNDS} attempts"))
        try:
            if progress.newest is not None:
                self._conditional_max(_key(META, AS_OF), "asOf", _n(progress.newest))
            if outcome.checkpoint is not None:
                self._store_checkpoint(outcome.checkpoint)
        except Exception as error:
            # Every record's effect is committed; the next batch moves these forward again.
            raise CommitError(outcome.size, error) from error
        return outcome

    def _snapshot(self, keys: Mapping[str, str]) -> Snapshot[UserLimit]:
        snapshot: Snapshot[UserLimit] = Snapshot()
        wanted: list[Item] = []
        for limit_id, user_id in keys.items():
            wanted.append(_key(USER + user_id, LIMIT + limit_id))
            wanted.append(_key(USER + user_id, PARKED + limit_id))
        for item in self._batch_get(wanted):
            sk = item["SK"]["S"]
            if sk.startswith(LIMIT):
                snapshot.states[sk.removeprefix(LIMIT)] = item_limit(item)
            else:
                events = item_parked(item)
                if events:
                    snapshot.parked[sk.removeprefix(PARKED)] = events
        return snapshot

    def _batch_get(self, keys: Sequence[Item]) -> Iterator[Mapping[str, Any]]:
        for start in range(0, len(keys), BATCH_GET_KEYS):
            pending: Any = {self.table: {"Keys": keys[start : start + BATCH_GET_KEYS], "ConsistentRead": True}}
            attempt = 0
            while pending:
                response = self._client.batch_get_item(RequestItems=pending)
                yield from response.get("Responses", {}).get(self.table, [])
                pending = response.get("UnprocessedKeys") or None
                if pending:
                    attempt += 1
                    if attempt > RETRIES:
                        raise StoreError(f"DynamoDB table {self.table}: reads still throttled after {RETRIES} retries")
                    _backoff(attempt)

    def _units(self, keys: Mapping[str, str], outcome: Outcome[UserLimit], pending: set[str] | None) -> list[_Unit]:
        table = self.table
        parked_set: dict[str, list[tuple[int, ParkedEvent]]] = {}
        parked_removed: dict[str, list[tuple[int, ParkedEvent]]] = {}
        for index, event in outcome.parked_added:
            parked_set.setdefault(event.key, []).append((index, event))
        for index, event in outcome.parked_removed:
            parked_removed.setdefault(event.key, []).append((index, event))
        units: list[_Unit] = []
        for key in {*outcome.states, *parked_set, *parked_removed}:
            if pending is not None and key not in pending:
                continue
            expected, first = outcome.touched[key]
            indexes = [index for index, _ in (*parked_set.get(key, ()), *parked_removed.get(key, ()))]
            unit = _Unit(min([first, *indexes]), [], key)
            limit = outcome.states.get(key)
            condition = _expected(expected)
            if limit is not None:
                put: Any = {"TableName": table, "Item": limit_item(limit), **condition}
                unit.actions.append({"Put": put})
                unit.applied = outcome.applied_by_key.get(key, 0)
                unit.updated_at = limit.updated_at
                unit.size = 600
            else:
                # Parked events only: still conditional on the limit being as read.
                limit_key = _key(USER + keys[key], LIMIT + key)
                check: Any = {"TableName": table, "Key": limit_key, **condition}
                unit.actions.append({"ConditionCheck": check})
                unit.size = 200
            names: dict[str, str] = {}
            values: dict[str, AttributeValueTypeDef] = {}
            sets, removes = [], []
            for n, (_, event) in enumerate(parked_set.get(key, ())):
                names[f"#s{n}"] = f"{PARKED_PREFIX}{event.position}"
                values[f":s{n}"] = {"B": event.data}
                sets.append(f"#s{n} = :s{n}")
                unit.size += len(event.data) + 40
            for n, (_, event) in enumerate(parked_removed.get(key, ())):
                names[f"#r{n}"] = f"{PARKED_PREFIX}{event.position}"
                removes.append(f"#r{n}")
            if names:
                expression = " ".join(
                    clause
                    for clause in (
                        "SET " + ", ".join(sets) if sets else "",
                        "REMOVE " + ", ".join(removes) if removes else "",
                    )
                    if clause
                )
                update: Any = {
                    "TableName": table,
                    "Key": _key(USER + keys[key], PARKED + key),
                    "UpdateExpression": expression,
                    "ExpressionAttributeNames": names,
                }
                if values:
                    update["ExpressionAttributeValues"] = values
                unit.actions.append({"Update": update})
                unit.size += 200
            units.append(unit)
        if pending is None:
            stored_at = time.time_ns()
            seen: set[str] = set()
            for index, letter in outcome.dead_letters:
                if letter.id in seen:  # one transaction may not touch an item twice
                    continue
                seen.add(letter.id)
                item = dead_letter_item(letter, index, stored_at)
                action: Action = {
                    "Put": {"TableName": table, "Item": item, "ConditionExpression": "attribute_not_exists(PK)"}
                }
                units.append(_Unit(index, [action], size=len(letter.data[:MAX_ITEM_DATA]) + 400))
        units.sort(key=lambda unit: unit.index)
        return units

    def _commit(
        self, keys: Mapping[str, str], outcome: Outcome[UserLimit], pending: set[str] | None, progress: _Progress
    ) -> dict[str, int]:
        """Commit the outcome (of the ``pending`` limits) in transactions, in record order; returns
        the limits another writer changed since they were read, with their first record's index."""
        groups: list[list[_Unit]] = []
        actions = size = 0
        for unit in self._units(keys, outcome, pending):
            # One action of each transaction is kept for the counters.
            if (
                not groups
                or actions + len(unit.actions) > TRANSACTION_ACTIONS - 1
                or size + unit.size > TRANSACTION_BYTES
            ):
                groups.append([])
                actions = size = 0
            groups[-1].append(unit)
            actions += len(unit.actions)
            size += unit.size
        if not groups:
            groups.append([])  # still count skipped and ignored
        conflicts: dict[str, int] = {}
        for number, group in enumerate(groups):
            try:
                self._transact(outcome, group, progress, conflicts, last=number == len(groups) - 1)
            except Exception as error:
                remaining = [unit.index for later in groups[number:] for unit in later]
                remaining += conflicts.values()
                first = min(remaining, default=outcome.size if progress.committed_any else 0)
                raise CommitError(first, error) from error
        return conflicts

    def _transact(
        self,
        outcome: Outcome[UserLimit],
        units: list[_Unit],
        progress: _Progress,
        conflicts: dict[str, int],
        last: bool,
    ) -> None:
        """One TransactWriteItems, retried without the units whose conditions failed: a limit
        changed since it was read (into ``conflicts``), a dead letter already kept (dropped)."""
        counts = outcome.counts
        attempt = 0
        while True:
            applied = sum(unit.applied for unit in units)
            # The batch's last transaction brings skipped and ignored up to this outcome's.
            skipped, ignored = (
                (counts.skipped - progress.skipped, counts.ignored - progress.ignored) if last else (0, 0)
            )
            actions = [action for unit in units for action in unit.actions]
            if applied or skipped or ignored:
                actions.append(self._counters_action(applied, skipped, ignored))
            if not actions:
                return
            try:
                self._client.transact_write_items(TransactItems=actions, ClientRequestToken=uuid.uuid4().hex)
            except ClientError as error:
                if _error_code(error) != "TransactionCanceledException":
                    raise
                reasons = error.response.get("CancellationReasons") or []
                failed = {n for n, reason in enumerate(reasons) if reason.get("Code") == "ConditionalCheckFailed"}
                if failed:
                    units = _without(units, failed, conflicts)
                    continue
                # Conflicts with another transaction, or throttling: back off and try again.
                attempt += 1
                if attempt > RETRIES:
                    raise
                _backoff(attempt)
                continue
            progress.committed_any = True
            progress.applied += applied
            progress.skipped += skipped
            progress.ignored += ignored
            for unit in units:
                if unit.updated_at is not None and (progress.newest is None or unit.updated_at > progress.newest):
                    progress.newest = unit.updated_at
            return

    def _counters_action(self, applied: int, skipped: int, ignored: int) -> Action:
        return {
            "Update": {
                "TableName": self.table,
                "Key": _key(META, f"{COUNTERS}{random.randrange(COUNTER_SHARDS)}"),
                # Placeholders: IGNORE is a reserved word.
                "UpdateExpression": "ADD #a :a, #s :s, #i :i",
                "ExpressionAttributeNames": {"#a": "applied", "#s": "skipped", "#i": "ignored"},
                "ExpressionAttributeValues": {":a": _n(applied), ":s": _n(skipped), ":i": _n(ignored)},
            }
        }

    def _conditional_max(self, key: Item, name: str, value: AttributeValueTypeDef, extra: Item | None = None) -> None:
        """Set ``name`` (and ``extra``) only if it moves forward; a stored newer value wins."""
        assignments = ", ".join([f"{name} = :v", *(f"{other} = :{other}" for other in extra or {})])
        values: Item = {":v": value, **{f":{other}": attr for other, attr in (extra or {}).items()}}
        try:
            self._client.update_item(
                TableName=self.table,
                Key=key,
                UpdateExpression=f"SET {assignments}",
                ConditionExpression=f"attribute_not_exists({name}) OR {name} < :v",
                ExpressionAttributeValues=values,
            )
        except ClientError as error:
            if _error_code(error) != "ConditionalCheckFailedException":
                raise

    def _store_checkpoint(self, checkpoint: Checkpoint) -> None:
        self._conditional_max(
            _key(CHECKPOINTS, f"{checkpoint.stream}|{checkpoint.shard_id}"),
            "orderKey",
            _s(checkpoint_order(checkpoint)),
            {"sequenceNumber": _s(checkpoint.sequence_number), "subSequenceNumber": _n(checkpoint.sub_sequence_number)},
        )

    def checkpoint(self, stream: str, shard_id: str) -> Checkpoint | None:
        item = self._get(_key(CHECKPOINTS, f"{stream}|{shard_id}"))
        if item is None:
            return None
        return Checkpoint(stream, shard_id, item["sequenceNumber"]["S"], int(item["subSequenceNumber"]["N"]))

    # -- read side

    def _get(self, key: Item) -> Mapping[str, Any] | None:
        return self._client.get_item(TableName=self.table, Key=key, ConsistentRead=True).get("Item")

    def _query(self, pk: str, prefix: str | None = None, select_count: bool = False) -> Iterator[Mapping[str, Any]]:
        request: Any = {"TableName": self.table, "ConsistentRead": True, "ExpressionAttributeValues": {":pk": _s(pk)}}
        request["KeyConditionExpression"] = "PK = :pk"
        if prefix is not None:
            request["KeyConditionExpression"] += " AND begins_with(SK, :prefix)"
            request["ExpressionAttributeValues"][":prefix"] = _s(prefix)
        if select_count:
            request["Select"] = "COUNT"
        while True:
            response = self._client.query(**request)
            if select_count:
                yield {"Count": response.get("Count", 0)}
            else:
                yield from response.get("Items", [])
            if "LastEvaluatedKey" not in response:
                return
            request["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def _scan(self, prefix: str) -> Iterator[Mapping[str, Any]]:
        request: Any = {
            "TableName": self.table,
            "ConsistentRead": True,
            "FilterExpression": "begins_with(SK, :prefix)",
            "ExpressionAttributeValues": {":prefix": _s(prefix)},
        }
        while True:
            response = self._client.scan(**request)
            yield from response.get("Items", [])
            if "LastEvaluatedKey" not in response:
                return
            request["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def user_limits(self, user_id: str) -> list[UserLimit]:
        return [item_limit(item) for item in self._query(USER + user_id, LIMIT)]

    def user_limit(self, user_id: str, user_limit_id: str) -> UserLimit | None:
        item = self._get(_key(USER + user_id, LIMIT + user_limit_id))
        return None if item is None else item_limit(item)

    def all_limits(self) -> Iterator[UserLimit]:
        limits = [item_limit(item) for item in self._scan(LIMIT)]
        limits.sort(key=lambda limit: limit.user_limit_id)
        return iter(limits)

    def parked_events(self) -> list[ParkedEvent]:
        return sorted(event for item in self._scan(PARKED) for event in item_parked(item))

    def dead_letters(self) -> list[DeadLetter]:
        items = sorted(
            self._query(DEAD_LETTERS), key=lambda item: (int(item["storedAt"]["N"]), int(item["batchIndex"]["N"]))
        )
        return [item_dead_letter(item) for item in items]

    def stats(self) -> Counts:
        counts = Counts()
        for item in self._query(META, COUNTERS):
            counts.applied += _optional_int(item, "applied") or 0
            counts.skipped += _optional_int(item, "skipped") or 0
            counts.ignored += _optional_int(item, "ignored") or 0
        counts.parked = sum(len(item_parked(item)) for item in self._scan(PARKED))
        counts.dead_lettered = sum(int(page["Count"]) for page in self._query(DEAD_LETTERS, select_count=True))
        return counts

    def as_of(self) -> int | None:
        item = self._get(_key(META, AS_OF))
        return None if item is None else _optional_int(item, "asOf")

    def ping(self) -> None:
        self._client.describe_table(TableName=self.table)

    def close(self) -> None:
        self._client.close()


def _without(units: list[_Unit], failed: set[int], conflicts: dict[str, int]) -> list[_Unit]:
    """The units none of whose actions (by position in the transaction) failed their condition."""
    kept: list[_Unit] = []
    position = 0
    for unit in units:
        span = range(position, position + len(unit.actions))
        position += len(unit.actions)
        if not failed.intersection(span):
            kept.append(unit)
        elif unit.key is not None:
            conflicts[unit.key] = unit.index
    return kept


def _replace(values: dict[str, Any], key: str, value: Any) -> None:
    if value is None:
        values.pop(key, None)
    else:
        values[key] = value


def _backoff(attempt: int) -> None:
    time.sleep(min(2.0, 0.025 * 2**attempt) * random.uniform(0.5, 1.0))
