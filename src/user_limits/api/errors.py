"""One error shape for every failure: ``{"error": {"status": N, "message": "..."}}``.

Messages are written for the caller; store exceptions and validation internals never leak.
"""

from __future__ import annotations

import json
import logging
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from user_limits.api.schemas import ErrorBody

logger = logging.getLogger("user_limits.api")


class ApiError(HTTPException):
    """An expected failure with a status and a message for the caller."""


class StoreUnavailable(ApiError):
    def __init__(self) -> None:
        super().__init__(503, "the store is unavailable, try again later")


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"status": status, "message": message}}, status_code=status, headers=headers)


# The documented error responses of a route, for the OpenAPI schema.
def documented(*statuses: int) -> dict[int | str, dict[str, object]]:
    return {status: {"model": ErrorBody} for status in statuses}


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    return error_response(exc.status_code, str(exc.detail), dict(exc.headers or {}))


def _where(loc: tuple[int | str, ...]) -> str:
    if len(loc) >= 2 and loc[0] in ("query", "path", "header"):
        return f"{loc[0]} parameter `{loc[1]}`"
    return "request"


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = "; ".join(f"{_where(tuple(item['loc']))}: {item['msg']}" for item in exc.errors())
    return error_response(422, problems or "invalid request")


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(500, "internal error")


# Headers of an error response that still mean something once its body is replaced.
_KEPT_HEADERS = {b"www-authenticate", b"allow", b"content-range", b"retry-after", b"cache-control"}


class JsonErrors:
    """Makes every error response of the app the JSON error shape, also those Starlette writes
    itself without raising (a plain-text 400 or 416 for a bad ``Range`` header on the page)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        replaced = False

        async def send_json_errors(message: Message) -> None:
            nonlocal replaced
            if replaced:
                return  # the original body of a replaced response
            if message["type"] == "http.response.start" and message["status"] >= 400:
                headers = message.get("headers", [])
                if not any(
                    name.lower() == b"content-type" and value.startswith(b"application/json") for name, value in headers
                ):
                    replaced = True
                    status = message["status"]
                    body = json.dumps({"error": {"status": status, "message": _phrase(status)}}).encode()
                    kept = [(name, value) for name, value in headers if name.lower() in _KEPT_HEADERS]
                    await send(
                        {
                            "type": "http.response.start",
                            "status": status,
                            "headers": [
                                *kept,
                                (b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                            ],
                        }
                    )
                    await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})
                    return
            await send(message)

        await self.app(scope, receive, send_json_errors)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "error"


def install(app: FastAPI) -> None:
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected)
    app.add_middleware(JsonErrors)
