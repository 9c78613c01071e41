"""Request dependencies: the store (through a reader) and the authenticated principal."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Annotated, TypeVar

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from user_limits.api.errors import ApiError, StoreUnavailable
from user_limits.api.security import ANONYMOUS_ADMIN, AuthError, KeysUnavailable, Principal, TokenVerifier
from user_limits.bootstrap import reads_in_process
from user_limits.stores.base import LimitStore

T = TypeVar("T")
logger = logging.getLogger("user_limits.api")

bearer = HTTPBearer(
    auto_error=False,
    description="A JWT: `sub` = the userId whose limits it may read, or `scope` containing user-limits:admin.",
)


class StoreReader:
    """Runs reads against the store; any failure of the store becomes a 503 without internals.

    Stores that read in process (memory, SQLite: tens of microseconds, cheaper on the event loop
    than a thread hop) are read inline; network stores (PostgreSQL, DynamoDB) in the thread pool,
    so that the event loop never waits on the network. Which is which, the store's module says.
    """

    def __init__(self, store: LimitStore) -> None:
        self.store = store
        self.inline = reads_in_process(store.url)

    async def __call__(self, read: Callable[[LimitStore], T]) -> T:
        try:
            if self.inline:
                return read(self.store)
            return await run_in_threadpool(read, self.store)
        except Exception:
            logger.exception("the store failed")
            raise StoreUnavailable() from None


def unauthorized(message: str) -> ApiError:
    return ApiError(401, message, headers={"WWW-Authenticate": "Bearer"})


async def store_reader(request: Request) -> StoreReader:
    reader: StoreReader = request.app.state.reader
    return reader


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


StoreReaderDep = Annotated[StoreReader, Depends(store_reader)]
PrincipalDep = Annotated[Principal, Depends(current_principal)]
