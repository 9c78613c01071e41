"""The read API over real stores (memory and SQLite) seeded through the real batch path."""

from __future__ import annotations

import base64
import json
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from importlib.resources import files
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jwt
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.streams import created, process, progress, records
from user_limits import aws_lambda
from user_limits.api.app import create_app
from user_limits.api.pagination import SORT_KEYS
from user_limits.api.schemas import UserLimitOut, UserLimitPage
from user_limits.api.settings import Settings
from user_limits.bootstrap import open_store
from user_limits.domain.model import EXPORT_FIELDS
from user_limits.inputs import parse_records
from user_limits.replay import replay
from user_limits.stores.base import LimitStore

SECRET = "test-secret-for-the-read-api-0123456789"
SAMPLE_USER = "RGD1qSo7JPRbgUMxXy9b"  # the bundled sample's user with several limits


def token(subject: str | None = None, scope: str | list[str] | None = None, **claims: Any) -> str:
    body: dict[str, Any] = {"exp": int(time.time()) + 600, **claims}
    if subject is not None:
        body["sub"] = subject
    if scope is not None:
        body["scope"] = scope
    return jwt.encode(body, SECRET, algorithm="HS256")


# Minted at import, used by tests that run long after it (the whole suite): a day, not ten minutes.
ADMIN = {"Authorization": f"Bearer {token('ops', 'user-limits:admin', exp=int(time.time()) + 86_400)}"}


def seed_sample(api_store: LimitStore) -> None:
    data = files("user_limits.data").joinpath("sample_events.json").read_bytes()
    replay(api_store, parse_records(data, "bundled sample"))


@pytest.fixture(params=["memory", "sqlite"])
def api_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LimitStore]:
    opened = open_store("memory://" if request.param == "memory" else f"sqlite:///{tmp_path}/api.db")
    yield opened
    opened.close()


def client_for(api_store: LimitStore) -> TestClient:
    return TestClient(create_app(Settings(jwt_secret=SECRET), api_store), raise_server_exceptions=False)


@pytest.fixture
def sample_client(api_store: LimitStore) -> TestClient:
    seed_sample(api_store)
    return client_for(api_store)


def get(client: TestClient, path: str, **params: Any) -> Any:
    response = client.get(path, params=params, headers=ADMIN)
    assert response.status_code == 200, response.text
    return response.json()


def test_list_returns_the_limits_with_derived_figures_and_as_of(
    sample_client: TestClient, api_store: LimitStore
) -> None:
    body = get(sample_client, f"/api/user-limits/{SAMPLE_USER}")
    UserLimitPage.model_validate(body)
    stored = {limit.user_limit_id: limit for limit in api_store.user_limits(SAMPLE_USER)}
    assert len(stored) >= 2
    assert {item["userLimitId"] for item in body["userLimits"]} == set(stored)
    assert body["nextCursor"] is None
    assert body["asOf"] == api_store.as_of() and body["asOf"] is not None
    for item in body["userLimits"]:
        assert set(item) == {*EXPORT_FIELDS, "remaining", "usedPercent", "updatedAt"} == set(UserLimitOut.model_fields)
        limit = stored[item["userLimitId"]]
        assert Decimal(item["remaining"]) == limit.value - limit.progress
        assert item["usedPercent"] == str(limit.used_percent)
        assert item["updatedAt"] == limit.updated_at
        assert item["value"] == str(limit.value) and item["progress"] == str(limit.progress)


def test_one_limit_and_404s(sample_client: TestClient, api_store: LimitStore) -> None:
    limit = api_store.user_limits(SAMPLE_USER)[0]
    item = get(sample_client, f"/api/user-limits/{SAMPLE_USER}/{limit.user_limit_id}")
    UserLimitOut.model_validate(item)
    assert item["userLimitId"] == limit.user_limit_id and item["remaining"] == str(limit.remaining)
    other_user = next(x for x in api_store.all_limits() if x.user_id != SAMPLE_USER)
    for path in (
        f"/api/user-limits/{SAMPLE_USER}/no-such-limit",
        f"/api/user-limits/{SAMPLE_USER}/{other_user.user_limit_id}",  # exists, but not this user's
    ):
        response = sample_client.get(path, headers=ADMIN)
        assert response.status_code == 404
        assert response.json() == {"error": {"status": 404, "message": "no such limit for this user"}}
    assert get(sample_client, "/api/user-limits/nobody") == {
        "userLimits": [],
        "nextCursor": None,
        "asOf": api_store.as_of(),
    }


