"""The DynamoDB store's table: one on-demand table, a single-table design keyed for the read API.

Items (``PK``, ``SK``, both strings):

- ``USER#<userId>``, ``LIMIT#<userLimitId>``: a limit. A user's limits are one Query. ``value`` and
  ``progress`` are strings: a DynamoDB number would turn ``"9800.00"`` into ``9800``. A brandId and
  currencyCode too big for the item (free text, up to a 1 MiB record) are packed in ``texts``.
- ``PARKED#<userLimitId>``, ``PARKED``: the events parked for that limit, whichever userId they
  carry, one attribute ``E<position>`` (bytes) each, and a version ``v``; a batch reads a limit and
  its parked events in one BatchGetItem.
- ``OWNER#<userLimitId>``, ``OWNER``: the user whose partition holds the limit. Read only for
  limits not found in the partition of the batch's events (new limits, orphans), so that a limit
  created again for another user moves to that user's partition.
- ``DEADLETTER``, ``<DeadLetter.id>``: a dead letter, put only if absent (kept once). Its reason is
  bounded; its texts are stored so that any str comes back exactly (:mod:`user_limits.stores.text`); an id too
  long for a sort key is replaced by its digest.
- Bytes too big for their item (records of up to 1 MiB, big texts) are zlib-compressed and, beyond
  32 KB, kept in chunk items named by their digest (``CHUNK#…`` next to their item, and
  ``DEADLETTERCHUNK``): an item holds 400 KB.
- ``META``, ``COUNTERS#<n>``: applied/skipped/ignored/drifted, spread over a few items (fewer transaction
  conflicts between shards) and summed on read. ``META``, ``ASOF``: the newest event time applied.
  ``META``, ``LAYOUT``: the layout version (:meth:`~user_limits.stores.dynamodb.store.DynamoDBStore.migrate`).
- ``CHECKPOINT``, ``<stream>|<shardId>``: a shard's checkpoint, with a zero-padded ``orderKey``.
- ``LEASE``, ``<stream>|<shardId>``: a shard's lease in a consumer fleet (:mod:`.leases`).

Here: the keys, the attribute encodings and the packing of large values, as pure functions (no
client, no I/O) shared by the store, its plan of writes and their tests.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from user_limits.domain.model import UserLimit
from user_limits.stores.base import StoreError
from user_limits.stores.fields import LIMIT_FIELDS
from user_limits.stores.text import bounded_reason, is_plain, storable, unstored
from user_limits.stream.records import Checkpoint, DeadLetter

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

    Item = dict[str, AttributeValueTypeDef]

USER, LIMIT = "USER#", "LIMIT#"
DEAD_LETTERS, META, CHECKPOINTS = "DEADLETTER", "META", "CHECKPOINT"
COUNTERS, AS_OF, LAYOUT = "COUNTERS#", "ASOF", "LAYOUT"
OWNER = "OWNER#"  # OWNER#<userLimitId>, OWNER: which user's partition holds the limit
PARKED = "PARKED#"  # PARKED#<userLimitId>, PARKED: the events waiting for that limit, whoever's they are
PARKED_SK = "PARKED"
CHUNKS, DEAD_LETTER_CHUNKS = "CHUNK#", "DEADLETTERCHUNK"
COUNTER_SHARDS = 8
PARKED_PREFIX = "E"  # attribute E<position> of a parked item
# The table's layout version, in META/LAYOUT. 1 (no LAYOUT item) kept parked events under
# USER#<userId of the event>, PARKED#<userLimitId>: a limit created for another user never found
# them. ``user-limits init`` moves them (see DynamoDBStore.migrate).
LAYOUT_VERSION = 2
LEGACY_PARKED_PREFIX = "PARKED#"  # layout 1: the sort key of USER#<userId>, PARKED#<userLimitId>
LEGACY_PARKED_CHUNKS = "CHUNK#PARKED#"  # layout 1: CHUNK#PARKED#<userLimitId>#<position>#<n>

# Values kept in their item up to INLINE bytes; beyond, in chunk items of CHUNK bytes, named by
# the digest of what they hold, so that writing them before the item that points to them (when
# they do not fit in its transaction) can never change what a stored item points to.
INLINE = 32_000
CHUNK = 300_000
# A DynamoDB item holds 400 KB (409,600 bytes). A parked item holds its events inline up to
# PARKED_INLINE bytes, then only the pointers to their chunks, up to PARKED_ITEM bytes: room for
# thousands of events for one limit. Beyond, a store-level dead letter (see plan.fit).
PARKED_INLINE = 200_000
PARKED_ITEM = 380_000
# A limit's brandId and currencyCode (free text, up to a Kinesis record of 1 MiB) beyond this many
# bytes go packed into its ``texts`` attribute; so do a dead letter's coordinates.
TEXTS_INLINE = 16_000
# A sort key holds 1,024 bytes: longer ones (a dead letter's id, a checkpoint's stream and shard)
# are replaced by a digest.
KEY_BYTES = 900


@dataclass(frozen=True, slots=True)
class Location:
    table: str
    region: str
    endpoint: str | None


# What botocore accepts as a region name (a DNS label); anything else it refuses when the client is made.
_REGION = re.compile(r"[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?")


def parse_url(url: str) -> Location:
    """``dynamodb://TABLE?region=REGION&endpoint=URL``; the region falls back to AWS_REGION.

    Everything is checked here, so that a bad URL is one line for the user before any request."""
    try:
        parts = urlsplit(url)
    except ValueError as error:  # e.g. an unclosed IPv6 bracket
        raise StoreError(f"bad DynamoDB store URL {url!r}: {error}") from None
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
    if not _REGION.fullmatch(region):
        raise StoreError(f"bad AWS region {region!r} for {url}: letters, digits and '-', such as eu-west-1")
    endpoint = next(iter(query.get("endpoint", [])), None) or None
    if endpoint is not None:
        _check_endpoint(endpoint, url)
    return Location(table, region, endpoint)


def _check_endpoint(endpoint: str, url: str) -> None:
    problem = None
    try:
        parts = urlsplit(endpoint)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in 0-65535
    except ValueError as error:
        problem = str(error)
    else:
        if parts.scheme not in ("http", "https"):
            problem = "it must start with http:// or https://"
        elif not parts.hostname:
            problem = "it names no host"
    if problem is not None:
        raise StoreError(f"bad DynamoDB endpoint {endpoint!r} in {url}: {problem}")


def text_attr(value: str) -> AttributeValueTypeDef:
    return {"S": value}


def number_attr(value: int) -> AttributeValueTypeDef:
    return {"N": str(value)}


def item_key(pk: str, sk: str) -> Item:
    return {"PK": {"S": pk}, "SK": {"S": sk}}


def _digest(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()[:16]


def key_text(text: str) -> str:
    """Text as a key can hold it: exact when short and plain, else a digest of it."""
    if is_plain(text) and len(text.encode()) <= KEY_BYTES:
        return text
    return "sha256:" + _digest(text.encode("utf-8", "surrogatepass")).hex()


# -- packed values


@dataclass(frozen=True, slots=True)
class Packed:
    """The stored form of bytes: ``value``, kept in the item, and ``chunks``, kept apart.

    The value's first byte says the form: ``r`` raw, ``z`` zlib, ``h`` in chunks (then the form of
    the joined chunks, their count and the digest naming them); ``c``, chunks named by their
    item alone, is what layout 1 wrote and is still read."""

    value: bytes
    chunks: list[bytes] = field(default_factory=list)

    @property
    def digest(self) -> str:
        return chunk_digest(self.value)


def pack(data: bytes, inline: int = INLINE) -> Packed:
    body, form = data, b"r"
    if len(data) > 512:
        compressed = zlib.compress(data, 6)
        if len(compressed) < len(data):
            body, form = compressed, b"z"
    if len(body) <= inline:
        return Packed(form + body)
    chunks = [body[start : start + CHUNK] for start in range(0, len(body), CHUNK)]
    return Packed(b"h" + form + len(chunks).to_bytes(4, "big") + _digest(body), chunks)


def chunk_count(value: bytes) -> int:
    return int.from_bytes(value[2:6], "big") if value[:1] in (b"c", b"h") else 0


def chunk_digest(value: bytes) -> str:
    """The name of a value's chunks ('' for a value in one piece or of layout 1)."""
    return value[6:22].hex() if value[:1] == b"h" else ""


