"""The DynamoDB store's item layout: keys, attribute encodings, packing of large record bytes.

Pure functions (no client, no I/O) shared by the store and its tests; the layout itself is
described in :mod:`user_limits.stores.dynamodb_store`.
"""

from __future__ import annotations

import os
import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import parse_qs, urlsplit

from user_limits.domain.events import LimitPeriod, LimitStatus, LimitType
from user_limits.domain.model import UserLimit
from user_limits.stores.base import StoreError
from user_limits.stream.records import Checkpoint, DeadLetter

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

    Item = dict[str, AttributeValueTypeDef]

USER, LIMIT, PARKED = "USER#", "LIMIT#", "PARKED#"
DEAD_LETTERS, META, CHECKPOINTS = "DEADLETTER", "META", "CHECKPOINT"
COUNTERS, AS_OF = "COUNTERS#", "ASOF"
OWNER = "OWNER#"  # OWNER#<userLimitId>, OWNER: which user's partition holds the limit
CHUNKS, DEAD_LETTER_CHUNKS = "CHUNK#", "DEADLETTERCHUNK"
COUNTER_SHARDS = 8
PARKED_PREFIX = "E"  # attribute E<position> of a PARKED# item
# Record bytes kept in their item; beyond, in chunk items of CHUNK bytes (see the module's docstring).
INLINE = 32_000
CHUNK = 300_000


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


def limit_item(limit: UserLimit) -> Item:
    item: Item = {
        "PK": text_attr(USER + limit.user_id),
        "SK": text_attr(LIMIT + limit.user_limit_id),
        "userLimitId": text_attr(limit.user_limit_id),
        "userId": text_attr(limit.user_id),
        "brandId": text_attr(limit.brand_id),
        "type": text_attr(limit.type),
        "period": text_attr(limit.period),
        "status": text_attr(limit.status),
        "value": text_attr(str(limit.value)),
        "progress": text_attr(str(limit.progress)),
        "currencyCode": text_attr(limit.currency_code),
        "activeFrom": number_attr(limit.active_from),
        "createdAt": number_attr(limit.created_at),
        "lastSequenceNumber": number_attr(limit.last_sequence_number),
        "updatedAt": number_attr(limit.updated_at),
    }
    if limit.active_until is not None:
        item["activeUntil"] = number_attr(limit.active_until)
    if limit.next_reset_time is not None:
        item["nextResetTime"] = number_attr(limit.next_reset_time)
    return item


def optional_int(item: Mapping[str, Any], name: str) -> int | None:
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
        active_until=optional_int(item, "activeUntil"),
        next_reset_time=optional_int(item, "nextResetTime"),
        created_at=int(item["createdAt"]["N"]),
        last_sequence_number=int(item["lastSequenceNumber"]["N"]),
        updated_at=int(item["updatedAt"]["N"]),
    )


def pack(data: bytes) -> tuple[bytes, list[bytes]]:
    """The stored form of record bytes: the value kept in its item, and the chunks kept apart.

    The value's first byte says the form: ``r`` raw, ``z`` zlib, ``c`` chunked (then the form of
    the joined chunks and their count)."""
    body, form = data, b"r"
    if len(data) > 512:
        compressed = zlib.compress(data, 6)
        if len(compressed) < len(data):
            body, form = compressed, b"z"
    if len(body) <= INLINE:
        return form + body, []
    chunks = [body[start : start + CHUNK] for start in range(0, len(body), CHUNK)]
    return b"c" + form + len(chunks).to_bytes(4, "big"), chunks


def chunk_count(value: bytes) -> int:
    return int.from_bytes(value[2:6], "big") if value[:1] == b"c" else 0


def unpack(value: bytes, chunks: Sequence[bytes] = ()) -> bytes:
    form, body = (value[1:2], b"".join(chunks)) if value[:1] == b"c" else (value[:1], value[1:])
    return zlib.decompress(body) if form == b"z" else body


def parked_chunk_key(user_id: str, key: str, position: int, n: int) -> Item:
    return item_key(USER + user_id, f"{CHUNKS}{PARKED}{key}#{position}#{n}")


def dead_letter_chunk_key(letter_id: str, n: int) -> Item:
    return item_key(DEAD_LETTER_CHUNKS, f"{letter_id}#{n}")


def dead_letter_item(letter: DeadLetter, index: int, stored_at: int, value: bytes) -> Item:
    item: Item = {
        "PK": text_attr(DEAD_LETTERS),
        "SK": text_attr(letter.id),
        "reason": text_attr(letter.reason),
        "data": {"B": value},
        # The order dead letters are listed in: when stored, then where in their batch.
        "storedAt": number_attr(stored_at),
        "batchIndex": number_attr(index),
    }
    for name, text in (
        ("sequenceNumber", letter.sequence_number),
        ("partitionKey", letter.partition_key),
        ("streamArn", letter.stream_arn),
        ("shardId", letter.shard_id),
    ):
        if text is not None:
            item[name] = text_attr(text)
    for name, number in (("subSequenceNumber", letter.sub_sequence_number), ("arrivalMs", letter.arrival_ms)):
        if number is not None:
            item[name] = number_attr(number)
    return item


def item_dead_letter(item: Mapping[str, Any], data: bytes) -> DeadLetter:
    def text(name: str) -> str | None:
        value = item.get(name)
        return None if value is None else str(value["S"])

    return DeadLetter(
        item["reason"]["S"],
        data,
        text("sequenceNumber"),
        optional_int(item, "subSequenceNumber"),
        text("partitionKey"),
        optional_int(item, "arrivalMs"),
        text("streamArn"),
        text("shardId"),
    )


def checkpoint_order(checkpoint: Checkpoint) -> str:
    """Zero-padded, so that the strings compare as the numbers do. Kinesis allows sequence numbers
    of up to 129 digits (``0|([1-9]\\d{0,128})``); sub-sequence numbers are 64-bit."""
    sequence, sub = checkpoint.order()
    return f"{sequence:0129d}.{sub:020d}"
