"""Response schemas of the API (pydantic v2), kept apart from the domain's UserLimit.

They document the wire format in the OpenAPI schema; the hot endpoints serialise with msgspec
directly (see :mod:`user_limits.api.routers.user_limits`) and the tests check both agree.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from user_limits.domain.events import LimitPeriod, LimitStatus, LimitType

DECIMAL_PATTERN = r"^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$"


def _decimal(description: str) -> str:
    return Field(description=f"{description} (a decimal, as a string)", pattern=DECIMAL_PATTERN)  # type: ignore[no-any-return]


class UserLimitOut(BaseModel):
    userLimitId: str
    userId: str
    brandId: str
    type: LimitType
    period: LimitPeriod
    status: LimitStatus
    value: str = _decimal("The limit")
    progress: str = _decimal("Used so far in the current period")
    currencyCode: str
    activeFrom: int = Field(description="Epoch milliseconds")
    activeUntil: int | None = Field(description="Epoch milliseconds, or null for no end")
    nextResetTime: int | None = Field(description="Epoch milliseconds, or null for no reset (INDEFINITE)")
    createdAt: int = Field(description="Epoch milliseconds of the creation event")
    remaining: str = _decimal("value - progress")
    usedPercent: str = _decimal("progress / value in percent, two decimals; 0 for a zero value")
    updatedAt: int = Field(description="Epoch milliseconds of the last event applied to this limit")


class UserLimitPage(BaseModel):
    userLimits: list[UserLimitOut]
    nextCursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page")
    asOf: int | None = Field(description="Epoch milliseconds of the newest event the store has applied")


class ErrorDetail(BaseModel):
    status: int
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


class Health(BaseModel):
    status: str


class ClientConfig(BaseModel):
    auth: bool = Field(description="Whether /api requests need a bearer token")
