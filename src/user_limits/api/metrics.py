"""``/metrics`` for ``serve``: a pure ASGI middleware that times every request, and the route that
answers Prometheus' scrape (text format, no authentication: route templates and counts only,
never a user id or a figure).

The route label is the matched route's template (``/api/user-limits/{userId}``), ``/web`` for the
page's files and ``unmatched`` for a 404 outside every route, so a scanner trying random paths
cannot blow up the number of series. Requires the ``metrics`` extra (prometheus-client).
"""

from __future__ import annotations

import time

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from user_limits.api.deps import StoreReader
from user_limits.observability.metrics import CONTENT_TYPE_LATEST, ApiMetrics

UNMATCHED = "unmatched"


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        root_path = scope.get("root_path", "")
        status = 500  # what the client gets if the app raises before answering

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            self.metrics.observe(scope["method"], _route(scope, root_path), status, time.perf_counter() - started)


def _route(scope: Scope, root_path: str) -> str:
    # FastAPI writes the matched route into the request's scope; a mount (the page's files)
    # extends the root path by its own path instead.
    path = getattr(scope.get("route"), "path", None)
    if isinstance(path, str) and path:
        return path
    mounted = str(scope.get("root_path", ""))[len(root_path) :]
    return mounted or UNMATCHED


def install(app: FastAPI, reader: StoreReader) -> ApiMetrics:
    """Time every request of ``app`` and serve ``GET /metrics``; the store's freshness is read per scrape."""
    metrics = ApiMetrics(as_of=lambda: reader.store.as_of())

    @app.get("/metrics", include_in_schema=False)
    async def scrape(request: Request) -> Response:
        # Network stores are read off the event loop, like every other read.
        body = metrics.exposition() if reader.inline else await run_in_threadpool(metrics.exposition)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return metrics
