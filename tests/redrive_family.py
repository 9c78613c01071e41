"""The user-limit family as it was before the upstream added the ``WEEK`` period: one enum value fewer.

A record whose ``period`` is ``WEEK`` is dead-lettered by it, with the reason msgspec gives for an
enum value it does not know; everything else is decoded by today's family. The redrive tests
dead-letter records with it, then redrive them with today's family, which knows ``WEEK``.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from user_limits.domain.events import CREATED, LIMIT_PERIODS, RESET, UserLimitEvent
from user_limits.family import UserLimitFamily, decode_envelope
from user_limits.stream.engine import InvalidRecord

UNKNOWN_THEN = "WEEK"
OldPeriod = Literal[tuple(period for period in LIMIT_PERIODS if period != UNKNOWN_THEN)]  # type: ignore[valid-type]


class _Periods(msgspec.Struct):
    period: OldPeriod  # type: ignore[valid-type]


_periods = msgspec.json.Decoder(_Periods)


class FamilyBeforeWeek(UserLimitFamily):
    """Checks the period against the older enum before decoding as today's family does."""

    def decode(self, data: bytes) -> UserLimitEvent | None:
        envelope = decode_envelope(data)
        if envelope.type in (CREATED, RESET):
            try:
                _periods.decode(envelope.payload)
            except msgspec.ValidationError as error:
                raise InvalidRecord(f"invalid {envelope.type} payload: {error}") from None
        return super().decode(data)