def unpack(value: bytes, chunks: Sequence[bytes] = ()) -> bytes:
    form, body = (value[1:2], b"".join(chunks)) if value[:1] in (b"c", b"h") else (value[:1], value[1:])
    return zlib.decompress(body) if form == b"z" else body


def pack_texts(texts: Sequence[str | None]) -> Packed:
    """Several texts as one packed value: JSON keeps any str exactly (ASCII, escapes included)."""
    return pack(json.dumps(list(texts)).encode())


def unpack_texts(value: bytes, chunks: Sequence[bytes] = ()) -> list[Any]:
    texts: list[Any] = json.loads(unpack(value, chunks))
    return texts


def texts_size(texts: Sequence[str | None]) -> int:
    """At least the UTF-8 size of the texts; exact only when that matters (a big one)."""
    size = sum(len(text) for text in texts if text is not None)
    if size * 4 <= TEXTS_INLINE:
        return size
    return sum(len(text.encode("utf-8", "surrogatepass")) for text in texts if text is not None)


# -- limits


def limit_chunk_keys(user_id: str, key: str, value: bytes) -> list[Item]:
    """The chunk items of a limit's packed texts ``value``, in the user's partition."""
    digest = chunk_digest(value)
    return [item_key(USER + user_id, f"{CHUNKS}{LIMIT}{key}#{digest}#{n}") for n in range(chunk_count(value))]


