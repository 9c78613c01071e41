"""GET /api/user-limits/{userId} (filtered, sorted, paginated) and /{userId}/{userLimitId}.

The endpoints return pre-serialised JSON (msgspec) rather than pydantic models: the response
schemas document the format, and the tests check the answers against them.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from fastapi import APIRouter, Depends, Path, Response

from user_limits.api.deps import PrincipalDep, StoreReaderDep
from user_limits.api.errors import ApiError, documented
from user_limits.api.pagination import BadCursor, Query, paginate
from user_limits.api.params import LIST_PARAMETERS, ListParams, list_params, no_query
from user_limits.api.raw_path import RawPathRoute
from user_limits.api.schemas import UserLimitOut, UserLimitPage
from user_limits.api.security import Principal
from user_limits.domain.model import UserLimit, export_dict

# An id may hold any character, `/` included (sent as %2F): see RawPathRoute.
router = APIRouter(prefix="/api/user-limits", tags=["user limits"], route_class=RawPathRoute)
_encode = msgspec.json.Encoder().encode

UserIdPath = Annotated[str, Path(min_length=1, max_length=256, description="The player's userId")]
ListParamsDep = Annotated[ListParams, Depends(list_params)]


def wire(limit: UserLimit) -> dict[str, object]:
    """A limit as the API returns it: the exported fields plus derived figures."""
    item = export_dict(limit)
    item["remaining"] = str(limit.remaining)
    item["usedPercent"] = str(limit.used_percent)
    item["updatedAt"] = limit.updated_at
    return item


# A player's limits are personal and change all the time: no cache, private or shared, keeps them.
_NO_STORE = {"Cache-Control": "no-store"}


def _json(body: object) -> Response:
    return Response(_encode(body), media_type="application/json", headers=_NO_STORE)


def _authorise(principal: Principal, user_id: str) -> None:
    if not principal.may_read(user_id):
        raise ApiError(403, "this token may not read this user's limits")


def _check_id(name: str, value: str) -> None:
    # No record with a NUL in a string is ever applied (it is dead-lettered), and PostgreSQL cannot
    # even take one in a query: answered here, before the store is asked.
    if "\x00" in value:
        raise ApiError(422, f"path parameter `{name}`: must not contain the NUL character")


@router.get(
    "/{userId}",
    response_model=UserLimitPage,
    responses=documented(400, 401, 403, 422, 503),
    summary="A user's limits, filtered, sorted and paginated",
    openapi_extra={"parameters": LIST_PARAMETERS},
)
async def list_user_limits(
    userId: UserIdPath, principal: PrincipalDep, params: ListParamsDep, read: StoreReaderDep
) -> Response:
    _check_id("userId", userId)
    _authorise(principal, userId)
    query = Query(userId, params.types, params.periods, params.statuses, params.brand_ids, params.sort)
    limits, as_of = await read(lambda store: (store.user_limits(userId), store.as_of()))
    try:
        page = paginate(limits, query, params.limit, params.cursor)
    except BadCursor as error:
        raise ApiError(400, str(error)) from None
    return _json({"userLimits": [wire(item) for item in page.limits], "nextCursor": page.next_cursor, "asOf": as_of})


@router.get(
    "/{userId}/{userLimitId}",
    response_model=UserLimitOut,
    responses=documented(401, 403, 404, 422, 503),
    summary="One limit of a user",
    dependencies=[Depends(no_query)],
)
async def get_user_limit(
    userId: UserIdPath,
    userLimitId: Annotated[str, Path(min_length=1, max_length=256)],
    principal: PrincipalDep,
    read: StoreReaderDep,
) -> Response:
    _check_id("userId", userId)
    _check_id("userLimitId", userLimitId)
    _authorise(principal, userId)
    found = await read(lambda store: store.user_limit(userId, userLimitId))
    if found is None:
        raise ApiError(404, "no such limit for this user")
    return _json(wire(found))
