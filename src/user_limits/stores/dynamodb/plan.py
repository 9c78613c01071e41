"""The DynamoDB store's plan of writes: an outcome as steps, and steps as transactions within DynamoDB's limits.

Pure (no client, no I/O). A *unit* is what one limit (or one dead letter) changes; it is a list of
*steps* written in order:

- chunk items first (content-addressed, see :mod:`.layout`): written ahead, even in an
  earlier transaction, they change nothing a stored item points to;
- then its *main* step, all or nothing: the limit's write, conditional on the limit being as the
  batch read it, and the one write of its parked item (an Update, a Put of the whole item or a
  Delete, whatever the number of events), conditional on the parked item's version as read;
- then the deletion of chunks nothing points to any more.

Steps are grouped into transactions in record order: at most ``actions`` actions (one is kept for
the counters), about ``budget`` bytes, and never two actions on one item. Every expression stays
small: an Update names at most ``PARKED_UPDATE`` attributes, far within DynamoDB's 4 KB and 300
operators; more changes than that rewrite the item, which is bounded below its 400 KB.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from user_limits.domain.model import UserLimit
from user_limits.stores.dynamodb.layout import (
    DEAD_LETTER_TEXTS,
    DEAD_LETTERS,
    LIMIT,
    OWNER,
    PARKED_INLINE,
    PARKED_ITEM,
    PARKED_PREFIX,
    USER,
    Packed,
    chunk_count,
    dead_letter_chunk_keys,
    dead_letter_item,
    dead_letter_key,
    dead_letter_sk,
    item_key,
    limit_chunk_keys,
    limit_item,
    number_attr,
    pack,
    parked_chunk_keys,
    parked_key,
    parked_size,
    text_attr,
    texts_size,
)
from user_limits.stream.records import DeadLetter, Outcome, ParkedEvent

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef, TransactWriteItemTypeDef

    Item = dict[str, AttributeValueTypeDef]
    Action = TransactWriteItemTypeDef

NEW_ITEM = "attribute_not_exists(PK)"
PARKED_UPDATE = 50  # attributes one Update of a parked item sets or removes; beyond, a Put of it
VERSION = "v"  # the parked item's version, moved on by every write of it


@dataclass(slots=True)
class Stored:
    """What the batch read for a limit, beyond the limit itself: where its items are."""

    home: str | None = None  # the user whose partition holds the limit; None: no limit
    texts: bytes | None = None  # the limit's packed brandId and currencyCode, naming their chunks
    parked: dict[int, bytes] = field(default_factory=dict)  # stored value of each parked event
    parked_version: int | None = None  # None: no parked item


@dataclass(slots=True, eq=False)
class Step:
    actions: list[Action]
    size: int
    items: set[tuple[str, str]] = field(default_factory=set)
    applied: int = 0
    drifted: int = 0
    parked: int = 0
    dead_letters: int = 0  # the batch's dead letters it keeps (a record twice in a batch is one item)
    updated_at: int | None = None

    def __post_init__(self) -> None:
        self.items = {_item_of(action) for action in self.actions}


@dataclass(slots=True, eq=False)
class Unit:
    index: int  # the first batch record whose effect the unit carries
    key: str | None  # the limit's id; None for a dead letter
    steps: list[Step]
    main: int = 0  # which step is the conditional one: those before it are chunks, after it deletions


def _item_of(action: Action) -> tuple[str, str]:
    body: Any = next(iter(action.values()))
    key = body.get("Key") or body["Item"]
    return key["PK"]["S"], key["SK"]["S"]


def _expected(position: int) -> dict[str, Any]:
    """The condition that a limit is still at the snapshot's ``position``."""
    return {
        "ConditionExpression": "lastSequenceNumber = :expected",
        "ExpressionAttributeValues": {":expected": number_attr(position)},
    }


# -- parked events that do not fit


@dataclass(slots=True)
class Placement:
    """How a batch's newly parked events are stored, and those refused (see :func:`fit`)."""

    packed: dict[tuple[str, int], Packed] = field(default_factory=dict)
    refused: list[tuple[str, int, DeadLetter]] = field(default_factory=list)  # (key, index, letter)


