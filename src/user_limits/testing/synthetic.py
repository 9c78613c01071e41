"""A deterministic generator of realistic, messy upstream streams, for load tests and benchmarks.

Per user, events come in sequence order (as on a Kinesis shard partitioned by aggregateId), with
the noise a real stream has: event types we ignore, producer retries (duplicates), late copies of
old events, resets of limits whose creation is not in the stream, and a few poison records.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import islice
from typing import Any, NamedTuple

import msgspec

from user_limits.domain.events import CREATED, PROGRESS_CHANGED, RESET

_encode = msgspec.json.Encoder().encode
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_PERIOD_MS = {"DAY": 86_400_000, "WEEK": 7 * 86_400_000, "MONTH": 30 * 86_400_000, "INDEFINITE": None}
_LIMITS = [("DEPOSIT", "DAY", "1000"), ("DEPOSIT", "WEEK", "5000"), ("LOSS", "MONTH", "20000"), ("BET", "DAY", "500")]
_NOISE = ["LIMIT_USER_CREATED", "USER_LIMIT_CHANGE_SOURCE_ADDED", "LIMIT_USER_PENDING_PAYMENT_PROCESSED"]
_AMOUNTS = [Decimal(a) for a in ("5", "10", "12.50", "20", "25.25", "40", "50", "75.75", "100")]


class SyntheticRecord(NamedTuple):
    partition_key: str
    data: bytes


@dataclass
class _Limit:
    id: str
    type: str
    period: str
    value: Decimal
    progress: Decimal = Decimal(0)


@dataclass
class _User:
    id: str
    brand: str
    currency: str
    sequence: int = 0
    limits: list[_Limit] = field(default_factory=list)
    sent: deque[bytes] = field(default_factory=deque)


def generate(
    records: int,
    users: int = 2000,
    seed: int = 0,
    *,
    duplicate_rate: float = 0.02,
    late_rate: float = 0.01,
    noise_rate: float = 0.15,
    orphan_rate: float = 0.005,
    poison_rate: float = 0.001,
    start_ms: int = 1_795_161_600_000,
) -> list[SyntheticRecord]:
    """``records`` records for ``users`` users; the same arguments give the same bytes."""
    rates = (duplicate_rate, late_rate, noise_rate, orphan_rate, poison_rate)
    return list(islice(stream(users, seed, rates=rates, start_ms=start_ms), records))


def stream(
    users: int = 2000,
    seed: int = 0,
    *,
    rates: tuple[float, float, float, float, float] = (0.02, 0.01, 0.15, 0.005, 0.001),
    start_ms: int = 1_795_161_600_000,
    history: int | None = None,
) -> Iterator[SyntheticRecord]:
    """The records of :func:`generate`, one at a time and without end (take what you need), for
    inputs too big to hold. ``rates``: duplicate, late, noise, orphan and poison, as in generate.
    ``history``: late copies are taken from a user's last ``history`` events only, so memory
    stays bounded (None, as generate does: from all of them)."""
    duplicate_rate, late_rate, noise_rate, orphan_rate, poison_rate = rates
    rng = random.Random(seed)

    bits = rng.getrandbits

    def ident(n: int = 20) -> str:
        # rng.choice(_ALPHABET) n times, drawn exactly as random.choice draws (6 random bits,
        # again while they exceed the alphabet), at a third of its cost: ids are most of the work.
        letters = []
        for _ in range(n):
            index = bits(6)
            while index >= 62:
                index = bits(6)
            letters.append(_ALPHABET[index])
        return "".join(letters)

    people = [
        _User(ident(), f"{rng.randrange(1, 4):024d}", rng.choice(["SEK", "EUR", "GBP"]), sent=deque(maxlen=history))
        for _ in range(users)
    ]
    clock = start_ms

    def emit(user: _User, kind: str, payload: dict[str, Any]) -> SyntheticRecord:
        user.sequence += rng.choice((1, 1, 1, 1, 2))  # upstream sequences have gaps
        data = _encode(
            {
                "aggregateId": user.id,
                "context": {"correlationId": ident(21)},
                "createdAt": clock,
                "eventId": ident(),
                "payload": payload,
                "sequenceNumber": user.sequence,
                "source": "limitUser",
                "type": kind,
            }
        )
        user.sent.append(data)
        return SyntheticRecord(user.id, data)

    while True:
        clock += rng.randrange(1, 400)
        user = rng.choice(people)
        roll = rng.random()
        base = {"brandId": user.brand, "currencyCode": user.currency, "userId": user.id}
        if roll < poison_rate:
            yield SyntheticRecord(user.id, _poison(rng, user))
        elif roll < poison_rate + duplicate_rate and user.sent:
            yield SyntheticRecord(user.id, user.sent[-1])  # a producer retry
        elif roll < poison_rate + duplicate_rate + late_rate and user.sent:
            yield SyntheticRecord(user.id, rng.choice(user.sent))  # a late copy
        elif roll < poison_rate + duplicate_rate + late_rate + noise_rate:
            yield emit(user, rng.choice(_NOISE), {**base, "amount": str(rng.choice(_AMOUNTS))})
        elif roll < poison_rate + duplicate_rate + late_rate + noise_rate + orphan_rate:
            yield emit(user, RESET, _reset(base, ident(), "DAY", "DEPOSIT", clock))
        elif len(user.limits) < len(_LIMITS) and (not user.limits or rng.random() < 0.3):
            kind, period, value = _LIMITS[len(user.limits)]
            limit = _Limit(ident(), kind, period, Decimal(value))
            user.limits.append(limit)
            payload = {**base, "activeFrom": clock, "period": period, "status": "ACTIVE", "type": kind}
            payload.update(userLimitId=limit.id, value=value)
            if _PERIOD_MS.get(period):
                payload["nextResetTime"] = clock + _PERIOD_MS[period]  # type: ignore[operator]
            yield emit(user, CREATED, payload)
        else:
            limit = rng.choice(user.limits)
            if rng.random() < 0.1:
                limit.progress = Decimal(0)
                yield emit(user, RESET, _reset(base, limit.id, limit.period, limit.type, clock))
            else:
                amount = rng.choice(_AMOUNTS)
                previous, limit.progress = limit.progress, limit.progress + amount
                payload = {**base, "amount": str(amount), "previousProgress": str(previous)}
                payload.update(remainingAmount=str(limit.value - limit.progress), userLimitId=limit.id)
                yield emit(user, PROGRESS_CHANGED, payload)


def _reset(base: dict[str, Any], limit_id: str, period: str, kind: str, clock: int) -> dict[str, Any]:
    return {
        **base,
        "nextResetTime": clock + (_PERIOD_MS.get(period) or 86_400_000),
        "period": period,
        "resetAmount": "0",
        "resetPercentage": "0.00",
        "type": kind,
        "unusedAmount": "0",
        "userLimitId": limit_id,
    }


def _poison(rng: random.Random, user: _User) -> bytes:
    choice = rng.randrange(4)
    if choice == 0:
        return b'{"aggregateId": "' + user.id.encode() + b'", "type": "USER_LIMIT_CREATED", '  # truncated JSON
    if choice == 1:
        return b"\xff\xfe not utf-8"
    envelope = {
        "aggregateId": user.id,
        "context": {},
        "createdAt": 0,
        "eventId": "poison",
        "sequenceNumber": user.sequence + 1,
        "source": "limitUser",
        "type": PROGRESS_CHANGED,
        "payload": {"userLimitId": "x", "userId": user.id, "amount": "NaN"},
    }
    if choice == 2:
        del envelope["eventId"]  # missing envelope field
    return _encode(envelope)