def seed_user(api_store: LimitStore) -> None:
    """u1: five limits of different types, periods, statuses, brands and usage; u2: one."""
    process(
        api_store,
        records(
            [
                created("L1", 1, type_="DEPOSIT", period="DAY", value="100", next_reset=5_000),
                created("L2", 2, type_="LOSS", period="WEEK", value="200", next_reset=3_000, brandId="b2"),
                created("L3", 3, type_="BET", period="INDEFINITE", value="50", next_reset=None),
                created("L4", 4, type_="DEPOSIT", period="MONTH", value="1000", status="FUTURE", next_reset=4_000),
                created("L5", 5, type_="SESSION", period="DAY", value="0", next_reset=None),
                created("L9", 6, user_id="u2"),
                progress("L1", 7, "90", "0"),  # 90%
                progress("L2", 8, "20", "0"),  # 10%
                progress("L3", 9, "45", "0"),  # 90%: ties with L1
            ]
        ),
    )


@pytest.fixture
def user_client(api_store: LimitStore) -> TestClient:
    seed_user(api_store)
    return client_for(api_store)


def ids(body: Any) -> list[str]:
    return [item["userLimitId"] for item in body["userLimits"]]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"type": "DEPOSIT"}, ["L1", "L4"]),
        ({"type": ["DEPOSIT", "BET"]}, ["L1", "L3", "L4"]),
        ({"period": "DAY"}, ["L1", "L5"]),
        ({"status": "FUTURE"}, ["L4"]),
        ({"brandId": "b2"}, ["L2"]),
        ({"type": "DEPOSIT", "status": "ACTIVE"}, ["L1"]),
        ({"type": "BALANCE"}, []),
    ],
)
def test_filters(user_client: TestClient, params: dict[str, Any], expected: list[str]) -> None:
    assert ids(get(user_client, "/api/user-limits/u1", **params)) == expected


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("userLimitId", ["L1", "L2", "L3", "L4", "L5"]),
        ("-userLimitId", ["L5", "L4", "L3", "L2", "L1"]),
        ("-usedPercent", ["L1", "L3", "L2", "L4", "L5"]),  # L1 and L3 tie at 90%: by id
        ("usedPercent", ["L4", "L5", "L2", "L1", "L3"]),
        ("nextResetTime", ["L2", "L4", "L1", "L3", "L5"]),  # no reset last
        ("-nextResetTime", ["L1", "L4", "L2", "L3", "L5"]),  # no reset last, also descending
        ("-value", ["L4", "L2", "L1", "L3", "L5"]),
        ("remaining", ["L5", "L3", "L1", "L2", "L4"]),
        ("type", ["L3", "L1", "L4", "L2", "L5"]),
    ],
)
def test_sorting_is_total_and_stable(user_client: TestClient, sort: str, expected: list[str]) -> None:
    assert ids(get(user_client, "/api/user-limits/u1", sort=sort)) == expected


@pytest.mark.parametrize(
    "params",
    [
        {"type": "NOT_A_TYPE"},
        {"status": "active"},
        {"period": "YEAR"},
        {"sort": "password"},
        {"limit": 0},
        {"limit": 101},
    ],
)
def test_bad_parameters_are_422_with_a_clear_message(user_client: TestClient, params: dict[str, Any]) -> None:
    response = user_client.get("/api/user-limits/u1", params=params, headers=ADMIN)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["status"] == 422 and f"query parameter `{next(iter(params))}`" in error["message"]


