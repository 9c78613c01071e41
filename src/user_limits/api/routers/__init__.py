"""One router per resource."""

from user_limits.api.routers import health, user_limits

__all__ = ["health", "user_limits"]
