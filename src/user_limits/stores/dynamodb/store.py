"""The DynamoDB store: reads a batch, commits its plan (:mod:`.plan`) in transactions, retries conflicts.

The table's items are described in :mod:`.layout`.

A batch is read with BatchGetItem (100 keys a request, consistent reads) and written with
TransactWriteItems (up to 100 actions and 4 MB each, a ClientRequestToken so botocore's retries
are idempotent); :mod:`.plan` cuts the outcome into steps that keep within those limits
and the expression limits. Each touched limit is one unit: its Put (or, when only its parked
events change, a ConditionCheck) is conditional on the limit being as the snapshot had it
(``attribute_not_exists`` or ``lastSequenceNumber = :expected``), and so is the one write of its
parked item (on its version), so no writer moves a limit backwards or applies an event twice.
When another writer got there first, that unit is dropped from the transaction, the rest is
retried, and the dropped limits are read again and the batch projected again for them (the
projection is pure), so concurrent writers of one stream end as one serial writer would,
counters included.

There is no transaction over a whole batch, so a failure part-way raises :class:`CommitError` with
the first record whose effect is not committed (units are committed in record order) and the
counts that were committed; re-delivering from there is harmless, the stored positions skip what
is already applied. Under failures and retries:

- ``applied`` and ``drifted`` are exact: each transaction ADDs those of exactly the units it commits.
- parked events, dead letters (put if absent), chunks (named by their digest), the checkpoint and
  ``asOf`` (conditional maximums) are idempotent; the checkpoint is written last.
- ``skipped`` and ``ignored`` are added by the batch's last transaction: exact when a batch commits
  in full; a batch that fails part-way adds none, and its re-delivered remainder counts its own
  records (events the failed attempt had already applied then count as skipped). A batch delivered
  again after it committed counts its records as skipped again, as every store does.

Costs: about 2 keys read per touched limit (limit and parked item), 1 more per limit not found
(owner entry), one transaction per ~99 touched limits, one conditional UpdateItem (``asOf``) per
batch. ``stats``, ``all_limits`` and ``parked_events`` Scan the table (CLI use); the read API uses
one Query and one GetItem.
"""

from __future__ import annotations

import contextlib
import random
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from botocore.exceptions import BotoCoreError, ClientError

