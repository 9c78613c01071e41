"""The DynamoDB store: one on-demand table, a single-table design keyed for the read API.

Items (``PK``, ``SK``, both strings):

- ``USER#<userId>``, ``LIMIT#<userLimitId>``: a limit. A user's limits are one Query. ``value`` and
  ``progress`` are strings: a DynamoDB number would turn ``"9800.00"`` into ``9800``.
- ``USER#<userId>``, ``PARKED#<userLimitId>``: the events parked for that limit, one attribute
  ``E<position>`` (bytes) each, so a batch reads a limit and its parked events in one BatchGetItem.
- ``OWNER#<userLimitId>``, ``OWNER``: the user whose partition holds the limit. Read only for
  limits not found in the partition of the batch's events (new limits, orphans), so that a limit
  created again for another user moves to that user's partition.
- ``DEADLETTER``, ``<DeadLetter.id>``: a dead letter, put only if absent (kept once).
- Record bytes (parked events, dead letters) are zlib-compressed when that helps; beyond 32 KB
  they go to chunk items (``USER#<userId>``, ``CHUNK#PARKED#…`` and ``DEADLETTERCHUNK``), written
  and deleted in the same transaction: an item holds 400 KB, a Kinesis record up to 1 MiB.
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

Costs: about 2 keys read per touched limit (limit and parked item), 1 more per limit not found
(owner entry), one transaction per ~99 touched limits, one conditional UpdateItem (``asOf``) per
batch. ``stats``, ``all_limits``
and ``parked_events`` Scan the table (CLI use); the read API uses one Query and one GetItem.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from user_limits.domain.model import UserLimit
from user_limits.stores.base import StoreError
from user_limits.stores.dynamodb_items import (
    AS_OF,
    CHECKPOINTS,
    COUNTER_SHARDS,
    COUNTERS,
    DEAD_LETTERS,
    LIMIT,
    META,
    OWNER,
    PARKED,
    PARKED_PREFIX,
    USER,
    Location,
    checkpoint_order,
    chunk_count,
    dead_letter_chunk_key,
    dead_letter_item,
    item_dead_letter,
    item_key,
    item_limit,
    limit_item,
    number_attr,
    optional_int,
    pack,
    parked_chunk_key,
    parse_url,
    text_attr,
    unpack,
)
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


BATCH_GET_KEYS = 100  # DynamoDB's limit per BatchGetItem
TRANSACTION_ACTIONS = 100  # DynamoDB's limit per TransactWriteItems
TRANSACTION_BYTES = 3_500_000  # under the 4 MB request limit, with room for the expressions
RETRIES = 8  # our own retries of throttled/conflicting requests, on top of botocore's
ROUNDS = 5  # reads and projections of a batch whose limits other writers keep changing


def _client(location: Location) -> DynamoDBClient:
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
        raise StoreError(f"cannot use DynamoDB ({_where(location)}): {error}") from None


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


# -- the commit of one outcome


@dataclass(slots=True)
class _Unit:
    """Actions committed together or not at all: one limit with its parked events, conditional on
    the limit being as the snapshot had it; or a dead letter."""

    index: int  # the first batch record whose effect the unit carries
    actions: list[Action]
    key: str | None = None  # the limit's id; None for a dead letter
    applied: int = 0
    parked: int = 0  # events it parks
    updated_at: int | None = None
    size: int = 0


@dataclass(slots=True)
class _Progress:
    """What the transactions of one batch have committed so far."""

    applied: int = 0
    skipped: int = 0
    ignored: int = 0
    parked: int = 0
    dead_lettered: int = 0
    newest: int | None = None
    committed_any: bool = False

    def counts(self) -> Counts:
        return Counts(self.applied, self.skipped, self.ignored, self.parked, self.dead_lettered)


NEW_ITEM = "attribute_not_exists(PK)"


def _expected(position: int) -> dict[str, Any]:
    """The condition that a limit is still at the snapshot's ``position``."""
    return {
        "ConditionExpression": "lastSequenceNumber = :expected",
        "ExpressionAttributeValues": {":expected": number_attr(position)},
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
        snapshot, homes = self._snapshot(keys)
        outcome = project(snapshot)
        progress = _Progress()
        pending: set[str] | None = None  # the limits still to commit; None: the whole outcome
        for _ in range(ROUNDS):
            conflicts = self._commit(keys, outcome, pending, progress, homes)
            if not conflicts:
                break
            # Another writer changed these limits since they were read: read them again and
            # project the batch again (projection is pure; the other limits come out the same).
            fresh, fresh_homes = self._snapshot({key: keys[key] for key in conflicts})
            for key in conflicts:
                _replace(snapshot.states, key, fresh.states.get(key))
                _replace(snapshot.parked, key, fresh.parked.get(key))
                _replace(homes, key, fresh_homes.get(key))
            outcome = project(snapshot)
            pending = set(conflicts)
        else:
            error = RuntimeError(f"limits changing under {ROUNDS} attempts")
            raise CommitError(min(conflicts.values()), error, progress.counts())
        try:
            if progress.newest is not None:
                self._conditional_max(item_key(META, AS_OF), "asOf", number_attr(progress.newest))
            if outcome.checkpoint is not None:
                self._store_checkpoint(outcome.checkpoint)
        except Exception as error:
            # Every record's effect is committed; the next batch moves these forward again.
            raise CommitError(outcome.size, error, progress.counts()) from error
        return outcome

    def _snapshot(self, keys: Mapping[str, str]) -> tuple[Snapshot[UserLimit], dict[str, str]]:
        """The touched limits and their parked events, and the user whose partition holds each limit."""
        snapshot: Snapshot[UserLimit] = Snapshot()
        homes: dict[str, str] = {}
        wanted: list[Item] = []
        for limit_id, user_id in keys.items():
            wanted.append(item_key(USER + user_id, LIMIT + limit_id))
            wanted.append(item_key(USER + user_id, PARKED + limit_id))
        parked_items = []
        for item in self._batch_get(wanted):
            if item["SK"]["S"].startswith(LIMIT):
                self._found(snapshot, homes, item)
            else:
                parked_items.append(item)
        snapshot.parked = {key: events for key, events in self._parked_of(parked_items).items() if events}
        # A limit not in the partition of this batch's events may be in another user's: its creation
        # for another user moves it (the newer creation sets every field).
        missing = [key for key in keys if key not in snapshot.states]
        if missing:
            owners = self._batch_get([item_key(OWNER + key, OWNER) for key in missing])
            elsewhere = [(item["userId"]["S"], item["PK"]["S"].removeprefix(OWNER)) for item in owners]
            wanted = [item_key(USER + user, LIMIT + key) for user, key in elsewhere if user != keys[key]]
            for item in self._batch_get(wanted):
                self._found(snapshot, homes, item)
        return snapshot, homes

    @staticmethod
    def _found(snapshot: Snapshot[UserLimit], homes: dict[str, str], item: Mapping[str, Any]) -> None:
        limit = item_limit(item)
        snapshot.states[limit.user_limit_id] = limit
        homes[limit.user_limit_id] = item["PK"]["S"].removeprefix(USER)

    def _parked_of(self, items: Sequence[Mapping[str, Any]]) -> dict[str, list[ParkedEvent]]:
        """The parked events of PARKED# items, their chunks read."""
        found: list[tuple[str, str, int, bytes]] = []
        for item in items:
            user, key = item["PK"]["S"].removeprefix(USER), item["SK"]["S"].removeprefix(PARKED)
            for name, value in item.items():
                if name.startswith(PARKED_PREFIX) and name[1:].isdigit():
                    found.append((user, key, int(name[1:]), bytes(value["B"])))
        wanted = [parked_chunk_key(u, k, p, n) for u, k, p, v in found for n in range(chunk_count(v))]
        chunks = self._chunks(wanted)
        parked: dict[str, list[ParkedEvent]] = {}
        for user, key, position, value in found:
            parts = [chunks[parked_chunk_key(user, key, position, n)["SK"]["S"]] for n in range(chunk_count(value))]
            parked.setdefault(key, []).append(ParkedEvent(key, position, unpack(value, parts)))
        for events in parked.values():
            events.sort()
        return parked

    def _chunks(self, keys: Sequence[Item]) -> dict[str, bytes]:
        """Chunk items by sort key; a missing one is an error (chunks are written with their item)."""
        chunks = {item["SK"]["S"]: bytes(item["d"]["B"]) for item in self._batch_get(keys)}
        if len(chunks) < len(keys):
            raise StoreError(f"DynamoDB table {self.table}: {len(keys) - len(chunks)} chunks of stored records missing")
        return chunks

    def _batch_get(self, keys: Sequence[Item]) -> list[Mapping[str, Any]]:
        items: list[Mapping[str, Any]] = []
        for start in range(0, len(keys), BATCH_GET_KEYS):
            pending: Any = {self.table: {"Keys": keys[start : start + BATCH_GET_KEYS], "ConsistentRead": True}}
            attempt = 0
            while pending:
                response = self._client.batch_get_item(RequestItems=pending)
                items.extend(response.get("Responses", {}).get(self.table, []))
                pending = response.get("UnprocessedKeys") or None
                if pending:
                    attempt += 1
                    if attempt > RETRIES:
                        raise StoreError(f"DynamoDB table {self.table}: reads still throttled after {RETRIES} retries")
                    _backoff(attempt)
        return items

    def _units(
        self, keys: Mapping[str, str], outcome: Outcome[UserLimit], pending: set[str] | None, homes: Mapping[str, str]
    ) -> list[_Unit]:
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
            unit = _Unit(min([first, *indexes]), [], key, size=200, parked=len(parked_set.get(key, ())))
            unit.actions.extend(self._limit_actions(key, outcome.states.get(key), expected, homes.get(key, keys[key])))
            limit = outcome.states.get(key)
            if limit is not None:
                unit.applied = outcome.applied_by_key.get(key, 0)
                unit.updated_at = limit.updated_at
                unit.size += 600 * len(unit.actions)
            partition = keys[key]
            names: dict[str, str] = {}
            values: dict[str, AttributeValueTypeDef] = {}
            sets, removes = [], []
            for n, (_, event) in enumerate(parked_set.get(key, ())):
                value, chunks = pack(event.data)
                names[f"#s{n}"] = f"{PARKED_PREFIX}{event.position}"
                values[f":s{n}"] = {"B": value}
                sets.append(f"#s{n} = :s{n}")
                for c, chunk in enumerate(chunks):
                    chunk_item = {**parked_chunk_key(partition, key, event.position, c), "d": {"B": chunk}}
                    unit.actions.append({"Put": {"TableName": table, "Item": chunk_item}})
                unit.size += len(value) + sum(map(len, chunks)) + 100
            for n, (_, event) in enumerate(parked_removed.get(key, ())):
                names[f"#r{n}"] = f"{PARKED_PREFIX}{event.position}"
                removes.append(f"#r{n}")
                for c in range(len(pack(event.data)[1])):
                    chunk_key = parked_chunk_key(partition, key, event.position, c)
                    unit.actions.append({"Delete": {"TableName": table, "Key": chunk_key}})
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
                    "Key": item_key(USER + partition, PARKED + key),
                    "UpdateExpression": expression,
                    "ExpressionAttributeNames": names,
                }
                if values:
                    update["ExpressionAttributeValues"] = values
                unit.actions.append({"Update": update})
            units.append(unit)
        if pending is None:
            stored_at = time.time_ns()
            seen: set[str] = set()
            for index, letter in outcome.dead_letters:
                if letter.id in seen:  # one transaction may not touch an item twice
                    continue
                seen.add(letter.id)
                value, chunks = pack(letter.data)
                item = dead_letter_item(letter, index, stored_at, value)
                unit = _Unit(index, [{"Put": {"TableName": table, "Item": item, "ConditionExpression": NEW_ITEM}}])
                for c, chunk in enumerate(chunks):
                    chunk_item = {**dead_letter_chunk_key(letter.id, c), "d": {"B": chunk}}
                    unit.actions.append({"Put": {"TableName": table, "Item": chunk_item}})
                unit.size = len(value) + sum(map(len, chunks)) + len(letter.reason) + 600
                units.append(unit)
        units.sort(key=lambda unit: unit.index)
        return units

    def _limit_actions(self, key: str, limit: UserLimit | None, expected: int | None, home: str) -> list[Action]:
        """The write of a limit, conditional on it being as read; a ConditionCheck when only its
        parked events change. ``home``: the user whose partition holds the stored limit."""
        table = self.table
        if limit is None:
            if expected is None:
                check: Any = {"TableName": table, "Key": item_key(OWNER + key, OWNER), "ConditionExpression": NEW_ITEM}
            else:
                check = {"TableName": table, "Key": item_key(USER + home, LIMIT + key), **_expected(expected)}
            return [{"ConditionCheck": check}]
        put: Any = {"TableName": table, "Item": limit_item(limit)}
        owner: Any = {"TableName": table, "Item": {**item_key(OWNER + key, OWNER), "userId": text_attr(limit.user_id)}}
        if expected is None:  # a new limit, and its owner entry
            put["ConditionExpression"] = owner["ConditionExpression"] = NEW_ITEM
            return [{"Put": put}, {"Put": owner}]
        if limit.user_id == home:
            put.update(_expected(expected))
            return [{"Put": put}]
        # Created again for another user: the limit moves to that user's partition.
        delete: Any = {"TableName": table, "Key": item_key(USER + home, LIMIT + key), **_expected(expected)}
        return [{"Delete": delete}, {"Put": put}, {"Put": owner}]

    def _commit(
        self,
        keys: Mapping[str, str],
        outcome: Outcome[UserLimit],
        pending: set[str] | None,
        progress: _Progress,
        homes: Mapping[str, str],
    ) -> dict[str, int]:
        """Commit the outcome (of the ``pending`` limits) in transactions, in record order; returns
        the limits another writer changed since they were read, with their first record's index."""
        groups: list[list[_Unit]] = []
        actions = size = 0
        for unit in self._units(keys, outcome, pending, homes):
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
                raise CommitError(first, error, progress.counts()) from error
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
                    kept = _without(units, failed, conflicts)
                    # A dead letter already kept counts as kept.
                    kept_ids = {id(unit) for unit in kept}
                    progress.dead_lettered += sum(unit.key is None and id(unit) not in kept_ids for unit in units)
                    units = kept
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
                progress.parked += unit.parked
                progress.dead_lettered += unit.key is None
                if unit.updated_at is not None and (progress.newest is None or unit.updated_at > progress.newest):
                    progress.newest = unit.updated_at
            return

    def _counters_action(self, applied: int, skipped: int, ignored: int) -> Action:
        return {
            "Update": {
                "TableName": self.table,
                "Key": item_key(META, f"{COUNTERS}{random.randrange(COUNTER_SHARDS)}"),
                # Placeholders: IGNORE is a reserved word.
                "UpdateExpression": "ADD #a :a, #s :s, #i :i",
                "ExpressionAttributeNames": {"#a": "applied", "#s": "skipped", "#i": "ignored"},
                "ExpressionAttributeValues": {
                    ":a": number_attr(applied),
                    ":s": number_attr(skipped),
                    ":i": number_attr(ignored),
                },
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
            item_key(CHECKPOINTS, f"{checkpoint.stream}|{checkpoint.shard_id}"),
            "orderKey",
            text_attr(checkpoint_order(checkpoint)),
            {
                "sequenceNumber": text_attr(checkpoint.sequence_number),
                "subSequenceNumber": number_attr(checkpoint.sub_sequence_number),
            },
        )

    def checkpoint(self, stream: str, shard_id: str) -> Checkpoint | None:
        item = self._get(item_key(CHECKPOINTS, f"{stream}|{shard_id}"))
        if item is None:
            return None
        return Checkpoint(stream, shard_id, item["sequenceNumber"]["S"], int(item["subSequenceNumber"]["N"]))

    # -- read side

    def _get(self, key: Item) -> Mapping[str, Any] | None:
        return self._client.get_item(TableName=self.table, Key=key, ConsistentRead=True).get("Item")

    def _query(self, pk: str, prefix: str | None = None, select_count: bool = False) -> Iterator[Mapping[str, Any]]:
        request: Any = {
            "TableName": self.table,
            "ConsistentRead": True,
            "ExpressionAttributeValues": {":pk": text_attr(pk)},
        }
        request["KeyConditionExpression"] = "PK = :pk"
        if prefix is not None:
            request["KeyConditionExpression"] += " AND begins_with(SK, :prefix)"
            request["ExpressionAttributeValues"][":prefix"] = text_attr(prefix)
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
            "ExpressionAttributeValues": {":prefix": text_attr(prefix)},
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
        item = self._get(item_key(USER + user_id, LIMIT + user_limit_id))
        return None if item is None else item_limit(item)

    def all_limits(self) -> Iterator[UserLimit]:
        limits = [item_limit(item) for item in self._scan(LIMIT)]
        limits.sort(key=lambda limit: limit.user_limit_id)
        return iter(limits)

    def parked_events(self) -> list[ParkedEvent]:
        parked = self._parked_of(list(self._scan(PARKED)))
        return sorted(event for events in parked.values() for event in events)

    def dead_letters(self) -> list[DeadLetter]:
        items = sorted(
            self._query(DEAD_LETTERS), key=lambda item: (int(item["storedAt"]["N"]), int(item["batchIndex"]["N"]))
        )
        values = [bytes(item["data"]["B"]) for item in items]
        wanted = [
            dead_letter_chunk_key(item["SK"]["S"], n)
            for item, value in zip(items, values, strict=True)
            for n in range(chunk_count(value))
        ]
        chunks = self._chunks(wanted)
        letters = []
        for item, value in zip(items, values, strict=True):
            parts = [chunks[dead_letter_chunk_key(item["SK"]["S"], n)["SK"]["S"]] for n in range(chunk_count(value))]
            letters.append(item_dead_letter(item, unpack(value, parts)))
        return letters

    def stats(self) -> Counts:
        counts = Counts()
        for item in self._query(META, COUNTERS):
            counts.applied += optional_int(item, "applied") or 0
            counts.skipped += optional_int(item, "skipped") or 0
            counts.ignored += optional_int(item, "ignored") or 0
        counts.parked = sum(
            1 for item in self._scan(PARKED) for name in item if name.startswith(PARKED_PREFIX) and name[1:].isdigit()
        )
        counts.dead_lettered = sum(int(page["Count"]) for page in self._query(DEAD_LETTERS, select_count=True))
        return counts

    def as_of(self) -> int | None:
        item = self._get(item_key(META, AS_OF))
        return None if item is None else optional_int(item, "asOf")

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