def fit(outcome: Outcome[UserLimit], stored: Mapping[str, Stored]) -> Placement:
    """How each newly parked event is stored: inline while its parked item is small, else as a
    pointer to chunks. An event for which even a pointer no longer fits (thousands of events
    waiting for one limit) is dead-lettered instead, here, so that the batch still commits: the
    outcome's dead letters and counts are changed to say so."""
    placement = Placement()
    sizes = {key: parked_size(info.parked) for key, info in stored.items()}
    kept: list[tuple[int, ParkedEvent]] = []
    for index, event in outcome.parked_added:
        size = sizes.get(event.key, parked_size({}))
        packed = pack(event.data)
        if size + len(packed.value) > PARKED_INLINE:
            packed = pack(event.data, inline=0)
        if size + len(packed.value) + 24 > PARKED_ITEM:
            reason = f"not parked: the DynamoDB item of the events waiting for limit {event.key!r} is full (400 KB)"
            letter = DeadLetter(reason, event.data)
            outcome.dead_letters.append((index, letter))
            outcome.counts.parked -= 1
            outcome.counts.dead_lettered += 1
            placement.refused.append((event.key, index, letter))
            continue
        sizes[event.key] = size + len(packed.value) + 24
        placement.packed[(event.key, event.position)] = packed
        kept.append((index, event))
    outcome.parked_added = kept
    return placement


# -- an outcome as units


