"""Property-based tests of the read API against its own OpenAPI schema (schemathesis).

Every generated request carries a valid admin token, so calls get past auth; the checks are
schemathesis' defaults (no 5xx, status codes, content types and bodies as documented).
"""

from __future__ import annotations

import time

import jwt
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    positive_data_acceptance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.integration.test_api import SAMPLE_USER, seed_sample
from user_limits.api.app import create_app
from user_limits.api.settings import Settings
from user_limits.bootstrap import open_store

SECRET = "schemathesis-secret-for-the-read-api-0123"
ADMIN = {
    "Authorization": "Bearer "
    + jwt.encode({"sub": "ops", "scope": "user-limits:admin", "exp": int(time.time()) + 3600}, SECRET, "HS256")
}

_store = open_store("memory://")
seed_sample(_store)
app = create_app(Settings(jwt_secret=SECRET), _store)
schema = schemathesis.openapi.from_asgi("/openapi.json", app)


@schema.parametrize()
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case: schemathesis.Case) -> None:
    # A cursor is opaque and checksummed: a made-up one is rightly refused (400, documented), so
    # "schema-valid data is accepted" cannot hold for requests carrying one.
    excluded = [positive_data_acceptance] if (case.query or {}).get("cursor") is not None else []
    case.call_and_validate(headers=ADMIN, excluded_checks=excluded)
    if "userId" in (case.path_parameters or {}):
        # The same request for a user who has limits, so non-empty answers are checked too (this
        # may make a negative case valid: only the checks that hold either way).
        case.path_parameters = {**case.path_parameters, "userId": SAMPLE_USER}
        case.call_and_validate(
            headers=ADMIN, checks=[not_a_server_error, status_code_conformance, response_schema_conformance]
        )
