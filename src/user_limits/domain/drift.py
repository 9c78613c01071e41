"""Drift: the read model checked against the figures the producer sends with each event. Pure.

A limit whose value or progress changed through an event we never see (an event type we ignore,
an event lost upstream) keeps the wrong ``value - progress`` here. The producer says what it holds:

- ``USER_LIMIT_PROGRESS_CHANGED``: ``remainingAmount`` is value - progress after the change;
- ``USER_LIMIT_RESET``: ``unusedAmount`` is value - progress before the reset, and ``resetAmount``
  the progress it resets (the upstream sample's monthly reset: value 250000, progress 200,
  ``unusedAmount`` 249800.00, ``resetAmount`` 200.00; the two always add up to the value).

An event whose figure disagrees, as a Decimal value ("10" equals "10.00"), drifted. Drift is
reported, never corrected: the projection's rules stay as they are, and the limit keeps the last
drift seen (:class:`~user_limits.domain.model.UserLimit`'s ``drift_*`` fields).
"""

from __future__ import annotations

from decimal import MAX_EMAX, MIN_EMIN, Context, Decimal
from typing import NamedTuple

from msgspec.structs import replace

from user_limits.domain.events import (
    CREATED,
    PROGRESS_CHANGED,
    RESET,
    LimitCreated,
    LimitReset,
    ProgressChanged,
    UserLimitEvent,
)
from user_limits.domain.model import DRIFT_FIELDS, UserLimit
from user_limits.domain.projection import EXACT

# The producer's figures are only validated, never range-checked (rule 1): one may have a million
# digits. The limit keeps it to this many significant digits, so that it fits every store's item
# (a DynamoDB item holds 400 KB); the comparison is made on the figure whole.
KEPT_DIGITS = 50
_KEPT = Context(prec=KEPT_DIGITS, Emax=MAX_EMAX, Emin=MIN_EMIN, traps=[])


def _kept(figure: Decimal) -> Decimal:
    """The figure as sent when it has at most KEPT_DIGITS digits, else rounded to them."""
    return figure if len(figure.as_tuple().digits) <= KEPT_DIGITS else _KEPT.plus(figure)


class Drift(NamedTuple):
    """One figure of an event that disagrees with the read model."""

    figure: str  # the payload field, as the upstream writes it
    ours: Decimal
    theirs: Decimal  # as sent, up to KEPT_DIGITS significant digits (then rounded)


def check(before: UserLimit, event: UserLimitEvent, after: UserLimit) -> Drift | None:
    """The first of the event's figures that disagrees with the limit, before and after the event."""
    payload = event.payload
    if type(payload) is ProgressChanged:
        remaining = EXACT.subtract(after.value, after.progress)
        if payload.remaining_amount != remaining:
            return Drift("remainingAmount", remaining, _kept(payload.remaining_amount))
        return None
    if type(payload) is LimitReset:
        unused = EXACT.subtract(before.value, before.progress)
        if payload.unused_amount != unused:
            return Drift("unusedAmount", unused, _kept(payload.unused_amount))
        if payload.reset_amount != before.progress:
            return Drift("resetAmount", before.progress, _kept(payload.reset_amount))
    return None


_TYPES = {ProgressChanged: PROGRESS_CHANGED, LimitReset: RESET, LimitCreated: CREATED}


def observe(before: UserLimit | None, event: UserLimitEvent, after: UserLimit) -> UserLimit:
    """``after``, the projection of ``event`` on ``before``, with the last drift seen: this event's
    if it drifted, else the one ``before`` kept (a limit created again keeps it too)."""
    if before is None:
        return after
    found = check(before, event, after)
    if found is not None:
        return replace(
            after,
            drift_sequence_number=event.sequence_number,
            drift_event_type=_TYPES[type(event.payload)],
            drift_figure=found.figure,
            drift_ours=found.ours,
            drift_theirs=found.theirs,
            drift_at=event.created_at,
        )
    if before.drift_sequence_number is not None and after.drift_sequence_number is None:
        return carried(before, after)
    return after


def carried(before: UserLimit | None, after: UserLimit) -> UserLimit:
    """``after`` with the last drift ``before`` kept, unless ``after`` has one of its own: what a
    limit replaced whole (created again, or by a snapshot line, which holds no drift) keeps."""
    if before is None or before.drift_sequence_number is None or after.drift_sequence_number is not None:
        return after
    return replace(after, **{name: getattr(before, name) for name in DRIFT_FIELDS})


def drifted(state: UserLimit) -> bool:
    """Whether the last event applied to ``state`` drifted."""
    return state.drift_sequence_number is not None and state.drift_sequence_number == state.last_sequence_number