class Writes:
    """Builds the units of an outcome for one table."""

    def __init__(self, table: str) -> None:
        self.table = table

    def units(
        self,
        keys: Mapping[str, str],
        outcome: Outcome[UserLimit],
        pending: set[str] | None,
        stored: Mapping[str, Stored],
        placement: Placement,
        stored_at: int,
    ) -> list[Unit]:
        """The units of the outcome (only of the ``pending`` limits, when given), in record order."""
        added: dict[str, list[ParkedEvent]] = {}
        removed: dict[str, list[ParkedEvent]] = {}
        indexes: dict[str, list[int]] = {}
        for index, event in outcome.parked_added:
            added.setdefault(event.key, []).append(event)
            indexes.setdefault(event.key, []).append(index)
        for index, event in outcome.parked_removed:
            removed.setdefault(event.key, []).append(event)
            indexes.setdefault(event.key, []).append(index)
        units: list[Unit] = []
        by_key: dict[str, Unit] = {}
        for key in {*outcome.states, *added, *removed}:
            if pending is not None and key not in pending:
                continue
            expected, first = outcome.touched[key]
            limit = outcome.states.get(key)
            unit = self._limit_unit(
                key,
                limit,
                expected,
                stored.get(key) or Stored(),
                keys[key],
                added.get(key, []),
                removed.get(key, []),
                placement.packed,
            )
            unit.index = min([first, *indexes.get(key, ())])
            if limit is not None:
                unit.steps[unit.main].applied = outcome.applied_by_key.get(key, 0)
                unit.steps[unit.main].drifted = outcome.drifted_by_key.get(key, 0)
            units.append(unit)
            by_key[key] = unit
        units += self._redrive_units(outcome, pending, by_key)
        if pending is None:
            letters = outcome.dead_letters
        else:  # a round for some limits only: the dead letters refused for them
            letters = [(index, letter) for key, index, letter in placement.refused if key in pending]
        kept: dict[str, Unit] = {}
        for index, letter in letters:
            sk = dead_letter_sk(letter)
            if sk in kept:  # one transaction may not touch an item twice
                kept[sk].steps[kept[sk].main].dead_letters += 1
                continue
            kept[sk] = self._dead_letter_unit(index, letter, stored_at)
            units.append(kept[sk])
        units.sort(key=lambda unit: unit.index)
        return units

    def _redrive_units(
        self, outcome: Outcome[UserLimit], pending: set[str] | None, by_key: Mapping[str, Unit]
    ) -> list[Unit]:
        """A redrive's dead letters: each one whose record now has an effect is deleted in the main
        step of that limit's unit (with the effect, or not at all); the others (ignored, skipped)
        in a unit of their own; those still failing get today's reason."""
        units: list[Unit] = []
        for index, key, letter_id in outcome.dead_letters_removed:
            delete: Action = {"Delete": {"TableName": self.table, "Key": dead_letter_key(letter_id)}}
            unit = None if key is None else by_key.get(key)
            if unit is not None:
                step = unit.steps[unit.main]
                step.actions.append(delete)
                step.items.add(_item_of(delete))
                step.size += 200
            elif pending is None or (key is not None and key in pending):
                # In a round for some limits only, the others' deletions are committed already.
                units.append(Unit(index, None, [Step([delete], 200)]))
        if pending is None:
            for index, letter in outcome.dead_letters_renewed:
                units.append(self._renewal_unit(index, letter))
        return units

    def _renewal_unit(self, index: int, letter: DeadLetter) -> Unit:
        """Today's reason on a kept dead letter: its text attributes set again (packed or not, as
        :func:`dead_letter_item` keeps them now), its data and place in the listing untouched; only
        if it is still kept (a concurrent redrive may have taken it)."""
        item, texts = dead_letter_item(letter, index, 0, pack(b""))
        names: dict[str, str] = {}
        values: dict[str, Any] = {}
        sets: list[str] = []
        removes: list[str] = []
        for n, name in enumerate(DEAD_LETTER_TEXTS):
            names[f"#t{n}"] = name
            if name in item:
                values[f":t{n}"] = item[name]
                sets.append(f"#t{n} = :t{n}")
            else:
                removes.append(f"#t{n}")
        expression = "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes) if removes else "")
        update: Any = {
            "TableName": self.table,
            "Key": item_key(DEAD_LETTERS, dead_letter_sk(letter)),
            "UpdateExpression": expression,
            "ConditionExpression": "attribute_exists(PK)",
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }
        before = [] if texts is None else self._chunk_puts(dead_letter_chunk_keys(texts.value, ""), texts.chunks)
        size = 600 + sum(len(str(value)) for value in values.values())
        return Unit(index, None, [*before, Step([{"Update": update}], size)], main=len(before))

    def _limit_unit(
        self,
        key: str,
        limit: UserLimit | None,
        expected: int | None,
        info: Stored,
        partition: str,
        added: Sequence[ParkedEvent],
        removed: Sequence[ParkedEvent],
        placed: Mapping[tuple[str, int], Packed],
    ) -> Unit:
        table = self.table
        home = info.home or partition
        before: list[Step] = []
        after: list[Step] = []
        main: list[Action] = []
        size = 200
        if limit is None:
            if expected is None:
                check: Any = {"TableName": table, "Key": item_key(OWNER + key, OWNER), "ConditionExpression": NEW_ITEM}
            else:
                check = {"TableName": table, "Key": item_key(USER + home, LIMIT + key), **_expected(expected)}
            main.append({"ConditionCheck": check})
        else:
            item, texts = limit_item(limit)
            main.extend(self._limit_writes(key, item, limit.user_id, expected, home))
            # At most 4 bytes a character.
            size += 600 * len(main) + 4 * (
                len(limit.brand_id) + len(limit.currency_code) + len(key) + len(limit.user_id)
            )
            old = info.texts if info.texts is not None and chunk_count(info.texts) else None
            if old is not None and texts is not None and home == limit.user_id and old == texts.value:
                old = None  # the same chunks: they stay
            elif texts is not None:
                before += self._chunk_puts(limit_chunk_keys(limit.user_id, key, texts.value), texts.chunks)
            if old is not None:
                after += self._chunk_deletes(limit_chunk_keys(home, key, old))
        parked, parked_bytes = self._parked_write(key, info, added, removed, placed)
        if parked is not None:
            main.append(parked)
            size += parked_bytes
        for event in added:
            packed = placed[(key, event.position)]
            before += self._chunk_puts(parked_chunk_keys(key, event.position, packed.value), packed.chunks)
        for event in removed:
            after += self._chunk_deletes(parked_chunk_keys(key, event.position, info.parked.get(event.position, b"")))
        step = Step(main, size, parked=len(added), updated_at=None if limit is None else limit.updated_at)
        return Unit(0, key, [*before, step, *after], main=len(before))

    def parked_unit(self, key: str, info: Stored, outcome: Outcome[UserLimit], placement: Placement) -> Unit:
        """The events of ``outcome.parked_added`` for ``key`` written into its parked item, whatever
        its limit (for a migration: the events were parked already, elsewhere)."""
        added = [event for _, event in outcome.parked_added if event.key == key]
        before: list[Step] = []
        for event in added:
            packed = placement.packed[(key, event.position)]
            before += self._chunk_puts(parked_chunk_keys(key, event.position, packed.value), packed.chunks)
        parked, size = self._parked_write(key, info, added, [], placement.packed)
        main = [] if parked is None else [Step([parked], size, parked=len(added))]
        return Unit(0, key, [*before, *main], main=len(before))

    def dead_letter_units(self, letters: Sequence[tuple[int, DeadLetter]], stored_at: int) -> list[Unit]:
        return [self._dead_letter_unit(index, letter, stored_at) for index, letter in letters]

    def deletes(self, keys: Sequence[Item]) -> list[Step]:
        return self._chunk_deletes(keys)

    def _limit_writes(self, key: str, item: Item, user_id: str, expected: int | None, home: str) -> list[Action]:
        """The write of a limit, conditional on it being as read. ``home``: the user whose
        partition holds the stored limit."""
        table = self.table
        put: Any = {"TableName": table, "Item": item}
        owner: Any = {"TableName": table, "Item": {**item_key(OWNER + key, OWNER), "userId": text_attr(user_id)}}
        if expected is None:  # a new limit, and its owner entry
            put["ConditionExpression"] = owner["ConditionExpression"] = NEW_ITEM
            return [{"Put": put}, {"Put": owner}]
        if user_id == home:
            put.update(_expected(expected))
            return [{"Put": put}]
        # Created again for another user: the limit moves to that user's partition.
        delete: Any = {"TableName": table, "Key": item_key(USER + home, LIMIT + key), **_expected(expected)}
        return [{"Delete": delete}, {"Put": put}, {"Put": owner}]

    def _parked_write(
        self,
        key: str,
        info: Stored,
        added: Sequence[ParkedEvent],
        removed: Sequence[ParkedEvent],
        placed: Mapping[tuple[str, int], Packed],
    ) -> tuple[Action | None, int]:
        """The one write of the limit's parked item, conditional on its version as read."""
        if not added and not removed:
            return None, 0
        table = self.table
        condition: dict[str, Any]
        if info.parked_version is None:
            condition = {"ConditionExpression": NEW_ITEM}
        elif not info.parked_version:  # an item without a version is at version 0
            condition = {"ConditionExpression": "attribute_not_exists(#v)", "ExpressionAttributeNames": {"#v": VERSION}}
        else:
            condition = {
                "ConditionExpression": "#v = :expected",
                "ExpressionAttributeNames": {"#v": VERSION},
                "ExpressionAttributeValues": {":expected": number_attr(info.parked_version)},
            }
        gone = {event.position for event in removed}
        values = {position: value for position, value in info.parked.items() if position not in gone}
        new = {event.position: placed[(key, event.position)].value for event in added}
        values.update(new)
        if not values:
            delete: Any = {"TableName": table, "Key": parked_key(key), **condition}
            return {"Delete": delete}, 200
        version = (info.parked_version or 0) + 1
        if len(added) + len(removed) > PARKED_UPDATE:  # the whole item, bounded by fit()
            item: Item = {**parked_key(key), VERSION: number_attr(version)}
            item.update({f"{PARKED_PREFIX}{position}": {"B": value} for position, value in values.items()})
            put: Any = {"TableName": table, "Item": item, **condition}
            return {"Put": put}, parked_size(values)
        names: dict[str, str] = {"#v": VERSION}
        attrs: dict[str, AttributeValueTypeDef] = {":version": number_attr(version)}
        sets, removes = ["#v = :version"], []
        for n, (position, value) in enumerate(new.items()):
            names[f"#s{n}"] = f"{PARKED_PREFIX}{position}"
            attrs[f":s{n}"] = {"B": value}
            sets.append(f"#s{n} = :s{n}")
        for n, position in enumerate(sorted(gone)):
            names[f"#r{n}"] = f"{PARKED_PREFIX}{position}"
            removes.append(f"#r{n}")
        expression = "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes) if removes else "")
        attrs.update(condition.get("ExpressionAttributeValues", {}))
        update: Any = {
            "TableName": table,
            "Key": parked_key(key),
            "UpdateExpression": expression,
            "ConditionExpression": condition["ConditionExpression"],
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": attrs,
        }
        return {"Update": update}, 200 + sum(len(value) + 24 for value in new.values())

    def _dead_letter_unit(self, index: int, letter: DeadLetter, stored_at: int) -> Unit:
        table = self.table
        data = pack(letter.data)
        item, texts = dead_letter_item(letter, index, stored_at, data)
        before: list[Step] = []
        for packed in (data, texts):
            if packed is not None:
                before += self._chunk_puts(dead_letter_chunk_keys(packed.value, ""), packed.chunks)
        texts_bytes = texts_size((letter.reason[:2000], letter.partition_key, letter.stream_arn, letter.shard_id))
        size = 600 + len(data.value) + 6 * texts_bytes
        put: Action = {"Put": {"TableName": table, "Item": item, "ConditionExpression": NEW_ITEM}}
        return Unit(index, None, [*before, Step([put], size, dead_letters=1)], main=len(before))

    def _chunk_puts(self, keys: Sequence[Item], chunks: Sequence[bytes]) -> list[Step]:
        return [
            Step([{"Put": {"TableName": self.table, "Item": {**key, "d": {"B": chunk}}}}], len(chunk) + 200)
            for key, chunk in zip(keys, chunks, strict=True)
        ]

    def _chunk_deletes(self, keys: Sequence[Item]) -> list[Step]:
        return [Step([{"Delete": {"TableName": self.table, "Key": key}}], 200) for key in keys]


# -- units as transactions


def transactions(units: Sequence[Unit], actions: int, budget: int) -> list[list[tuple[Unit, Step]]]:
    """The steps of the units, in order, grouped into transactions of at most ``actions`` actions
    and about ``budget`` bytes, none touching an item twice."""
    groups: list[list[tuple[Unit, Step]]] = []
    count = size = 0
    items: set[tuple[str, str]] = set()
    for unit in units:
        for step in unit.steps:
            if (
                not groups
                or count + len(step.actions) > actions
                or size + step.size > budget
                or not items.isdisjoint(step.items)
            ) and (not groups or groups[-1]):
                groups.append([])
                count = size = 0
                items = set()
            groups[-1].append((unit, step))
            count += len(step.actions)
            size += step.size
            items |= step.items
    return groups or [[]]
