"""Bearer-JWT security of the read API: HS256 secrets, RS256 keys from a JWKS served on loopback."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient

from tests.streams import created, process, records
from user_limits.api.app import create_app
from user_limits.api.settings import ConfigError, Settings
from user_limits.bootstrap import open_store
from user_limits.stores.base import LimitStore

SECRET = "another-test-secret-for-hs256-0123456789"
KID = "test-key-1"
PATH = "/api/user-limits/u1"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(**extra: Any) -> dict[str, Any]:
    return {"sub": "u1", "exp": int(time.time()) + 600, **extra}


def hs256(secret: str | bytes = SECRET, **extra: Any) -> str:
    return jwt.encode(claims(**extra), secret, algorithm="HS256")


def handmade(header: dict[str, Any], body: dict[str, Any], key: bytes | None) -> str:
    """A token built by hand: PyJWT itself refuses to make the forgeries tested here."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(body).encode())}"
    signature = b"" if key is None else hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


@pytest.fixture
def seeded_store() -> Iterator[LimitStore]:
    opened = open_store("memory://")
    process(opened, records([created("L1", 1), created("L2", 2, user_id="u2")], None))
    yield opened
    opened.close()


@pytest.fixture
def hs_client(seeded_store: LimitStore) -> TestClient:
    return TestClient(create_app(Settings(jwt_secret=SECRET), seeded_store))


def test_own_token_reads_own_limits_only(hs_client: TestClient) -> None:
    own = hs_client.get(PATH, headers=bearer(hs256()))
    assert own.status_code == 200 and [x["userLimitId"] for x in own.json()["userLimits"]] == ["L1"]
    assert hs_client.get(f"{PATH}/L1", headers=bearer(hs256())).status_code == 200
    for path in ("/api/user-limits/u2", "/api/user-limits/u2/L2"):
        other = hs_client.get(path, headers=bearer(hs256()))
        assert other.status_code == 403
        assert other.json() == {"error": {"status": 403, "message": "this token may not read this user's limits"}}


@pytest.mark.parametrize("scope", ["user-limits:admin", "openid user-limits:admin", ["profile", "user-limits:admin"]])
def test_admin_scope_reads_anyone(hs_client: TestClient, scope: str | list[str]) -> None:
    response = hs_client.get("/api/user-limits/u2", headers=bearer(hs256(sub="ops", scope=scope)))
    assert response.status_code == 200 and response.json()["userLimits"][0]["userLimitId"] == "L2"


@pytest.mark.parametrize("scp", ["user-limits:admin", ["profile", "user-limits:admin"]])
def test_admin_scope_in_scp_reads_anyone(hs_client: TestClient, scp: str | list[str]) -> None:
    # Okta and Entra ID put scopes in `scp`.
    response = hs_client.get("/api/user-limits/u2", headers=bearer(hs256(sub="ops", scp=scp)))
    assert response.status_code == 200


@pytest.mark.parametrize("scope", ["user-limits:read", "user-limits:administrator", ["user-limits:admin2"]])
def test_other_scopes_are_not_admin(hs_client: TestClient, scope: str | list[str]) -> None:
    assert hs_client.get("/api/user-limits/u2", headers=bearer(hs256(scope=scope))).status_code == 403


# RFC 6749 3.3: scope = scope-token *( SP scope-token ). Any other whitespace is part of a token.
NOT_A_SPACE = ["\t", "\n", "\r", "\x0b", "\x0c", "\x1c", "\x1f", "\x85", "\u00a0", "\u2003", "\u2028", "\u3000"]


