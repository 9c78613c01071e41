"""The UserLimit read model."""

from decimal import Context, Decimal

import msgspec

from user_limits.domain.events import LimitPeriod, LimitStatus, LimitType

# Wide enough for any value and progress the codec and the projection let through, so that the
# figures derived for display never raise or round before their final quantize.
_WIDE = Context(prec=200)

# The fields a UserLimit exports, in order; the rest is bookkeeping kept out of exports.
EXPORT_FIELDS: tuple[str, ...] = (
    "userLimitId",
    "userId",
    "brandId",
    "type",
    "period",
    "status",
    "value",
    "progress",
    "currencyCode",
    "activeFrom",
    "activeUntil",
    "nextResetTime",
    "createdAt",
)


class UserLimit(msgspec.Struct, frozen=True, gc=False, rename="camel"):
    user_limit_id: str
    user_id: str
    brand_id: str
    type: LimitType
    period: LimitPeriod
    status: LimitStatus
    value: Decimal
    progress: Decimal
    currency_code: str
    active_from: int
    active_until: int | None
    next_reset_time: int | None
    created_at: int
    # Bookkeeping: the envelope sequenceNumber and createdAt of the last event applied.
    last_sequence_number: int
    updated_at: int
    # The last drift seen (domain.drift): the event whose producer figure disagreed with ours.
    # Kept out of exports, snapshots and the API; None while the limit never drifted.
    drift_sequence_number: int | None = None
    drift_event_type: str | None = None
    drift_figure: str | None = None
    drift_ours: Decimal | None = None
    drift_theirs: Decimal | None = None
    drift_at: int | None = None

    @property
    def remaining(self) -> Decimal:
        return _WIDE.subtract(self.value, self.progress)

    @property
    def used_percent(self) -> Decimal:
        """Share of the value used, in percent with two decimals; 0 for a zero value."""
        if not self.value:
            return Decimal("0.00")
        return _WIDE.divide(_WIDE.multiply(self.progress, 100), self.value).quantize(Decimal("0.01"), context=_WIDE)


# The last drift's fields, which a limit replaced whole keeps (domain.drift.carried).
DRIFT_FIELDS: tuple[str, ...] = tuple(name for name in UserLimit.__struct_fields__ if name.startswith("drift_"))


def export_dict(limit: UserLimit) -> dict[str, object]:
    """The exported form: exactly EXPORT_FIELDS, decimals as strings, absent values as null."""
    return {
        "userLimitId": limit.user_limit_id,
        "userId": limit.user_id,
        "brandId": limit.brand_id,
        "type": limit.type,
        "period": limit.period,
        "status": limit.status,
        "value": str(limit.value),
        "progress": str(limit.progress),
        "currencyCode": limit.currency_code,
        "activeFrom": limit.active_from,
        "activeUntil": limit.active_until,
        "nextResetTime": limit.next_reset_time,
        "createdAt": limit.created_at,
    }
