"""Filtering, sorting and cursor pagination of one user's limits, in memory.

A user has few limits and the store reads them in one indexed query, so the whole list is
filtered and sorted here, the same way over every backend.

The cursor makes a walk return every limit exactly once even while the data changes between
pages (a usedPercent moving a limit across a page boundary cannot make it repeat or vanish): it
carries the fingerprints of the limits already returned, and the next page is the first ``limit``
limits, in the current order, not yet returned. It is bound to its query (user, filters, sort),
and checksummed so that a corrupted or hand-edited cursor is refused. It grants nothing: every
request is authorised on its own.

Layout (then base64url, unpadded): version (1 byte) | query digest (8) | fingerprints (8 each) |
checksum (8).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from hashlib import blake2b
from typing import Any, Literal, get_args

from user_limits.domain.model import UserLimit

SortKey = Literal[
    "userLimitId",
    "brandId",
    "type",
    "period",
    "status",
    "value",
    "progress",
    "remaining",
    "usedPercent",
    "currencyCode",
    "activeFrom",
    "activeUntil",
    "nextResetTime",
    "createdAt",
    "updatedAt",
]
SORT_KEYS: tuple[str, ...] = get_args(SortKey)
_SORT_VALUE: dict[str, Callable[[UserLimit], Any]] = {
    "userLimitId": lambda limit: limit.user_limit_id,
    "brandId": lambda limit: limit.brand_id,
    "type": lambda limit: limit.type,
    "period": lambda limit: limit.period,
    "status": lambda limit: limit.status,
    "value": lambda limit: limit.value,
    "progress": lambda limit: limit.progress,
    "remaining": lambda limit: limit.remaining,
    "usedPercent": lambda limit: limit.used_percent,
    "currencyCode": lambda limit: limit.currency_code,
    "activeFrom": lambda limit: limit.active_from,
    "activeUntil": lambda limit: limit.active_until,
    "nextResetTime": lambda limit: limit.next_reset_time,
    "createdAt": lambda limit: limit.created_at,
    "updatedAt": lambda limit: limit.updated_at,
}

VERSION = 1
_DIGEST = 8
_HEADER = 1 + _DIGEST
# A cursor grows by 11 characters per limit returned; users have few limits, this is plenty.
MAX_CURSOR_CHARS = 16_384
# Not a secret: the checksum catches corrupted and hand-edited cursors, which would otherwise
# silently change what the walk returns. Forging one gains nothing (see the module docstring).
_CHECKSUM_KEY = b"user-limits cursor v1"
_CURSOR_TEXT = re.compile(r"[A-Za-z0-9_-]*")


class BadCursor(ValueError):
    """The cursor is malformed, tampered with, or belongs to another query."""


@dataclass(frozen=True, slots=True)
class Query:
    user_id: str
    types: tuple[str, ...] = ()
    periods: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    brand_ids: tuple[str, ...] = ()
    sort: str = "userLimitId"

    def digest(self) -> bytes:
        # Sorted, de-duplicated filters: the same query spelled differently keeps its cursor.
        parts = [self.user_id, self.sort, *(",".join(sorted(set(values))) for values in self.filters())]
        return blake2b("\x1f".join(parts).encode(), digest_size=_DIGEST, person=b"ul-query").digest()

    def filters(self) -> tuple[tuple[str, ...], ...]:
        return (self.types, self.periods, self.statuses, self.brand_ids)

    def matches(self, limit: UserLimit) -> bool:
        return (
            (not self.types or limit.type in self.types)
            and (not self.periods or limit.period in self.periods)
            and (not self.statuses or limit.status in self.statuses)
            and (not self.brand_ids or limit.brand_id in self.brand_ids)
        )


def fingerprint(limit: UserLimit) -> bytes:
    return blake2b(limit.user_limit_id.encode(), digest_size=_DIGEST, person=b"ul-limit").digest()


def sort_limits(limits: Sequence[UserLimit], sort: str) -> list[UserLimit]:
    """Sorted by ``sort`` ("-" for descending), ties by userLimitId, absent values last either way."""
    descending = sort.startswith("-")
    value = _SORT_VALUE[sort.removeprefix("-")]
    by_id = sorted(limits, key=lambda limit: limit.user_limit_id)
    present = [limit for limit in by_id if value(limit) is not None]
    absent = [limit for limit in by_id if value(limit) is None]
    # Python's sort is stable, also with reverse=True: equal values keep their userLimitId order.
    present.sort(key=value, reverse=descending)
    return present + absent


def _checksum(body: bytes) -> bytes:
    return blake2b(body, digest_size=_DIGEST, key=_CHECKSUM_KEY).digest()


def encode_cursor(query: Query, seen: Sequence[bytes]) -> str:
    body = bytes([VERSION]) + query.digest() + b"".join(seen)
    return base64.urlsafe_b64encode(body + _checksum(body)).rstrip(b"=").decode()


def decode_cursor(cursor: str, query: Query) -> list[bytes]:
    """The fingerprints the walk has returned so far; BadCursor if it is not this query's cursor."""
    if len(cursor) > MAX_CURSOR_CHARS:
        raise BadCursor("invalid cursor: too long")
    # Only the exact text encode_cursor writes: the decoder alone would skip characters outside the
    # alphabet, accept padding and "+" or "/", and ignore the spare bits of the last character.
    if not _CURSOR_TEXT.fullmatch(cursor):
        raise BadCursor("invalid cursor")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (binascii.Error, ValueError):
        raise BadCursor("invalid cursor") from None
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != cursor:
        raise BadCursor("invalid cursor")
    body, checksum = raw[:-_DIGEST], raw[-_DIGEST:]
    if len(body) < _HEADER or (len(body) - _HEADER) % _DIGEST or body[0] != VERSION or _checksum(body) != checksum:
        raise BadCursor("invalid cursor")
    if body[1:_HEADER] != query.digest():
        raise BadCursor("invalid cursor: it belongs to another query (user, filters or sort changed)")
    return [body[start : start + _DIGEST] for start in range(_HEADER, len(body), _DIGEST)]


@dataclass(frozen=True, slots=True)
class Page:
    limits: list[UserLimit]
    next_cursor: str | None


def paginate(limits: Sequence[UserLimit], query: Query, size: int, cursor: str | None) -> Page:
    """The next page of ``limits`` (one user's, as the store holds them now) for ``query``."""
    returned = decode_cursor(cursor, query) if cursor is not None else []
    seen = set(returned)
    page: list[UserLimit] = []
    more = False
    for limit in sort_limits([limit for limit in limits if query.matches(limit)], query.sort):
        if not seen or fingerprint(limit) not in seen:
            if len(page) == size:
                more = True
                break
            page.append(limit)
    if not more:
        return Page(page, None)
    new = [fingerprint(limit) for limit in page]
    return Page(page, encode_cursor(query, returned + new))