def test_a_misspelt_parameter_is_refused_not_ignored(user_client: TestClient) -> None:
    response = user_client.get("/api/user-limits/u1", params={"types": "BET"}, headers=ADMIN)
    assert response.status_code == 422
    assert response.json() == {"error": {"status": 422, "message": "unknown query parameter `types`"}}


def walk(client: TestClient, path: str, size: int, between: Any = None, **params: Any) -> list[str]:
    seen: list[str] = []
    cursor = None
    for _ in range(100):
        body = get(client, path, limit=size, **params, **({"cursor": cursor} if cursor else {}))
        assert len(body["userLimits"]) <= size
        seen += ids(body)
        cursor = body["nextCursor"]
        if cursor is None:
            return seen
        if between is not None:
            between()
    raise AssertionError("the walk did not end")


@pytest.mark.parametrize("sort", ["userLimitId", "-usedPercent", "nextResetTime"])
def test_pagination_walks_every_limit_once(user_client: TestClient, sort: str) -> None:
    whole = ids(get(user_client, "/api/user-limits/u1", sort=sort))
    for size in (1, 2, 4, 5):
        assert walk(user_client, "/api/user-limits/u1", size, sort=sort) == whole


def test_a_cursor_is_bound_to_its_query_and_checked(user_client: TestClient) -> None:
    first = get(user_client, "/api/user-limits/u1", limit=2, sort="type")
    cursor = first["nextCursor"]
    # The page size may change along the walk.
    assert get(user_client, "/api/user-limits/u1", limit=3, sort="type", cursor=cursor)["userLimits"]
    raw = bytearray(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    raw[-9] ^= 1  # flip a bit of the last fingerprint
    tampered = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    for params, fragment in [
        ({"sort": "-type"}, "another query"),
        ({"sort": "type", "type": "DEPOSIT"}, "another query"),
        ({"sort": "type", "cursor_for": "u2"}, "another query"),
        ({"sort": "type", "cursor": tampered}, "invalid cursor"),
        ({"sort": "type", "cursor": "not a cursor!"}, "invalid cursor"),
        ({"sort": "type", "cursor": cursor[:-4]}, "invalid cursor"),
    ]:
        user = "u2" if params.pop("cursor_for", None) else "u1"
        params.setdefault("cursor", cursor)
        response = user_client.get(f"/api/user-limits/{user}", params=params, headers=ADMIN)
        assert response.status_code == 400, params
        assert fragment in response.json()["error"]["message"]


class Changes:
    """Applies progress changes to a user's limits between pages, through the batch path."""

    def __init__(self, api_store: LimitStore, plan: list[tuple[int, str, bool]], next_seq: int) -> None:
        self.store, self.plan, self.seq = api_store, list(plan), next_seq

    def __call__(self) -> None:
        if not self.plan:
            return
        index, amount, create = self.plan.pop(0)
        self.seq += 1
        if create:
            event = created(f"N{self.seq}", self.seq, value="100", next_reset=1000 + self.seq)
        else:
            current = next((x for x in self.store.user_limits("u1") if x.user_limit_id == f"L{index}"), None)
            if current is None:
                return
            event = progress(f"L{index}", self.seq, amount, str(current.progress))
        process(self.store, records([event], None))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    values=st.lists(st.sampled_from(["100", "50", "1000", "0", "250.50"]), min_size=1, max_size=12),
    size=st.integers(1, 5),
    sort=st.sampled_from([prefix + key for key in SORT_KEYS for prefix in ("", "-")]),
    plan=st.lists(
        st.tuples(st.integers(0, 11), st.sampled_from(["1", "30", "99.99", "500", "-20"]), st.booleans()), max_size=8
    ),
)
def test_walk_returns_each_limit_exactly_once_while_the_data_changes(
    values: list[str], size: int, sort: str, plan: list[tuple[int, str, bool]]
) -> None:
    api_store = open_store("memory://")
    process(
        api_store,
        records(
            [
                created(f"L{n}", n + 1, value=value, next_reset=(n * 7919) % 5000 or None)
                for n, value in enumerate(values)
            ],
            None,
        ),
    )
    before = {limit.user_limit_id for limit in api_store.user_limits("u1")}
    client = client_for(api_store)
    seen = walk(client, "/api/user-limits/u1", size, between=Changes(api_store, plan, len(values) + 1), sort=sort)
    assert len(seen) == len(set(seen)), "a limit was returned twice"
    assert before <= set(seen), "a limit that existed throughout the walk was skipped"
    assert set(seen) <= {limit.user_limit_id for limit in api_store.user_limits("u1")}


