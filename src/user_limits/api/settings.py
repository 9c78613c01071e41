"""API settings, from the environment (``USER_LIMITS_*``) through pydantic-settings."""

from __future__ import annotations

from typing import Literal

from pydantic import SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from user_limits.bootstrap import DEFAULT_STORE_URL
from user_limits.errors import UserError


class ConfigError(UserError):
    """The API cannot start with this configuration; the message says what to set."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="USER_LIMITS_", extra="ignore")

    store: str = DEFAULT_STORE_URL
    # "off" is for a local demo only: every caller may read every user's limits.
    auth: Literal["on", "off"] = "on"
    jwt_secret: SecretStr | None = None
    jwks_url: str | None = None
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    # Seconds of clock skew tolerated on exp/nbf/iat.
    jwt_leeway: int = 30
    # How long fetched JWKS keys are trusted before they are fetched again, in seconds.
    jwks_lifespan: int = 300


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, with explicit overrides; a bad value is a one-line ConfigError."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        problems = "; ".join(
            f"USER_LIMITS_{'.'.join(str(part) for part in item['loc']).upper()}: {item['msg']}"
            for item in error.errors()
        )
        raise ConfigError(f"bad API settings: {problems}") from None
