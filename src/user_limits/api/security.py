"""Bearer-JWT verification and the access rule.

One key type is configured, and only its algorithm is accepted: HS256 with a shared secret, or
RS256 with keys from a JWKS URL. That rules out ``alg: none`` and HS/RS confusion (an HS256 token
"signed" with the public RSA key). ``exp`` is required. A token may read the limits of its ``sub``;
a token whose ``scope`` (or ``scp``) holds ``user-limits:admin`` may read anyone's.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import jwt

from user_limits.api.settings import ConfigError, Settings

ADMIN_SCOPE = "user-limits:admin"
MIN_SECRET_BYTES = 32  # RFC 7518 3.2: an HS256 key is at least as long as the hash
# Clients send the same token on every call (the page polls): a verified token is remembered,
# bounded in number and time, so that a JWKS key withdrawn upstream stops working within a minute.
CACHE_SIZE = 4096
CACHE_SECONDS = 60.0

logger = logging.getLogger("user_limits.api")


class AuthError(Exception):
    """No usable token: answered with 401 and ``WWW-Authenticate: Bearer``."""


class KeysUnavailable(Exception):
    """The JWKS endpoint does not answer: the token cannot be checked now (503)."""


@dataclass(frozen=True, slots=True)
class Principal:
    subject: str | None
    admin: bool

    def may_read(self, user_id: str) -> bool:
        return self.admin or self.subject == user_id


ANONYMOUS_ADMIN = Principal(subject=None, admin=True)


def _scopes(claims: dict[str, Any]) -> list[str]:
    """``scope`` (RFC 8693: a space-separated string) and ``scp`` (Okta, Entra ID: often a list).

    Split on the space character alone, as RFC 6749 3.3 defines a scope list: ``str.split()``
    also splits on tabs, newlines and Unicode spaces, so ``"x\tuser-limits:admin"`` (one token,
    not a scope we know) would have granted admin."""
    scopes: list[str] = []
    for name in ("scope", "scp"):
        value = claims.get(name)
        if isinstance(value, str):
            scopes.extend(value.split(" "))
        elif isinstance(value, list):
            scopes.extend(item for item in value if isinstance(item, str))
    return scopes


class TokenVerifier:
    """Checks a bearer token against the configured key; built once per app."""

    def __init__(self, settings: Settings) -> None:
        secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret else None
        if secret and settings.jwks_url:
            raise ConfigError("set either USER_LIMITS_JWT_SECRET or USER_LIMITS_JWKS_URL, not both")
        self._jwks: jwt.PyJWKClient | None = None
        self._secret: str | None = None
        if settings.jwks_url:
            if not settings.jwks_url.startswith(("https://", "http://")):
                raise ConfigError(f"USER_LIMITS_JWKS_URL must be an http(s) URL, not {settings.jwks_url!r}")
            self._jwks = jwt.PyJWKClient(settings.jwks_url, cache_keys=True, lifespan=settings.jwks_lifespan)
            self.algorithms = ["RS256"]
        elif secret:
            if len(secret.encode()) < MIN_SECRET_BYTES:
                raise ConfigError(f"USER_LIMITS_JWT_SECRET is too short: use at least {MIN_SECRET_BYTES} bytes")
            self._secret = secret
            self.algorithms = ["HS256"]
        else:
            raise ConfigError(
                "authentication is on but no key is configured: set USER_LIMITS_JWT_SECRET (HS256) or "
                "USER_LIMITS_JWKS_URL (RS256), or USER_LIMITS_AUTH=off for a local demo"
            )
        self.audience = settings.jwt_audience
        self.issuer = settings.jwt_issuer
        self.leeway = settings.jwt_leeway
        self._options: Any = {"require": ["exp"], "verify_aud": self.audience is not None}
        # token -> (principal, until when it may be served from here: monotonic seconds)
        self._verified: OrderedDict[str, tuple[Principal, float]] = OrderedDict()
        self._lock = threading.Lock()  # JWKS verification runs in the thread pool

    @property
    def fetches_keys(self) -> bool:
        """True when verifying may block on the network (JWKS), so it belongs off the event loop."""
        return self._jwks is not None

    def _key(self, token: str) -> Any:
        if self._jwks is None:
            return self._secret
        try:
            return self._jwks.get_signing_key_from_jwt(token).key
        except jwt.PyJWKClientConnectionError as error:
            logger.error("cannot fetch the JWKS: %s", error)
            raise KeysUnavailable("cannot fetch the signing keys") from None
        except jwt.PyJWKClientError:
            raise AuthError("invalid token: no matching signing key") from None
        except jwt.InvalidTokenError:
            raise AuthError("invalid token") from None

    def verify(self, token: str) -> Principal:
        now = time.monotonic()
        cached = self._verified.get(token)
        if cached is not None:
            if now < cached[1]:
                return cached[0]
            self._verified.pop(token, None)
        principal, expires_at = self._check(token)
        # Served from the cache only while the token is unexpired (by the wall clock, with the
        # same leeway the check allows) and for at most CACHE_SECONDS.
        until = now + min(CACHE_SECONDS, expires_at + self.leeway - time.time())
        if until > now:
            with self._lock:
                self._verified[token] = (principal, until)
                if len(self._verified) > CACHE_SIZE:
                    self._verified.popitem(last=False)
        return principal

    def _check(self, token: str) -> tuple[Principal, float]:
        try:
            claims = jwt.decode(
                token,
                self._key(token),
                algorithms=self.algorithms,
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options=self._options,
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("token expired") from None
        except jwt.InvalidAudienceError:
            raise AuthError("invalid token: wrong audience") from None
        except jwt.InvalidIssuerError:
            raise AuthError("invalid token: wrong issuer") from None
        except jwt.MissingRequiredClaimError as error:
            raise AuthError(f"invalid token: no `{error.claim}` claim") from None
        except jwt.InvalidTokenError:
            raise AuthError("invalid token") from None
        subject = claims.get("sub")
        principal = Principal(subject if isinstance(subject, str) else None, ADMIN_SCOPE in _scopes(claims))
        return principal, float(claims["exp"])


def build_verifier(settings: Settings) -> TokenVerifier | None:
    """The verifier, or None when auth is off (with a warning); ConfigError if on without a key."""
    if settings.auth == "off":
        logger.warning("USER_LIMITS_AUTH=off: the API is open, anyone can read every user's limits (local demo only)")
        return None
    return TokenVerifier(settings)