def test_store_outage_is_503_without_internals(
    sample_client: TestClient, api_store: LimitStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> Any:
        raise RuntimeError("SELECT secret_column FROM user_limits: disk I/O error")

    for name in ("user_limits", "user_limit", "ping"):
        monkeypatch.setattr(api_store, name, broken)
    for path in (f"/api/user-limits/{SAMPLE_USER}", f"/api/user-limits/{SAMPLE_USER}/x", "/healthz"):
        response = sample_client.get(path, headers=ADMIN)
        assert response.status_code == 503, path
        assert response.json() == {"error": {"status": 503, "message": "the store is unavailable, try again later"}}
        assert "SELECT" not in response.text and "disk" not in response.text


def test_health_openapi_and_docs(sample_client: TestClient) -> None:
    assert sample_client.get("/healthz").json() == {"status": "ok"}
    schema = sample_client.get("/openapi.json").json()
    assert {"/api/user-limits/{userId}", "/api/user-limits/{userId}/{userLimitId}", "/healthz"} <= set(schema["paths"])
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    docs = sample_client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    unknown = sample_client.get("/no/such/page")
    assert unknown.status_code == 404 and unknown.json()["error"]["status"] == 404


def http_api_event(path: str, query: str = "", headers: dict[str, str] | None = None) -> dict[str, Any]:
    """An API Gateway HTTP API (payload format 2.0) event, as Lambda receives it."""
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": {"host": "abc123.execute-api.eu-west-1.amazonaws.com", **(headers or {})},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123",
            "domainName": "abc123.execute-api.eu-west-1.amazonaws.com",
            "domainPrefix": "abc123",
            "http": {
                "method": "GET",
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": "test",
            },
            "requestId": "req-1",
            "routeKey": "$default",
            "stage": "$default",
            "time": "22/Nov/2026:02:00:00 +0000",
            "timeEpoch": 1795312800000,
        },
        "isBase64Encoded": False,
    }


@pytest.fixture
def lambda_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The sample in a SQLite store that ``api_handler`` will open, auth on; the owner's token."""
    url = f"sqlite:///{tmp_path}/lambda.db"
    seeded = open_store(url)
    seed_sample(seeded)
    seeded.close()
    monkeypatch.setenv("USER_LIMITS_STORE", url)
    monkeypatch.setenv("USER_LIMITS_JWT_SECRET", SECRET)
    monkeypatch.delenv("USER_LIMITS_AUTH", raising=False)
    monkeypatch.setattr(aws_lambda, "_api", None)
    return token(SAMPLE_USER)


def test_lambda_api_handler_serves_the_api(lambda_api: str) -> None:
    own = {"authorization": f"Bearer {lambda_api}"}
    answer = aws_lambda.api_handler(http_api_event(f"/api/user-limits/{SAMPLE_USER}", "sort=-usedPercent&limit=1", own))
    assert answer["statusCode"] == 200
    body = json.loads(answer["body"])
    assert len(body["userLimits"]) == 1 and body["nextCursor"] and body["userLimits"][0]["userId"] == SAMPLE_USER
    denied = aws_lambda.api_handler(http_api_event(f"/api/user-limits/{SAMPLE_USER}"))
    assert denied["statusCode"] == 401 and json.loads(denied["body"])["error"]["message"] == "missing bearer token"


