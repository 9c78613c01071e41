"""The projection rules: ``apply(state, event) -> state``, pure and total over valid input.

Rules 4-6 live here. Ordering, duplicates and parking (rules 3 and 7) are the stream engine's job,
which calls :func:`apply` only with an event newer than the state, and only with ``state=None``
when :func:`creates` says the event creates a limit.
"""

from decimal import Context, Decimal, Inexact, InvalidOperation, Overflow

from msgspec.structs import replace

from user_limits.domain.events import AMOUNT_DIGITS, LimitCreated, LimitReset, ProgressChanged, UserLimitEvent
from user_limits.domain.model import UserLimit

ZERO = Decimal("0")
# Amounts have at most AMOUNT_DIGITS digits either side of the point (the codec refuses others), so
# a sum has at most 2 * AMOUNT_DIGITS + 1 digits: exact in this context, whatever the thread's own
# (the default one keeps 28 digits and would round silently).
EXACT = Context(prec=2 * AMOUNT_DIGITS + 2, traps=[Inexact, InvalidOperation, Overflow])


class LimitNotFound(Exception):
    """A progress change or reset was applied to a limit that does not exist."""


def creates(event: UserLimitEvent) -> bool:
    return type(event.payload) is LimitCreated


def apply(state: UserLimit | None, event: UserLimitEvent) -> UserLimit:
    payload = event.payload
    if type(payload) is LimitCreated:
        # Rule 4: every payload field, progress 0, createdAt from the envelope.
        return UserLimit(
            user_limit_id=payload.user_limit_id,
            user_id=payload.user_id,
            brand_id=payload.brand_id,
            type=payload.type,
            period=payload.period,
            status=payload.status,
            value=payload.value,
            progress=ZERO,
            currency_code=payload.currency_code,
            active_from=payload.active_from,
            active_until=payload.active_until,
            next_reset_time=payload.next_reset_time,
            created_at=event.created_at,
            last_sequence_number=event.sequence_number,
            updated_at=event.created_at,
        )
    if state is None:
        raise LimitNotFound(payload.user_limit_id)
    if type(payload) is ProgressChanged:
        # Rule 5: the producer's own previousProgress makes the result independent of our state.
        next_reset = payload.next_reset_time
        return replace(
            state,
            progress=EXACT.add(payload.previous_progress, payload.amount),
            next_reset_time=state.next_reset_time if next_reset is None else next_reset,
            last_sequence_number=event.sequence_number,
            updated_at=event.created_at,
        )
    assert type(payload) is LimitReset
    # Rule 6.
    return replace(
        state,
        progress=ZERO,
        next_reset_time=payload.next_reset_time,
        last_sequence_number=event.sequence_number,
        updated_at=event.created_at,
    )