@pytest.mark.parametrize("separator", NOT_A_SPACE, ids=lambda text: f"U+{ord(text):04X}")
@pytest.mark.parametrize("claim", ["scope", "scp"])
def test_the_admin_scope_is_split_on_plain_spaces_only(hs_client: TestClient, claim: str, separator: str) -> None:
    for scope in (
        f"openid{separator}user-limits:admin",
        f"{separator}user-limits:admin",
        f"user-limits:admin{separator}",
    ):
        response = hs_client.get("/api/user-limits/u2", headers=bearer(hs256(sub="ops", **{claim: scope})))
        assert response.status_code == 403, repr(scope)
    # A plain space still separates, however many.
    plain = hs_client.get(
        "/api/user-limits/u2", headers=bearer(hs256(sub="ops", **{claim: "openid  user-limits:admin"}))
    )
    assert plain.status_code == 200


def valid_but_tampered() -> str:
    header, _, signature = hs256().split(".")
    return f"{header}.{b64(json.dumps(claims(sub='u1', scope='user-limits:admin')).encode())}.{signature}"


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "missing bearer token"),
        ({"Authorization": "Basic dTE6cGFzc3dvcmQ="}, "missing bearer token"),
        (bearer("not.a.token"), "invalid token"),
        (bearer(valid_but_tampered()), "invalid token"),
        (bearer(hs256("a-different-secret-of-enough-length-0123")), "invalid token"),
        (bearer(hs256(exp=int(time.time()) - 3600)), "token expired"),
        (bearer(jwt.encode({"sub": "u1"}, SECRET, algorithm="HS256")), "invalid token: no `exp` claim"),
        (bearer(handmade({"alg": "none", "typ": "JWT"}, claims(), None)), "invalid token"),
        (bearer(handmade({"alg": "HS512", "typ": "JWT"}, claims(), SECRET.encode())), "invalid token"),
    ],
)
def test_unusable_tokens_are_401(hs_client: TestClient, headers: dict[str, str], message: str) -> None:
    response = hs_client.get(PATH, headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.json() == {"error": {"status": 401, "message": message}}


def test_a_verified_token_is_refused_once_it_expires(seeded_store: LimitStore) -> None:
    client = TestClient(create_app(Settings(jwt_secret=SECRET, jwt_leeway=0), seeded_store))
    short_lived = hs256(exp=int(time.time()) + 2)
    assert client.get(PATH, headers=bearer(short_lived)).status_code == 200  # verified, and remembered
    time.sleep(3.1)
    response = client.get(PATH, headers=bearer(short_lived))
    assert response.status_code == 401 and response.json()["error"]["message"] == "token expired"


def test_audience_and_issuer_are_checked_when_configured(seeded_store: LimitStore) -> None:
    client = TestClient(
        create_app(
            Settings(jwt_secret=SECRET, jwt_audience="user-limits", jwt_issuer="https://idp.test/"), seeded_store
        )
    )
    good = {"aud": "user-limits", "iss": "https://idp.test/"}
    assert client.get(PATH, headers=bearer(hs256(**good))).status_code == 200
    for extra, message in [
        ({**good, "aud": "billing"}, "invalid token: wrong audience"),
        ({**good, "iss": "https://evil.test/"}, "invalid token: wrong issuer"),
        ({"iss": "https://idp.test/"}, "invalid token: no `aud` claim"),
    ]:
        response = client.get(PATH, headers=bearer(hs256(**extra)))
        assert response.status_code == 401 and response.json()["error"]["message"] == message


class Jwks:
    """A JWKS endpoint on loopback, serving one RSA public key; counts its fetches."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        body = json.dumps({"keys": [{**jwk, "kid": KID, "use": "sig", "alg": "RS256"}]}).encode()
        self.fetches = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.fetches += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/.well-known/jwks.json"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def public_pem(self) -> bytes:
        return self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def rs256(self, kid: str = KID, **extra: Any) -> str:
        return jwt.encode(claims(**extra), self.key, algorithm="RS256", headers={"kid": kid})


@pytest.fixture(scope="module")
def jwks() -> Iterator[Jwks]:
    server = Jwks()
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture
def rs_client(seeded_store: LimitStore, jwks: Jwks) -> TestClient:
    return TestClient(create_app(Settings(jwks_url=jwks.url), seeded_store))


def test_rs256_tokens_from_the_jwks_are_accepted_and_keys_cached(rs_client: TestClient, jwks: Jwks) -> None:
    before = jwks.fetches
    for _ in range(3):
        assert rs_client.get(PATH, headers=bearer(jwks.rs256())).status_code == 200
    assert jwks.fetches - before <= 1
    assert rs_client.get("/api/user-limits/u2", headers=bearer(jwks.rs256())).status_code == 403


def test_jwks_mode_refuses_hs_rs_confusion_and_other_algorithms(rs_client: TestClient, jwks: Jwks) -> None:
    # The classic confusion: an HS256 token "signed" with the server's own public RSA key.
    confused = handmade(
        {"alg": "HS256", "typ": "JWT", "kid": KID}, claims(scope="user-limits:admin"), jwks.public_pem()
    )
    none = handmade({"alg": "none", "typ": "JWT", "kid": KID}, claims(), None)
    unknown_kid = jwks.rs256(kid="someone-elses-key")
    other_key = jwt.encode(
        claims(),
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
        algorithm="RS256",
        headers={"kid": KID},
    )
    for forged in (confused, none, unknown_kid, other_key, hs256()):
        response = rs_client.get("/api/user-limits/u2", headers=bearer(forged))
        assert response.status_code == 401, forged
        assert response.json()["error"]["message"].startswith("invalid token")


def test_hs256_mode_refuses_rs256_tokens(hs_client: TestClient, jwks: Jwks) -> None:
    assert hs_client.get(PATH, headers=bearer(jwks.rs256())).status_code == 401


def test_jwks_outage_is_503(seeded_store: LimitStore, jwks: Jwks) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    client = TestClient(create_app(Settings(jwks_url=f"http://127.0.0.1:{closed_port}/jwks.json"), seeded_store))
    response = client.get(PATH, headers=bearer(jwks.rs256()))
    assert response.status_code == 503
    assert response.json()["error"]["message"] == "cannot check the token now, try again later"


def test_auth_off_opens_everything(seeded_store: LimitStore, caplog: pytest.LogCaptureFixture) -> None:
    client = TestClient(create_app(Settings(auth="off"), seeded_store))
    assert "USER_LIMITS_AUTH=off" in caplog.text
    assert client.get("/api/user-limits/u2").status_code == 200
    assert client.get("/config").json() == {"auth": False}


def test_auth_is_on_by_default_and_the_page_is_told(hs_client: TestClient) -> None:
    assert hs_client.get("/config").json() == {"auth": True}


@pytest.mark.parametrize(
    ("settings", "fragment"),
    [
        ({}, "no key is configured"),
        ({"jwt_secret": "short"}, "too short"),
        ({"jwt_secret": SECRET, "jwks_url": "http://127.0.0.1:1/jwks"}, "not both"),
        ({"jwks_url": "file:///etc/passwd"}, "http(s) URL"),
    ],
)
def test_misconfiguration_refuses_to_build_the_app(settings: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        create_app(Settings(**settings), open_store("memory://"))


def test_serve_refuses_to_start_without_a_key(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("USER_LIMITS_")}
    result = subprocess.run(
        [sys.executable, "-m", "user_limits", "serve", "--store", f"sqlite:///{tmp_path}/x.db", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no key is configured" in lines[0] and "USER_LIMITS_JWT_SECRET" in lines[0]
    assert "Traceback" not in result.stderr


def test_serve_refuses_a_bad_setting_in_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "USER_LIMITS_AUTH": "maybe", "USER_LIMITS_JWT_SECRET": SECRET}
    result = subprocess.run(
        [sys.executable, "-m", "user_limits", "serve", "--store", f"sqlite:///{tmp_path}/x.db"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0 and "USER_LIMITS_AUTH" in result.stderr and "Traceback" not in result.stderr
