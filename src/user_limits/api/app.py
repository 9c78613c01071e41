"""The application factory: settings, key, store, routers, error handlers and the web page."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from user_limits import __version__
from user_limits.api import errors
from user_limits.api.deps import StoreReader
from user_limits.api.routers import health, user_limits
from user_limits.api.security import build_verifier
from user_limits.api.settings import Settings, load_settings
from user_limits.bootstrap import open_store
from user_limits.stores.base import LimitStore

WEB_DIR = Path(__file__).resolve().parents[1] / "web"
# The page loads only its own script and style, and talks only to this origin.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def create_app(settings: Settings | None = None, store: LimitStore | None = None, metrics: bool = False) -> FastAPI:
    """The API. Raises ConfigError (one line for the user) if auth is on without a key.

    A store passed in stays the caller's; one opened here from ``settings.store`` is closed at shutdown.
    ``metrics``: time every request and serve ``/metrics`` (needs the ``metrics`` extra).
    """
    settings = settings or load_settings()
    verifier = build_verifier(settings)
    owned = store is None
    opened = store if store is not None else open_store(settings.store)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        if owned:
            opened.close()

    app = FastAPI(
        title="user-limits read API",
        version=__version__,
        description="Players' responsible-gambling limits, as projected from the event stream.",
        lifespan=lifespan,
        # A redirect to the path without its trailing slash would be built from the decoded path,
        # turning an id's %2F into a separator: /api/user-limits/a%2Fb/ must not lead to a's limit b.
        redirect_slashes=False,
    )
    app.state.store = opened
    app.state.reader = StoreReader(opened)
    app.state.verifier = verifier
    errors.install(app)
    if metrics:
        from user_limits.api.metrics import install as install_metrics

        app.state.metrics = install_metrics(app, app.state.reader)
    app.include_router(user_limits.router)
    app.include_router(health.router)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(WEB_DIR / "index.html", headers=PAGE_HEADERS)

    app.mount("/web", StaticFiles(directory=WEB_DIR), name="web")
    return app