# The attributes of a limit item beyond its keys, in UserLimit's field order. brandId and
# currencyCode are free text: too big, they go packed into ``texts`` instead.
_PACKABLE = ("brand_id", "currency_code")
_ATTRIBUTES = tuple(field for field in LIMIT_FIELDS if field.name not in _PACKABLE)


def limit_item(limit: UserLimit) -> tuple[Item, Packed | None]:
    """The limit's item, and its packed brandId and currencyCode when they are too big for it."""
    item: Item = {"PK": text_attr(USER + limit.user_id), "SK": text_attr(LIMIT + limit.user_limit_id)}
    for attribute in _ATTRIBUTES:
        value = getattr(limit, attribute.name)
        if value is not None:  # an absent attribute is None
            item[attribute.json_name] = number_attr(value) if attribute.kind == "integer" else text_attr(str(value))
    packed = None
    brand, currency = limit.brand_id, limit.currency_code
    if 4 * (len(brand) + len(currency)) <= TEXTS_INLINE or texts_size((brand, currency)) <= TEXTS_INLINE:
        item["brandId"] = text_attr(limit.brand_id)
        item["currencyCode"] = text_attr(limit.currency_code)
    else:
        packed = pack_texts((limit.brand_id, limit.currency_code))
        item["texts"] = {"B": packed.value}
    return item, packed


def limit_texts_value(item: Mapping[str, Any]) -> bytes | None:
    """The packed brandId and currencyCode of a limit item, if they are packed."""
    value = item.get("texts")
    return None if value is None else bytes(value["B"])


def optional_int(item: Mapping[str, Any], name: str) -> int | None:
    value = item.get(name)
    return None if value is None or "N" not in value else int(value["N"])


def item_limit(item: Mapping[str, Any], chunks: Sequence[bytes] = ()) -> UserLimit:
    texts = limit_texts_value(item)
    if texts is None:
        brand, currency = item["brandId"]["S"], item["currencyCode"]["S"]
    else:
        brand, currency = unpack_texts(texts, chunks)
    values: dict[str, Any] = {"brand_id": brand, "currency_code": currency}
    for attribute in _ATTRIBUTES:
        if attribute.kind == "integer":
            values[attribute.name] = (
                optional_int(item, attribute.json_name) if attribute.nullable else int(item[attribute.json_name]["N"])
            )
        elif attribute.nullable and attribute.json_name not in item:
            values[attribute.name] = None  # absent: as limit_item writes None
        else:
            text = item[attribute.json_name]["S"]
            values[attribute.name] = Decimal(text) if attribute.decimal else text
    return UserLimit(**values)


# -- parked events


def parked_key(key: str) -> Item:
    return item_key(PARKED + key, PARKED_SK)


def parked_chunk_keys(key: str, position: int, value: bytes) -> list[Item]:
    """The chunk items of the stored ``value`` of the event parked at ``position`` for limit ``key``."""
    digest = chunk_digest(value)
    return [item_key(PARKED + key, f"{CHUNKS}{position}#{digest}#{n}") for n in range(chunk_count(value))]


