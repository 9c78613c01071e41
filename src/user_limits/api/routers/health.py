"""Liveness of the API and its store, and what the web page needs to know."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from user_limits.api.deps import StoreReaderDep
from user_limits.api.errors import documented
from user_limits.api.params import no_query
from user_limits.api.schemas import ClientConfig, Health

router = APIRouter(tags=["health"], dependencies=[Depends(no_query)])


@router.get("/healthz", response_model=Health, responses=documented(503))
async def healthz(read: StoreReaderDep) -> Health:
    """200 when the store answers, 503 when it does not."""
    await read(lambda store: store.ping())
    return Health(status="ok")


@router.get("/config", response_model=ClientConfig)
async def client_config(request: Request) -> ClientConfig:
    """Whether the API needs a token (the web page shows the token field only then)."""
    return ClientConfig(auth=request.app.state.verifier is not None)
