"""The read API: FastAPI over any store, with bearer-JWT security and the web page."""

from user_limits.api.app import create_app
from user_limits.api.settings import ConfigError, Settings, load_settings

__all__ = ["ConfigError", "Settings", "create_app", "load_settings"]
