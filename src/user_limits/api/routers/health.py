"""Liveness of the API and its store, and what the web page needs to know."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Depends, Request

from user_limits.api.deps import StoreDep, no_unknown_query
from user_limits.api.errors import StoreUnavailable, documented
from user_limits.api.schemas import ClientConfig, Health

router = APIRouter(tags=["health"], dependencies=[Depends(no_unknown_query)])
logger = logging.getLogger("user_limits.api")


@router.get("/healthz", response_model=Health, responses=documented(503))
def healthz(store: StoreDep) -> Health:
    """200 when the store answers, 503 when it does not."""
    try:
        store.ping()
    except Exception:
        logger.exception("health check: the store does not answer")
        raise StoreUnavailable() from None
    return Health(status="ok")


@router.get("/config", response_model=ClientConfig)
async def client_config(request: Request) -> ClientConfig:
    """Whether the API needs a token (the web page shows the token field only then)."""
    return ClientConfig(auth=request.app.state.verifier is not None)