def rest_api_event(
    path: str, query: dict[str, str] | None = None, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """An API Gateway REST API proxy integration (payload format 1.0) event, as Lambda receives it."""
    all_headers = {"Host": "abc123.execute-api.eu-west-1.amazonaws.com", **(headers or {})}
    return {
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": "GET",
        "headers": all_headers,
        "multiValueHeaders": {name: [value] for name, value in all_headers.items()},
        "queryStringParameters": query,
        "multiValueQueryStringParameters": {name: [value] for name, value in (query or {}).items()} or None,
        "pathParameters": {"proxy": path.lstrip("/")},
        "stageVariables": None,
        "requestContext": {
            "resourcePath": "/{proxy+}",
            "httpMethod": "GET",
            "path": f"/prod{path}",
            "accountId": "123456789012",
            "apiId": "abc123",
            "stage": "prod",
            "requestId": "req-2",
            "identity": {"sourceIp": "127.0.0.1", "userAgent": "test"},
        },
        "body": None,
        "isBase64Encoded": False,
    }


def test_lambda_api_handler_serves_a_rest_api_too(lambda_api: str) -> None:
    own = {"Authorization": f"Bearer {lambda_api}"}
    answer = aws_lambda.api_handler(rest_api_event(f"/api/user-limits/{SAMPLE_USER}", {"limit": "1"}, own))
    assert answer["statusCode"] == 200
    body = json.loads(answer["body"])
    assert len(body["userLimits"]) == 1 and body["nextCursor"] and body["userLimits"][0]["userId"] == SAMPLE_USER
    other = aws_lambda.api_handler(rest_api_event("/api/user-limits/someone-else", None, own))
    assert other["statusCode"] == 403


def test_every_store_kind_serves_the_same_answers(store_url: str) -> None:
    """Over memory, SQLite, PostgreSQL and DynamoDB (read in the thread pool: network stores)."""
    opened = open_store(store_url)
    try:
        seed_user(opened)
        client = client_for(opened)
        body = get(client, "/api/user-limits/u1", sort="-usedPercent")
        assert ids(body) == ["L1", "L3", "L2", "L4", "L5"]
        assert body["asOf"] == opened.as_of()
        assert [x["usedPercent"] for x in body["userLimits"]] == ["90.00", "90.00", "10.00", "0.00", "0.00"]
        assert walk(client, "/api/user-limits/u1", 2, sort="nextResetTime") == ["L2", "L4", "L1", "L3", "L5"]
        assert get(client, "/api/user-limits/u1/L2")["remaining"] == "180"
        assert client.get("/api/user-limits/u2/L1", headers=ADMIN).status_code == 404
        assert client.get("/healthz").json() == {"status": "ok"}
    finally:
        opened.close()


# -- responses are never cached, ids may hold any character, every error has the JSON shape


def test_a_players_limits_are_never_cached(user_client: TestClient) -> None:
    for path in ("/api/user-limits/u1", "/api/user-limits/u1/L1"):
        response = user_client.get(path, headers=ADMIN)
        assert response.status_code == 200
        assert response.headers["Cache-Control"] == "no-store"


# Users and limits whose ids hold path syntax: each must be read as itself.
ODD_IDS = ["a/b", "a/../b", "..", ".", "/", "x y", "?#&", "\\", "\u2028", "é/ü"]
# With a "%": Starlette's TestClient decodes the path twice, so these go to a real server.
PERCENT_IDS = ["%", "%2F", "%00", "%252F", "a%2Fb/c"]


def path_segment(text: str) -> str:
    # Dots too: a client resolves a literal ".." segment before sending it.
    return quote(text, safe="").replace(".", "%2E")


def seed_odd_ids(api_store: LimitStore, odd_ids: list[str] = ODD_IDS) -> None:
    events = []
    for n, text in enumerate(odd_ids):
        events.append(created(text, 2 * n + 1, user_id=text, value=str(n + 1)))
        events.append(created(f"plain-{n}", 2 * n + 2, user_id=text, value="7"))
    process(api_store, records(events, None))
    # And what a misread id would find: user "a"'s limit "b", user "x"'s limits.
    process(api_store, records([created("b", 100, user_id="a"), created("y", 101, user_id="x")], None))


def read_odd_ids(client: Any, odd_ids: list[str]) -> None:
    for n, text in enumerate(odd_ids):
        user = path_segment(text)
        body = get(client, f"/api/user-limits/{user}")
        assert sorted(ids(body)) == sorted([text, f"plain-{n}"]), text
        assert {item["userId"] for item in body["userLimits"]} == {text}
        item = get(client, f"/api/user-limits/{user}/{path_segment(text)}")
        assert (item["userId"], item["userLimitId"], item["value"]) == (text, text, str(n + 1))
        assert client.get(f"/api/user-limits/{user}/{path_segment(text + '/x')}", headers=ADMIN).status_code == 404


def test_ids_with_path_syntax_are_read_as_themselves(store_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """Over every store kind: own limits, or a 4xx; never a 503, never an error logged."""
    opened = open_store(store_url)
    try:
        seed_odd_ids(opened)
        client = client_for(opened)
        with caplog.at_level(logging.WARNING, logger="user_limits"):
            read_odd_ids(client, ODD_IDS)
            for path in ("/api/user-limits/%00", "/api/user-limits/u1/%00", "/api/user-limits/a%00b/L1"):
                response = client.get(path, headers=ADMIN)
                assert response.status_code == 422, path
                assert "NUL" in response.json()["error"]["message"]
        assert caplog.records == []
    finally:
        opened.close()


def test_an_encoded_slash_never_reaches_another_users_limit(user_client: TestClient, api_store: LimitStore) -> None:
    process(api_store, records([created("b", 50, user_id="a"), created("c", 51, user_id="a/b")], None))
    # User "a/b" has no limit "b"; user "a" has. Neither the route nor a trailing-slash redirect may mix them up.
    assert ids(get(user_client, "/api/user-limits/a%2Fb")) == ["c"]
    assert ids(get(user_client, "/api/user-limits/a%2fb")) == ["c"]
    for path in ("/api/user-limits/a%2Fb/", "/api/user-limits/a%2Fb/b"):
        response = user_client.get(path, headers=ADMIN, follow_redirects=True)
        assert response.status_code == 404, path
        assert response.json()["error"]["status"] == 404


ERROR_SHAPE_CASES = [
    ("GET", "/no/such/page", {}, 404),
    ("GET", "/api/user-limits", {}, 404),
    ("GET", "/api/user-limits/u1/L1/extra", {}, 404),
    ("GET", "/api/user-limits/u1/", {}, 404),
    ("GET", "/web/no-such-file.js", {}, 404),
    ("POST", "/api/user-limits/u1", {}, 405),
    ("DELETE", "/api/user-limits/u1/L1", {}, 405),
    ("PUT", "/", {}, 405),
    ("POST", "/web/app.js", {}, 405),
    ("GET", "/api/user-limits/u1?limit=x", {}, 422),
    ("GET", "/healthz?verbose=1", {}, 422),
    ("GET", "/api/user-limits/u1", {"Authorization": "Bearer nope"}, 401),
    ("GET", "/", {"Range": "bytes=abc"}, 400),
    ("GET", "/web/app.js", {"Range": "bytes=5-1"}, 400),
    ("GET", "/", {"Range": "bytes=99999999-"}, 416),
]


@pytest.mark.parametrize(("method", "path", "headers", "status"), ERROR_SHAPE_CASES)
def test_every_error_is_the_json_error_shape(
    sample_client: TestClient, method: str, path: str, headers: dict[str, str], status: int
) -> None:
    response = sample_client.request(method, path, headers={**ADMIN, **headers})
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == ["error"] and list(body["error"]) == ["status", "message"]
    assert body["error"]["status"] == status and isinstance(body["error"]["message"], str)
    assert body["error"]["message"]


def test_an_unexpected_failure_is_a_json_500_without_internals(
    sample_client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from user_limits.api.routers import user_limits as routes

    def broken(*args: object) -> Any:
        raise RuntimeError("internal detail that must not leak")

    monkeypatch.setattr(routes, "paginate", broken)
    response = sample_client.get(f"/api/user-limits/{SAMPLE_USER}", headers=ADMIN)
    assert response.status_code == 500
    assert response.json() == {"error": {"status": 500, "message": "internal error"}}


def test_a_head_request_for_an_error_has_no_body(sample_client: TestClient) -> None:
    response = sample_client.head("/", headers={"Range": "bytes=abc"})
    assert response.status_code in (400, 405)
    assert response.content == b""


def test_ids_with_percent_signs_through_a_real_server(tmp_path: Path) -> None:
    import httpx

    url = f"sqlite:///{tmp_path}/odd.db"
    seeded = open_store(url)
    seed_odd_ids(seeded, [*PERCENT_IDS, *ODD_IDS])
    seeded.close()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "user_limits", "serve", "--store", url, "--port", str(port)],
        env={**os.environ, "USER_LIMITS_JWT_SECRET": SECRET, "USER_LIMITS_AUTH": "on"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=ADMIN, timeout=5) as client:
            for _ in range(200):
                try:
                    if client.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            read_odd_ids(client, [*PERCENT_IDS, *ODD_IDS])
            for path in ("/api/user-limits/%00", "/api/user-limits/u1/a%00", "/api/user-limits/a%2Fb%2F/"):
                response = client.get(path)
                assert 400 <= response.status_code < 500, path
                assert response.json()["error"]["status"] == response.status_code
    finally:
        server.terminate()
        _, log = server.communicate(timeout=10)
    assert "Traceback" not in log and "ERROR" not in log, log


# -- a cursor edited in any way is refused

B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def edits(cursor: str) -> Iterator[str]:
    """Every one-character substitution, deletion and insertion, every truncation, and padding or
    alphabet games that a lenient base64 decoder would read back as the same bytes."""
    for at in range(len(cursor)):
        for char in B64URL + "+/=.!~ %":
            if char != cursor[at]:
                yield cursor[:at] + char + cursor[at + 1 :]
        yield cursor[:at] + cursor[at + 1 :]
        for char in "A_=+/.\n":
            yield cursor[:at] + char + cursor[at:]
    for end in range(len(cursor)):
        yield cursor[:end]
    for tail in ("=", "==", "===", "A", "AA", "AAA", "AAAA", "\n", " ", "%3D"):
        yield cursor + tail
    yield cursor.replace("-", "+").replace("_", "/")
    yield cursor.swapcase()


def test_every_edit_of_a_cursor_is_refused() -> None:
    from user_limits.api.pagination import BadCursor, Query, decode_cursor, encode_cursor, fingerprint

    api_store = open_store("memory://")
    seed_user(api_store)
    query = Query("u1", sort="type")
    seen = [fingerprint(limit) for limit in api_store.user_limits("u1")[:2]]
    for cursor in (encode_cursor(query, seen[:1]), encode_cursor(query, seen)):
        assert decode_cursor(cursor, query) in (seen[:1], seen)
        tried = 0
        for edited in edits(cursor):
            if edited == cursor:
                continue
            with pytest.raises(BadCursor):
                decode_cursor(edited, query)
            tried += 1
        assert tried > 1000


def test_an_edited_cursor_is_400_over_http(user_client: TestClient) -> None:
    cursor = get(user_client, "/api/user-limits/u1", limit=2, sort="type")["nextCursor"]
    for edited in [cursor + "=", cursor + "==", cursor[:-1] + chr(ord(cursor[-1]) ^ 1), cursor + "!", "." + cursor]:
        response = user_client.get("/api/user-limits/u1", params={"sort": "type", "cursor": edited}, headers=ADMIN)
        assert response.status_code == 400, edited
        assert response.json() == {"error": {"status": 400, "message": "invalid cursor"}}
