"""Request dependencies: the store and the authenticated principal."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from user_limits.api.errors import ApiError
from user_limits.api.security import ANONYMOUS_ADMIN, AuthError, KeysUnavailable, Principal, TokenVerifier
from user_limits.stores.base import LimitStore

bearer = HTTPBearer(
    auto_error=False,
    description="A JWT: `sub` = the userId whose limits it may read, or `scope` containing user-limits:admin.",
)


def unauthorized(message: str) -> ApiError:
    return ApiError(401, message, headers={"WWW-Authenticate": "Bearer"})


async def no_unknown_query(request: Request) -> None:
    """A misspelt parameter (``?types=BET``) is an error, not a silently unfiltered answer."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None or not request.query_params:
        return
    known = {param.alias for param in dependant.query_params}
    for dep in dependant.dependencies:
        known.update(param.alias for param in dep.query_params)
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        raise ApiError(422, f"unknown query parameter `{unknown[0]}`")


async def get_store(request: Request) -> LimitStore:
    store: LimitStore = request.app.state.store
    return store


async def current_principal(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> Principal:
    verifier: TokenVerifier | None = request.app.state.verifier
    if verifier is None:
        return ANONYMOUS_ADMIN
    if credentials is None:
        raise unauthorized("missing bearer token")
    try:
        if verifier.fetches_keys:  # may fetch the JWKS: keep the network off the event loop
            return await run_in_threadpool(verifier.verify, credentials.credentials)
        return verifier.verify(credentials.credentials)
    except AuthError as error:
        raise unauthorized(str(error)) from None
    except KeysUnavailable:
        raise ApiError(503, "cannot check the token now, try again later") from None


StoreDep = Annotated[LimitStore, Depends(get_store)]
PrincipalDep = Annotated[Principal, Depends(current_principal)]
