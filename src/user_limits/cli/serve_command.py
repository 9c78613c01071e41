"""serve: the read API and the web page, with uvicorn."""

from __future__ import annotations

import logging
from importlib.util import find_spec
from typing import Annotated

import typer

from user_limits.cli.app import StoreOption, app


def metrics_available() -> bool:
    return find_spec("prometheus_client") is not None


@app.command()
def serve(
    store: StoreOption = None,
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="TCP port.")] = 8000,
) -> None:
    """Serve the read API (/api/user-limits/{userId}, /docs), the web page (/) and /metrics."""
    import uvicorn

    from user_limits.api.app import create_app
    from user_limits.api.settings import load_settings
    from user_limits.bootstrap import store_url

    # The store URL as every command reads it (an empty --store or USER_LIMITS_STORE is refused).
    settings = load_settings(store=store_url(store))
    # Built before uvicorn starts: a missing key or an unusable store is one line, not a traceback.
    with_metrics = metrics_available()
    api = create_app(settings, metrics=with_metrics)
    if not with_metrics:
        logging.getLogger("user_limits.api").warning(
            "no /metrics: prometheus-client is not installed (pip install 'user-limits[metrics]')"
        )
    uvicorn.run(api, host=host, port=port, log_level="info")
