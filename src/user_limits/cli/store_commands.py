"""init: create the store's schema or table."""

from __future__ import annotations

from user_limits.bootstrap import initialize, store_url
from user_limits.cli.app import StoreOption, app


@app.command()
def init(store: StoreOption = None) -> None:
    """Create the store's schema (PostgreSQL migrations, the DynamoDB table, the SQLite file)."""
    print(initialize(store_url(store)))
