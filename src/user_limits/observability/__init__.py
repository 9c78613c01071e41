"""What the service and the consumer tell their operators: Prometheus metrics (``metrics``)."""

__all__: list[str] = []
