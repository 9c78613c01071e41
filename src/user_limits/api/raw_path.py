"""Routes whose path parameters come from the request's raw path, so that an id may hold a ``/``.

The ASGI ``path`` is percent-decoded: a request for user ``a/b``'s limits,
``/api/user-limits/a%2Fb``, arrives as ``/api/user-limits/a/b``, which the router would take for
user ``a``'s limit ``b`` (another player's data, for an admin token). These routes match against
the raw path, decoded one segment at a time, and their parameters are the decoded segments.

Without a raw path there is nothing to tell them apart: Mangum sets none, and API Gateway decodes
the path itself. Behind API Gateway a ``/`` in an id is read as a separator.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from fastapi.routing import APIRoute
from starlette.routing import Match
from starlette.types import Scope


def segment_path(scope: Scope) -> str | None:
    """The path with each raw segment decoded, and any ``/`` or ``%`` inside a segment encoded
    again (``%2F``, ``%25``); None when the decoded path is exact already, or no raw path matches."""
    raw: bytes | None = scope.get("raw_path")
    if not raw or b"%" not in raw:
        return None  # nothing encoded: the decoded path splits exactly where the raw one does
    segments = [unquote(segment) for segment in raw.decode("latin-1").split("/")]
    if "/".join(segments) != scope["path"]:
        return None  # a raw path that is not this path's (a proxy rewrote one of them): keep the path
    return "/".join(segment.replace("%", "%25").replace("/", "%2F") for segment in segments)


class RawPathRoute(APIRoute):
    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        path = segment_path(scope)
        if path is None:
            return super().matches(scope)
        match, child = super().matches({**scope, "path": path})
        if match is not Match.NONE and "path_params" in child:
            params: dict[str, Any] = child["path_params"]
            child["path_params"] = {
                name: unquote(value) if isinstance(value, str) else value for name, value in params.items()
            }
        return match, child