def legacy_parked_chunk_keys(user_id: str, key: str, position: int, value: bytes) -> list[Item]:
    """Layout 1: USER#<userId>, CHUNK#PARKED#<userLimitId>#<position>#<n>."""
    sk = f"{LEGACY_PARKED_CHUNKS}{key}#{position}#"
    return [item_key(USER + user_id, f"{sk}{n}") for n in range(chunk_count(value))]


def parked_values(item: Mapping[str, Any]) -> dict[int, bytes]:
    """The stored value of each event of a parked item, by position."""
    return {
        int(name[1:]): bytes(value["B"])
        for name, value in item.items()
        if name.startswith(PARKED_PREFIX) and name[1:].isdigit()
    }


def parked_size(values: Mapping[int, bytes]) -> int:
    """About the size of a parked item holding these values (names included)."""
    return 100 + sum(len(value) + 24 for value in values.values())


# -- dead letters


def dead_letter_sk(letter: DeadLetter) -> str:
    return key_text(letter.id)


def dead_letter_key(letter_id: str) -> Item:
    """The key of the dead letter of that id (:attr:`DeadLetter.id`)."""
    return item_key(DEAD_LETTERS, key_text(letter_id))


def dead_letter_chunk_keys(value: bytes, sk: str) -> list[Item]:
    """The chunk items of a dead letter's packed ``value``; layout 1 named them by its sort key."""
    name = chunk_digest(value) or sk
    return [item_key(DEAD_LETTER_CHUNKS, f"{name}#{n}") for n in range(chunk_count(value))]


_LETTER_TEXTS = ("reason", "sequenceNumber", "partitionKey", "streamArn", "shardId")
# The attributes that hold a dead letter's texts: each inline, or all packed in ``texts``.
DEAD_LETTER_TEXTS = (*_LETTER_TEXTS, "texts")


def dead_letter_item(letter: DeadLetter, index: int, stored_at: int, data: Packed) -> tuple[Item, Packed | None]:
    """The dead letter's item (its reason bounded, its texts storable), and its packed texts when
    they are too big for it (coordinates of any size come from a Lambda event AWS never sent)."""
    item: Item = {
        "PK": text_attr(DEAD_LETTERS),
        "SK": text_attr(dead_letter_sk(letter)),
        "data": {"B": data.value},
        # The order dead letters are listed in: when stored, then where in their batch.
        "storedAt": number_attr(stored_at),
        "batchIndex": number_attr(index),
    }
    texts = (
        bounded_reason(letter.reason),
        letter.sequence_number,
        letter.partition_key,
        letter.stream_arn,
        letter.shard_id,
    )
    packed = None
    if texts_size(texts) <= TEXTS_INLINE:
        for name, text in zip(_LETTER_TEXTS, texts, strict=True):
            if text is not None:
                item[name] = text_attr(storable(text))
    else:
        packed = pack_texts(texts)
        item["texts"] = {"B": packed.value}
    for name, number in (("subSequenceNumber", letter.sub_sequence_number), ("arrivalMs", letter.arrival_ms)):
        if number is not None:
            item[name] = number_attr(number)
    return item, packed


def item_dead_letter(item: Mapping[str, Any], data: bytes, text_chunks: Sequence[bytes] = ()) -> DeadLetter:
    packed = item.get("texts")
    if packed is not None:
        reason, sequence_number, partition_key, stream_arn, shard_id = unpack_texts(bytes(packed["B"]), text_chunks)
    else:

        def text(name: str) -> str | None:
            value = item.get(name)
            return None if value is None else unstored(str(value["S"]))

        reason = text("reason") or ""
        sequence_number, partition_key = text("sequenceNumber"), text("partitionKey")
        stream_arn, shard_id = text("streamArn"), text("shardId")
    return DeadLetter(
        reason,
        data,
        sequence_number,
        optional_int(item, "subSequenceNumber"),
        partition_key,
        optional_int(item, "arrivalMs"),
        stream_arn,
        shard_id,
    )


# -- checkpoints


def checkpoint_sk(stream: str, shard_id: str) -> str:
    return key_text(f"{storable(stream)}|{storable(shard_id)}")


def checkpoint_order(checkpoint: Checkpoint) -> str:
    """Zero-padded, so that the strings compare as the numbers do. Kinesis allows sequence numbers
    of up to 129 digits (``0|([1-9]\\d{0,128})``); sub-sequence numbers are 64-bit."""
    sequence, sub = checkpoint.order()
    return f"{sequence:0129d}.{sub:020d}"
