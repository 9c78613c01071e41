"""GET /api/user-limits/{userId} (filtered, sorted, paginated) and /{userId}/{userLimitId}.

The endpoints return pre-serialised JSON (msgspec) rather than pydantic models: the response
schemas document the format, and the tests check the answers against them.
"""

from __future__ import annotations

import logging
from typing import Annotated

import msgspec
from fastapi import APIRouter, Depends, Path, Query, Response

from user_limits.api.deps import PrincipalDep, StoreDep, no_unknown_query
from user_limits.api.errors import ApiError, StoreUnavailable, documented
from user_limits.api.pagination import MAX_CURSOR_CHARS, BadCursor, SortParam, paginate
from user_limits.api.pagination import Query as LimitQuery
from user_limits.api.schemas import UserLimitOut, UserLimitPage
from user_limits.api.security import Principal
from user_limits.domain.events import LimitPeriod, LimitStatus, LimitType
from user_limits.domain.model import UserLimit, export_dict
from user_limits.stores.base import LimitStore

router = APIRouter(prefix="/api/user-limits", tags=["user limits"], dependencies=[Depends(no_unknown_query)])
logger = logging.getLogger("user_limits.api")
_encode = msgspec.json.Encoder().encode

UserIdPath = Annotated[str, Path(min_length=1, max_length=256, description="The player's userId")]


def wire(limit: UserLimit) -> dict[str, object]:
    """A limit as the API returns it: the exported fields plus derived figures."""
    item = export_dict(limit)
    item["remaining"] = str(limit.remaining)
    item["usedPercent"] = str(limit.used_percent)
    item["updatedAt"] = limit.updated_at
    return item


def _json(body: object) -> Response:
    return Response(_encode(body), media_type="application/json")


def _authorise(principal: Principal, user_id: str) -> None:
    if not principal.may_read(user_id):
        raise ApiError(403, "this token may not read this user's limits")


def _read_user(store: LimitStore, user_id: str) -> tuple[list[UserLimit], int | None]:
    try:
        return store.user_limits(user_id), store.as_of()
    except Exception:
        logger.exception("the store failed reading the limits of a user")
        raise StoreUnavailable() from None


@router.get(
    "/{userId}",
    response_model=UserLimitPage,
    responses=documented(400, 401, 403, 422, 503),
    summary="A user's limits, filtered, sorted and paginated",
)
def list_user_limits(
    userId: UserIdPath,
    principal: PrincipalDep,
    store: StoreDep,
    type: Annotated[list[LimitType] | None, Query(description="Only these types")] = None,
    period: Annotated[list[LimitPeriod] | None, Query(description="Only these periods")] = None,
    status: Annotated[list[LimitStatus] | None, Query(description="Only these statuses")] = None,
    brandId: Annotated[list[str] | None, Query(description="Only these brands")] = None,
    sort: Annotated[
        SortParam, Query(description="Sort key, `-` prefix for descending; ties by userLimitId, nulls last")
    ] = "userLimitId",
    limit: Annotated[int, Query(ge=1, le=100, description="Page size")] = 20,
    cursor: Annotated[
        str | None, Query(max_length=MAX_CURSOR_CHARS, description="`nextCursor` of the previous page")
    ] = None,
) -> Response:
    _authorise(principal, userId)
    query = LimitQuery(userId, tuple(type or ()), tuple(period or ()), tuple(status or ()), tuple(brandId or ()), sort)
    limits, as_of = _read_user(store, userId)
    try:
        page = paginate(limits, query, limit, cursor)
    except BadCursor as error:
        raise ApiError(400, str(error)) from None
    return _json({"userLimits": [wire(item) for item in page.limits], "nextCursor": page.next_cursor, "asOf": as_of})


@router.get(
    "/{userId}/{userLimitId}",
    response_model=UserLimitOut,
    responses=documented(401, 403, 404, 422, 503),
    summary="One limit of a user",
)
def get_user_limit(
    userId: UserIdPath,
    userLimitId: Annotated[str, Path(min_length=1, max_length=256)],
    principal: PrincipalDep,
    store: StoreDep,
) -> Response:
    _authorise(principal, userId)
    try:
        found = store.user_limit(userId, userLimitId)
    except Exception:
        logger.exception("the store failed reading one limit")
        raise StoreUnavailable() from None
    if found is None:
        raise ApiError(404, "no such limit for this user")
    return _json(wire(found))
