"""The DynamoDB store: :mod:`.layout` (the table's items), :mod:`.plan` (an outcome as transactions,
pure), :mod:`.client` (retries and backoff), :mod:`.store` (reads, commits, the layout's migration)."""

__all__: list[str] = []