from user_limits.domain.model import UserLimit
from user_limits.stores.base import StoreError, Totals
from user_limits.stores.dynamodb.client import RETRIES, backoff, connect, describe, error_code, where
from user_limits.stores.dynamodb.layout import (
    AS_OF,
    CHECKPOINTS,
    COUNTER_SHARDS,
    COUNTERS,
    DEAD_LETTERS,
    LAYOUT,
    LAYOUT_VERSION,
    LEGACY_PARKED_PREFIX,
    LIMIT,
    META,
    OWNER,
    PARKED,
    PARKED_SK,
    USER,
    checkpoint_order,
    checkpoint_sk,
    dead_letter_chunk_keys,
    item_dead_letter,
    item_key,
    item_limit,
    legacy_parked_chunk_keys,
    limit_chunk_keys,
    limit_texts_value,
    number_attr,
    optional_int,
    parked_chunk_keys,
    parked_key,
    parked_values,
    parse_url,
    text_attr,
    unpack,
)
from user_limits.stores.dynamodb.leases import LEASES, free_item, guard_check, item_lease, write_update
from user_limits.stores.dynamodb.plan import VERSION, Placement, Step, Stored, Unit, Writes, fit, transactions
from user_limits.stores.text import storable, unstored
from user_limits.stream.records import (
    Checkpoint,
    CommitError,
    Counts,
    DeadLetter,
    Lease,
    LeaseGuard,
    LeaseLost,
    Outcome,
    ParkedEvent,
    Snapshot,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef, TransactWriteItemTypeDef

    Item = dict[str, AttributeValueTypeDef]
    Action = TransactWriteItemTypeDef


BATCH_GET_KEYS = 100  # DynamoDB's limit per BatchGetItem
TRANSACTION_ACTIONS = 100  # DynamoDB's limit per TransactWriteItems
TRANSACTION_BYTES = 3_500_000  # under the 4 MB limit of a transaction's items, with room to spare
ROUNDS = 5  # reads and projections of a batch whose limits other writers keep changing


def initialize(url: str) -> str:
    """Create the table (on-demand billing) if it does not exist, wait until it is active, and bring
    its layout up to date (:meth:`DynamoDBStore.migrate`)."""
    location = parse_url(url)
    client = connect(location)
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
        done = f"created DynamoDB table {location.table} (on-demand, {where(location)})"
    except ClientError as error:
        if error_code(error) != "ResourceInUseException":
            raise StoreError(f"cannot create DynamoDB table {location.table}: {error}") from None
        done = f"DynamoDB table {location.table} already exists ({where(location)})"
    except BotoCoreError as error:
        raise StoreError(f"cannot reach DynamoDB ({where(location)}): {error}") from None
    try:
        client.get_waiter("table_exists").wait(TableName=location.table, WaiterConfig={"Delay": 1, "MaxAttempts": 300})
        describe(client, location, url)
    finally:
        client.close()
    store = DynamoDBStore(url, check_layout=False)
    try:
        migrated = store.migrate()
    except (ClientError, BotoCoreError, CommitError) as error:
        cause = error.cause if isinstance(error, CommitError) else error
        raise StoreError(f"cannot migrate DynamoDB table {location.table} (run init again): {cause}") from None
    finally:
        store.close()
    return f"{url}: {done}" + (f"; {migrated}" if migrated else "")


# -- the commit of one outcome


@dataclass(slots=True)
class _Committed:
    """What the transactions of one batch have committed so far."""

    applied: int = 0
    skipped: int = 0
    ignored: int = 0
    parked: int = 0
    dead_lettered: int = 0
    drifted: int = 0
    newest: int | None = None
    committed_any: bool = False

    def counts(self) -> Counts:
        return Counts(self.applied, self.skipped, self.ignored, self.parked, self.dead_lettered, self.drifted)


class DynamoDBStore:
    def __init__(self, url: str, check_layout: bool = True, read_only: bool = False) -> None:
        """``read_only``: opening writes nothing (a table without a layout item is not given one);
        DynamoDB has no read-only session, the store's role decides what may be written."""
        self.url = url
        self.read_only = read_only
        self.location = parse_url(url)
        self.table = self.location.table
        self._client = connect(self.location)
        self._writes = Writes(self.table)
        status = describe(self._client, self.location, url)
        if status not in ("ACTIVE", "UPDATING"):
            raise StoreError(f"DynamoDB table {self.table} is {status}: wait until it is ACTIVE")
        if check_layout:
            self._check_layout()

    def _layout(self) -> int:
        item = self._get(item_key(META, LAYOUT))
        if item is not None:
            return optional_int(item, "version") or 1
        # No layout item: a table of layout 1, or one made by other means than `init` (the SAM
        # template, Terraform) that nothing has written to yet. Every batch of layout 1 that changed
        # anything moved a counter or asOf, so a table with neither holds nothing to migrate.
        meta = [item_key(META, f"{COUNTERS}{shard}") for shard in range(COUNTER_SHARDS)]
        if self._batch_get([*meta, item_key(META, AS_OF)]):
            return 1
        if self.read_only:
            return LAYOUT_VERSION
        # Say so before the first batch writes a counter. A role that may not write (the read API's)
        # leaves it to the projector, which opens the table before it writes anything.
        with contextlib.suppress(ClientError):
            self._client.put_item(
                TableName=self.table,
                Item={**item_key(META, LAYOUT), "version": number_attr(LAYOUT_VERSION)},
                ConditionExpression="attribute_not_exists(PK)",
            )
        return LAYOUT_VERSION

    def _check_layout(self) -> None:
        try:
            layout = self._layout()
        except (ClientError, BotoCoreError) as error:
            raise StoreError(f"cannot open DynamoDB table {self.table}: {error}") from None
        if layout < LAYOUT_VERSION:
            raise StoreError(
                f"DynamoDB table {self.table} has layout {layout}, older than this version of user-limits "
                f"({LAYOUT_VERSION}): run `user-limits init --store {self.url}`"
            )
        if layout > LAYOUT_VERSION:
            raise StoreError(
                f"DynamoDB table {self.table} has layout {layout}, newer than this version of user-limits "
                f"({LAYOUT_VERSION}): upgrade user-limits"
            )

    # -- write side

    def apply_batch(
        self, keys: Mapping[str, str], project: Callable[[Snapshot[UserLimit]], Outcome[UserLimit]]
    ) -> Outcome[UserLimit]:
        snapshot, stored = self._snapshot(keys)
        outcome = project(snapshot)
        placement = fit(outcome, stored)
        committed = _Committed()
        pending: set[str] | None = None  # the limits still to commit; None: the whole outcome
        for _ in range(ROUNDS):
            conflicts = self._commit(keys, outcome, pending, committed, stored, placement)
            if not conflicts:
                break
            # Another writer changed these limits since they were read: read them again and
            # project the batch again (projection is pure; the other limits come out the same).
            fresh, fresh_stored = self._snapshot({key: keys[key] for key in conflicts})
            for key in conflicts:
                _replace(snapshot.states, key, fresh.states.get(key))
                _replace(snapshot.parked, key, fresh.parked.get(key))
                _replace(stored, key, fresh_stored.get(key))
            outcome = project(snapshot)
            placement = fit(outcome, stored)
            pending = set(conflicts)
        else:
            error = RuntimeError(f"limits changing under {ROUNDS} attempts")
            raise CommitError(min(conflicts.values()), error, committed.counts())
        try:
            if committed.newest is not None:
                self._conditional_max(item_key(META, AS_OF), "asOf", number_attr(committed.newest))
            if outcome.checkpoint is not None:
                self._store_checkpoint(outcome.checkpoint)
        except Exception as error:
            # Every record's effect is committed; the next batch moves these forward again.
            raise CommitError(outcome.size, error, committed.counts()) from error
        return outcome

    def _snapshot(self, keys: Mapping[str, str]) -> tuple[Snapshot[UserLimit], dict[str, Stored]]:
        """The touched limits and their parked events, and where their items are."""
        snapshot: Snapshot[UserLimit] = Snapshot()
        wanted: list[Item] = []
        for limit_id, user_id in keys.items():
            wanted.append(item_key(USER + user_id, LIMIT + limit_id))
            wanted.append(parked_key(limit_id))
        limit_items: list[Mapping[str, Any]] = []
        parked_items: list[Mapping[str, Any]] = []
        for item in self._batch_get(wanted):
            (limit_items if item["SK"]["S"].startswith(LIMIT) else parked_items).append(item)
        # A limit not in the partition of this batch's events may be in another user's: its creation
        # for another user moves it (the newer creation sets every field).
        found = {item["SK"]["S"].removeprefix(LIMIT) for item in limit_items}
        missing = [key for key in keys if key not in found]
        if missing:
            owners = self._batch_get([item_key(OWNER + key, OWNER) for key in missing])
            elsewhere = [(item["userId"]["S"], item["PK"]["S"].removeprefix(OWNER)) for item in owners]
            limit_items += self._batch_get([item_key(USER + u, LIMIT + k) for u, k in elsewhere if u != keys[k]])
        stored: dict[str, Stored] = {}
        limits, parked = self._read(limit_items, parked_items)
        for item, limit in zip(limit_items, limits, strict=True):
            snapshot.states[limit.user_limit_id] = limit
            info = stored.setdefault(limit.user_limit_id, Stored())
            info.home = item["PK"]["S"].removeprefix(USER)
            info.texts = limit_texts_value(item)
        for item in parked_items:
            key = item["PK"]["S"].removeprefix(PARKED)
            info = stored.setdefault(key, Stored())
            info.parked = parked_values(item)
            info.parked_version = optional_int(item, VERSION) or 0
        snapshot.parked = {key: events for key, events in parked.items() if events}
        return snapshot, stored

    def _read(
        self, limit_items: Sequence[Mapping[str, Any]], parked_items: Sequence[Mapping[str, Any]]
    ) -> tuple[list[UserLimit], dict[str, list[ParkedEvent]]]:
        """The limits and parked events of these items, their chunks read (one BatchGetItem for all)."""
        wanted = [key for item in limit_items for key in _limit_chunks(item)]
        found: list[tuple[str, int, bytes]] = []
        for item in parked_items:
            key = item["PK"]["S"].removeprefix(PARKED)
            for position, value in parked_values(item).items():
                found.append((key, position, value))
                wanted += parked_chunk_keys(key, position, value)
        chunks = self._chunks(wanted)
        limits = []
        for item in limit_items:
            limits.append(item_limit(item, [chunks[_pk_sk(key)] for key in _limit_chunks(item)]))
        parked: dict[str, list[ParkedEvent]] = {}
        for key, position, value in found:
            parts = [chunks[_pk_sk(chunk)] for chunk in parked_chunk_keys(key, position, value)]
            parked.setdefault(key, []).append(ParkedEvent(key, position, unpack(value, parts)))
        for events in parked.values():
            events.sort()
        return limits, parked

    def _chunks(self, keys: Sequence[Item]) -> dict[tuple[str, str], bytes]:
        """Chunk items by key; a missing one is an error (chunks are written before their item)."""
        chunks = {(item["PK"]["S"], item["SK"]["S"]): bytes(item["d"]["B"]) for item in self._batch_get(keys)}
        if len(chunks) < len({_pk_sk(key) for key in keys}):
            raise StoreError(f"DynamoDB table {self.table}: {len(keys) - len(chunks)} chunks of stored values missing")
        return chunks

    def _batch_get(self, keys: Sequence[Item]) -> list[Mapping[str, Any]]:
        items: list[Mapping[str, Any]] = []
        unique = list({_pk_sk(key): key for key in keys}.values())  # BatchGetItem refuses a key asked twice
        for start in range(0, len(unique), BATCH_GET_KEYS):
            pending: Any = {self.table: {"Keys": unique[start : start + BATCH_GET_KEYS], "ConsistentRead": True}}
            attempt = 0
            while pending:
                response = self._client.batch_get_item(RequestItems=pending)
                got = response.get("Responses", {}).get(self.table, [])
                items.extend(got)
                pending = response.get("UnprocessedKeys") or None
                if pending:
                    # Partial answers (16 MB a response) make progress; only answers without any count.
                    attempt = 0 if got else attempt + 1
                    if attempt > RETRIES:
                        raise StoreError(f"DynamoDB table {self.table}: reads still throttled after {RETRIES} retries")
                    if attempt:
                        backoff(attempt)
        return items

    def _commit(
        self,
        keys: Mapping[str, str],
        outcome: Outcome[UserLimit],
        pending: set[str] | None,
        committed: _Committed,
        stored: Mapping[str, Stored],
        placement: Placement,
    ) -> dict[str, int]:
        """Commit the outcome (of the ``pending`` limits) in transactions, in record order; returns
        the limits another writer changed since they were read, with their first record's index."""
        units = self._writes.units(keys, outcome, pending, stored, placement, time.time_ns())
        return self._run(units, outcome, committed)

    def _run(self, units: Sequence[Unit], outcome: Outcome[UserLimit], committed: _Committed) -> dict[str, int]:
        # One action of each transaction is kept for the counters, one more for a lease guard.
        guarded = outcome.checkpoint is not None and outcome.checkpoint.lease is not None
        groups = transactions(units, TRANSACTION_ACTIONS - 1 - guarded, TRANSACTION_BYTES)
        conflicts: dict[str, int] = {}
        dropped: set[int] = set()  # id() of the units none of whose remaining steps are written
        for number, group in enumerate(groups):
            steps = [(unit, step) for unit, step in group if id(unit) not in dropped]
            try:
                self._transact(outcome, steps, committed, conflicts, dropped, last=number == len(groups) - 1)
            except Exception as error:
                remaining = [unit.index for later in groups[number:] for unit, _ in later if id(unit) not in dropped]
                remaining += conflicts.values()
                first = min(remaining, default=outcome.size if committed.committed_any else 0)
                raise CommitError(first, error, committed.counts()) from error
        return conflicts

    def _transact(
        self,
        outcome: Outcome[UserLimit],
        steps: list[tuple[Unit, Step]],
        committed: _Committed,
        conflicts: dict[str, int],
        dropped: set[int],
        last: bool,
    ) -> None:
        """One TransactWriteItems, retried without the units whose conditions failed: a limit
        changed since it was read (into ``conflicts``), a dead letter already kept."""
        counts = outcome.counts
        attempt = 0
        while True:
            applied = sum(step.applied for _, step in steps)
            drifted = sum(step.drifted for _, step in steps)
            # The batch's last transaction brings skipped and ignored up to this outcome's.
            skipped, ignored = (
                (counts.skipped - committed.skipped, counts.ignored - committed.ignored) if last else (0, 0)
            )
            actions = [action for _, step in steps for action in step.actions]
            if applied or skipped or ignored:
                actions.append(self._counters_action(applied, skipped, ignored, drifted))
            if not actions:
                return
            checkpoint = outcome.checkpoint
            if checkpoint is not None and checkpoint.lease is not None:
                # Last, so that the steps' indexes in CancellationReasons stay theirs.
                actions.append(
                    cast("Any", guard_check(self.table, checkpoint.stream, checkpoint.shard_id, checkpoint.lease))
                )
            try:
                self._client.transact_write_items(TransactItems=actions, ClientRequestToken=uuid.uuid4().hex)
            except ClientError as error:
                if error_code(error) != "TransactionCanceledException":
                    raise
                reasons = error.response.get("CancellationReasons") or []
                failed = {n for n, reason in enumerate(reasons) if reason.get("Code") == "ConditionalCheckFailed"}
                if checkpoint is not None and checkpoint.lease is not None and len(actions) - 1 in failed:
                    raise LeaseLost(checkpoint.stream, checkpoint.shard_id, checkpoint.lease) from None
                if failed:
                    steps = _without(steps, failed, conflicts, dropped, committed)
                    continue
                # Conflicts with another transaction, or throttling: back off and try again.
                attempt += 1
                if attempt > RETRIES:
                    raise
                backoff(attempt)
                continue
            committed.committed_any = True
            committed.applied += applied
            committed.drifted += drifted
            committed.skipped += skipped
            committed.ignored += ignored
            for _, step in steps:
                committed.parked += step.parked
                committed.dead_lettered += step.dead_letters
                if step.updated_at is not None and (committed.newest is None or step.updated_at > committed.newest):
                    committed.newest = step.updated_at
            return

    def _counters_action(self, applied: int, skipped: int, ignored: int, drifted: int) -> Action:
        return {
            "Update": {
                "TableName": self.table,
                "Key": item_key(META, f"{COUNTERS}{random.randrange(COUNTER_SHARDS)}"),
                # Placeholders: IGNORE is a reserved word.
                "UpdateExpression": "ADD #a :a, #s :s, #i :i, #d :d",
                "ExpressionAttributeNames": {"#a": "applied", "#s": "skipped", "#i": "ignored", "#d": "drifted"},
                "ExpressionAttributeValues": {
                    ":a": number_attr(applied),
                    ":s": number_attr(skipped),
                    ":i": number_attr(ignored),
                    ":d": number_attr(drifted),
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
            if error_code(error) != "ConditionalCheckFailedException":
                raise

    def _store_checkpoint(self, checkpoint: Checkpoint) -> None:
        if checkpoint.lease is not None:
            self._store_guarded_checkpoint(checkpoint, checkpoint.lease)
            return
        sk = checkpoint_sk(checkpoint.stream, checkpoint.shard_id)
        extra: Item = {
            "sequenceNumber": text_attr(checkpoint.sequence_number),
            "subSequenceNumber": number_attr(checkpoint.sub_sequence_number),
        }
        if "|" not in sk:  # a digest: the stream and shard are kept in the item, to be read back
            extra["streamName"] = text_attr(storable(checkpoint.stream))
            extra["shardName"] = text_attr(storable(checkpoint.shard_id))
        self._conditional_max(item_key(CHECKPOINTS, sk), "orderKey", text_attr(checkpoint_order(checkpoint)), extra)

    def load_state(self, counters: Mapping[str, int], checkpoints: Sequence[Checkpoint], as_of: int | None) -> None:
        """The counters in one counter item (the others emptied) and asOf, in one transaction; the
        items are those the batches write. DynamoDB keeps a counter of any name."""
        table = self.table
        first: Item = {**item_key(META, f"{COUNTERS}0")}
        first.update({name: number_attr(value) for name, value in counters.items()})
        actions: list[Action] = [{"Put": {"TableName": table, "Item": first}}]
        actions += [
            {"Delete": {"TableName": table, "Key": item_key(META, f"{COUNTERS}{shard}")}}
            for shard in range(1, COUNTER_SHARDS)
        ]
        if as_of is None:
            actions.append({"Delete": {"TableName": table, "Key": item_key(META, AS_OF)}})
        else:
            actions.append({"Put": {"TableName": table, "Item": {**item_key(META, AS_OF), "asOf": number_attr(as_of)}}})
        try:
            self._client.transact_write_items(TransactItems=actions, ClientRequestToken=uuid.uuid4().hex)
            for checkpoint in checkpoints:
                self._store_checkpoint(checkpoint)
        except (ClientError, BotoCoreError) as error:
            raise StoreError(f"DynamoDB table {table}: {error}") from None

    def _store_guarded_checkpoint(self, checkpoint: Checkpoint, guard: LeaseGuard) -> None:
        """The checkpoint and the check of its lease in one transaction: a newer stored checkpoint
        wins, a lease lost refuses it (LeaseLost)."""
        sk = checkpoint_sk(checkpoint.stream, checkpoint.shard_id)
        values: Item = {
            ":v": text_attr(checkpoint_order(checkpoint)),
            ":s": text_attr(checkpoint.sequence_number),
            ":n": number_attr(checkpoint.sub_sequence_number),
        }
        expression = "SET orderKey = :v, sequenceNumber = :s, subSequenceNumber = :n"
        if "|" not in sk:  # a digest: the stream and shard are kept in the item, as _store_checkpoint does
            values[":stream"] = text_attr(storable(checkpoint.stream))
            values[":shard"] = text_attr(storable(checkpoint.shard_id))
            expression += ", streamName = :stream, shardName = :shard"
        update = {
            "TableName": self.table,
            "Key": item_key(CHECKPOINTS, sk),
            "UpdateExpression": expression,
            "ConditionExpression": "attribute_not_exists(orderKey) OR orderKey < :v",
            "ExpressionAttributeValues": values,
        }
        actions: Any = [guard_check(self.table, checkpoint.stream, checkpoint.shard_id, guard), {"Update": update}]
        try:
            self._client.transact_write_items(TransactItems=actions, ClientRequestToken=uuid.uuid4().hex)
        except ClientError as error:
            if error_code(error) != "TransactionCanceledException":
                raise
            codes = [reason.get("Code") for reason in error.response.get("CancellationReasons") or []]
            if codes[:1] == ["ConditionalCheckFailed"]:
                raise LeaseLost(checkpoint.stream, checkpoint.shard_id, guard) from None
            if codes[1:2] != ["ConditionalCheckFailed"]:
                raise  # a conflict or throttling: the batch is read again from the stored checkpoint

    # -- leases (kinesis.leases.LeaseTable)

    def leases(self, stream: str | None = None) -> list[Lease]:
        found = [item_lease(item) for item in self._query(LEASES)]
        return sorted(lease for lease in found if stream is None or lease.stream == stream)

    def create_lease(self, stream: str, shard_id: str) -> None:
        try:
            self._client.put_item(
                TableName=self.table, Item=free_item(stream, shard_id), ConditionExpression="attribute_not_exists(PK)"
            )
        except ClientError as error:
            if error_code(error) != "ConditionalCheckFailedException":
                raise

    def write_lease(self, expected: Lease, new: Lease) -> bool:
        try:
            self._client.update_item(**write_update(self.table, expected, new))
        except ClientError as error:
            if error_code(error) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def checkpoint(self, stream: str, shard_id: str) -> Checkpoint | None:
        item = self._get(item_key(CHECKPOINTS, checkpoint_sk(stream, shard_id)))
        if item is None:
            return None
        return Checkpoint(stream, shard_id, item["sequenceNumber"]["S"], int(item["subSequenceNumber"]["N"]))

    # -- the layout

    def migrate(self) -> str:
        """Bring the table to this version's layout; '' when it is already. Safe to run again (a
        migration cut short goes on where it stopped); stop the consumers of the older version
        first, which would go on writing its layout.

        Layout 1 to 2: the events parked under ``USER#<userId>``, ``PARKED#<userLimitId>`` (the
        userId of the event) move to ``PARKED#<userLimitId>``, where the limit's creation finds them
        whoever's they are. Those whose limit already exists are applied with its next event."""
        layout = self._layout()
        if layout >= LAYOUT_VERSION:
            return ""
        legacy = [item for item in self._scan(LEGACY_PARKED_PREFIX) if item["PK"]["S"].startswith(USER)]
        found: list[tuple[Mapping[str, Any], str, int, bytes]] = []
        wanted: list[Item] = []
        for item in legacy:
            user, key = item["PK"]["S"].removeprefix(USER), item["SK"]["S"].removeprefix(LEGACY_PARKED_PREFIX)
            for position, value in parked_values(item).items():
                found.append((item, key, position, value))
                wanted += legacy_parked_chunk_keys(user, key, position, value)
        chunks = self._chunks(wanted)
        events: dict[str, dict[int, ParkedEvent]] = {}
        for item, key, position, value in found:
            user = item["PK"]["S"].removeprefix(USER)
            parts = [chunks[_pk_sk(chunk)] for chunk in legacy_parked_chunk_keys(user, key, position, value)]
            # The same position parked under two users is the same event kept once (rule 7).
            events.setdefault(key, {}).setdefault(position, ParkedEvent(key, position, unpack(value, parts)))
        _, stored = self._snapshot({key: "" for key in events})  # what a migration cut short moved already
        outcome: Outcome[UserLimit] = Outcome()
        for key, waiting in events.items():
            moved = stored.get(key, Stored()).parked
            outcome.parked_added += [(0, event) for position, event in sorted(waiting.items()) if position not in moved]
        placement = fit(outcome, stored)
        units = []
        for key in events:
            unit = self._writes.parked_unit(key, stored.get(key) or Stored(), outcome, placement)
            for item in legacy:
                if item["SK"]["S"] == LEGACY_PARKED_PREFIX + key:
                    user = item["PK"]["S"].removeprefix(USER)
                    olds = [
                        chunk
                        for position, value in parked_values(item).items()
                        for chunk in legacy_parked_chunk_keys(user, key, position, value)
                    ]
                    unit.steps += self._writes.deletes([item_key(item["PK"]["S"], item["SK"]["S"]), *olds])
            units.append(unit)
        refused = [(index, letter) for _, index, letter in placement.refused]
        units += self._writes.dead_letter_units(refused, time.time_ns())
        conflicts = self._run(units, outcome, _Committed())
        if conflicts:
            raise StoreError(
                f"DynamoDB table {self.table}: parked events changed while they were moved: run init again"
            )
        self._client.put_item(
            TableName=self.table, Item={**item_key(META, LAYOUT), "version": number_attr(LAYOUT_VERSION)}
        )
        count = sum(len(waiting) for waiting in events.values())
        return f"layout {layout} to {LAYOUT_VERSION}: moved {count} parked events of {len(events)} limits"

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
        return self._read(list(self._query(USER + user_id, LIMIT)), [])[0]

    def user_limit(self, user_id: str, user_limit_id: str) -> UserLimit | None:
        item = self._get(item_key(USER + user_id, LIMIT + user_limit_id))
        return None if item is None else self._read([item], [])[0][0]

    def all_limits(self) -> Iterator[UserLimit]:
        limits = self._read(list(self._scan(LIMIT)), [])[0]
        limits.sort(key=lambda limit: limit.user_limit_id)
        return iter(limits)

    def drifted_limits(self) -> list[UserLimit]:
        # No index for so few limits: the scan all_limits makes, filtered.
        return [limit for limit in self.all_limits() if limit.drift_sequence_number is not None]

    def _parked_items(self) -> list[Mapping[str, Any]]:
        return [item for item in self._scan(PARKED_SK) if item["PK"]["S"].startswith(PARKED)]

    def parked_events(self) -> list[ParkedEvent]:
        parked = self._read([], self._parked_items())[1]
        return sorted(event for events in parked.values() for event in events)

    def dead_letters(self) -> list[DeadLetter]:
        items = sorted(
            self._query(DEAD_LETTERS), key=lambda item: (int(item["storedAt"]["N"]), int(item["batchIndex"]["N"]))
        )
        wanted: list[Item] = []
        for item in items:
            for value in _packed_of_letter(item):
                wanted += dead_letter_chunk_keys(value, item["SK"]["S"])
        chunks = self._chunks(wanted)
        letters = []
        for item in items:
            data, *texts = (
                [chunks[_pk_sk(key)] for key in dead_letter_chunk_keys(value, item["SK"]["S"])]
                for value in _packed_of_letter(item)
            )
            letters.append(item_dead_letter(item, unpack(bytes(item["data"]["B"]), data), *texts))
        return letters

    def stats(self) -> Totals:
        counts = Counts()  # the counter items are sharded: summed here
        for item in self._query(META, COUNTERS):
            counts.applied += optional_int(item, "applied") or 0
            counts.skipped += optional_int(item, "skipped") or 0
            counts.ignored += optional_int(item, "ignored") or 0
            counts.drifted += optional_int(item, "drifted") or 0
        waiting = sum(len(parked_values(item)) for item in self._parked_items())
        dead_letters = sum(int(page["Count"]) for page in self._query(DEAD_LETTERS, select_count=True))
        return Totals(counts.applied, counts.skipped, counts.ignored, waiting, dead_letters, counts.drifted)

    def as_of(self) -> int | None:
        item = self._get(item_key(META, AS_OF))
        return None if item is None else optional_int(item, "asOf")

    def counters(self) -> dict[str, int]:
        """Every number attribute of the counter items, summed by name (those stats reads, 0 if none)."""
        totals = dict.fromkeys(("applied", "skipped", "ignored"), 0)
        for item in self._query(META, COUNTERS):
            for name, value in item.items():
                if name not in ("PK", "SK") and "N" in value:
                    totals[name] = totals.get(name, 0) + int(value["N"])
        return totals

    def checkpoints(self) -> list[Checkpoint]:
        found = []
        for item in self._query(CHECKPOINTS):
            # The sort key is storable(stream)|storable(shard) (a Kinesis stream name has no '|'),
            # or a digest of it, and then the item holds them.
            stream, bar, shard_id = item["SK"]["S"].partition("|")
            if "streamName" in item and "shardName" in item:
                stream, shard_id = item["streamName"]["S"], item["shardName"]["S"]
            elif not bar:
                raise StoreError(
                    f"DynamoDB table {self.table}: a checkpoint's stream and shard are too long to read back "
                    f"(key {item['SK']['S']})"
                )
            sequence_number, sub = item["sequenceNumber"]["S"], int(item["subSequenceNumber"]["N"])
            found.append(Checkpoint(unstored(stream), unstored(shard_id), sequence_number, sub))
        return sorted(found)

    def ping(self) -> None:
        self._client.describe_table(TableName=self.table)

    def close(self) -> None:
        self._client.close()


def _without(
    steps: list[tuple[Unit, Step]],
    failed: set[int],
    conflicts: dict[str, int],
    dropped: set[int],
    committed: _Committed,
) -> list[tuple[Unit, Step]]:
    """The steps of the units none of whose actions (by position in the transaction) failed their
    condition. A failed limit is a conflict; a failed dead letter is one already kept."""
    position = 0
    for unit, step in steps:
        span = range(position, position + len(step.actions))
        position += len(step.actions)
        if failed.intersection(span) and id(unit) not in dropped:
            dropped.add(id(unit))
            if unit.key is not None:
                conflicts[unit.key] = unit.index
            else:
                committed.dead_lettered += unit.steps[unit.main].dead_letters
    return [(unit, step) for unit, step in steps if id(unit) not in dropped]


def _pk_sk(key: Mapping[str, Any]) -> tuple[str, str]:
    return key["PK"]["S"], key["SK"]["S"]


def _limit_chunks(item: Mapping[str, Any]) -> list[Item]:
    """The chunk items of a limit item's packed texts (none when they are in the item)."""
    texts = limit_texts_value(item)
    user, key = item["PK"]["S"].removeprefix(USER), item["SK"]["S"].removeprefix(LIMIT)
    return [] if texts is None else limit_chunk_keys(user, key, texts)


def _packed_of_letter(item: Mapping[str, Any]) -> list[bytes]:
    """A dead letter item's packed values: its data, and its texts when they are packed."""
    texts = item.get("texts")
    return [bytes(item["data"]["B"])] + ([] if texts is None else [bytes(texts["B"])])


def _replace(values: dict[str, Any], key: str, value: Any) -> None:
    if value is None:
        values.pop(key, None)
    else:
        values[key] = value
