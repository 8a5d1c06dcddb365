"""One error shape for every error the API returns, whatever raised it.

    {"error": {"code": "bad_parameter", "message": "...", "details": {...}}}

``code`` is stable (clients branch on it), ``message`` is for the person reading
it: it names the parameter at fault and says what to do.  FastAPI's own
validation errors, Starlette's 404/405, the store's QueryError/StoreError and
anything unexpected are all reshaped into it, so a client has one parser.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from storage.base import QueryError, StoreError

log = logging.getLogger("fansipan.api")


class ApiError(Exception):
    """An error to return as is: status, stable code, a message that says what to do, details."""

    def __init__(self, status: int, code: str, message: str, details: dict | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.details = details or {}
        self.headers = headers


def bad_parameter(name: str, message: str, **details: Any) -> ApiError:
    return ApiError(400, "bad_parameter", f"{name}: {message}", {"parameter": name, **details})


def not_found(what: str, ident: object, hint: str) -> ApiError:
    return ApiError(404, "not_found", f"no {what} {ident!r}: {hint}", {what: ident})


class ErrorBody(BaseModel):
    code: str = Field(description="stable, machine-readable: bad_parameter, unauthorized, forbidden, not_found, "
                                  "conflict, too_many_points, validation_error, store_unavailable, internal_error...")
    message: str = Field(description="what went wrong, naming the parameter at fault, and what to do")
    details: dict[str, Any] = Field(default_factory=dict)


class ErrorResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"error": {
        "code": "bad_parameter",
        "message": "start: '2026-13-01' is not a time: use RFC 3339 (2026-11-27T10:00:00Z), epoch seconds or ms, "
                   "or now-1h",
        "details": {"parameter": "start"}}}]})

    error: ErrorBody


_DESCRIPTIONS = {
    400: "Bad parameter: the message names it and what is accepted / Tham số sai",
    401: "No API key, or an unknown or revoked one: send `Authorization: Bearer <key>` or `X-API-Key` / Thiếu khóa API",
    403: "The key's role does not allow this / Khóa API không đủ quyền",
    404: "No such resource / Không tìm thấy",
    409: "The resource's state does not allow this action / Trạng thái không cho phép",
    413: "The answer would be too large: the message says how to narrow it / Kết quả quá lớn",
    422: "The request does not match the schema: details.errors lists every problem / Yêu cầu không hợp lệ",
    500: "Internal error: retrying will not help; report it / Lỗi nội bộ",
    501: "Not available with this store / Không hỗ trợ",
    503: "The store or the incidents database is unavailable: retry later / Tạm thời không khả dụng",
}


def responses(*codes: int, html_route: bool = False) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` entries in the error shape for the given status codes (422 replaces FastAPI's own).

    ``html_route``: the route answers HTML, but its errors are JSON all the same; FastAPI would file a
    ``model`` under the route's own media type, so the schema is referenced explicitly.
    """
    if html_route:
        ref = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
        return {c: {"description": _DESCRIPTIONS[c], "content": ref} for c in codes}
    return {c: {"model": ErrorResponse, "description": _DESCRIPTIONS[c]} for c in codes}


def error_response(status: int, code: str, message: str, details: dict | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, "details": details or {}}},
                        status_code=status, headers=headers)


def _param(loc: tuple) -> tuple[str, str]:
    """('query', 'limit') -> ('query', 'limit'); ('body', 'comment') -> ('body', 'comment')."""
    where = str(loc[0]) if loc else "request"
    name = ".".join(str(p) for p in loc[1:]) or where
    return where, name


async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
    errors = []
    for e in exc.errors():
        where, name = _param(tuple(e.get("loc", ())))
        errors.append({"in": where, "parameter": name, "message": e.get("msg", ""), "type": e.get("type", "")})
    first = errors[0] if errors else {"in": "request", "parameter": "request", "message": "invalid"}
    more = f" (and {len(errors) - 1} more problem(s), see details.errors)" if len(errors) > 1 else ""
    message = f"{first['in']} parameter {first['parameter']!r}: {first['message']}{more}; see /docs for the schema"
    return error_response(422, "validation_error", message, {"errors": errors})


async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
    return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)


async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    if exc.status_code == 404:
        return error_response(404, "not_found", f"no route {request.method} {request.url.path}: "
                                                "see /docs for the API's routes", {"path": request.url.path})
    if exc.status_code == 405:
        return error_response(405, "method_not_allowed", f"{request.method} is not allowed on {request.url.path}: "
                                                         "see /docs for the methods it takes", {})
    if exc.status_code == 400:  # Starlette could not read the body (not JSON, not UTF-8)
        return error_response(400, "bad_parameter", f"body: {exc.detail}: send a JSON object with "
                                                    "Content-Type: application/json; see /docs for its schema",
                              {"parameter": "body"})
    if exc.status_code == 413:  # api/body_limit.py, for a body without Content-Length
        from .body_limit import MAX_BODY_BYTES, too_large

        return too_large(MAX_BODY_BYTES)
    return error_response(exc.status_code, "http_error", str(exc.detail), {}, getattr(exc, "headers", None))


async def _query_error(_: Request, exc: QueryError) -> JSONResponse:
    # The API checks parameters against the registry before the store; the store's own check is the backstop.
    return error_response(400, "bad_parameter", str(exc), {})


async def _store_error(_: Request, exc: StoreError) -> JSONResponse:
    log.warning("store error: %s", exc)
    if exc.retryable:
        return error_response(503, "store_unavailable", "the telemetry store is unavailable or overloaded: "
                                                        "retry in a few seconds", {"retryable": True},
                              {"Retry-After": "5"})
    return error_response(500, "store_error", "the telemetry store refused the query: report this with the time "
                                              "of the request", {"retryable": False})


async def _not_supported(_: Request, exc: NotImplementedError) -> JSONResponse:
    return error_response(501, "not_supported", f"not available with this store: {exc}; "
                                                "FANSIPAN_STORE=sqlite, influx1 or influx2 keep it", {})


async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    # Never echo internals (paths, SQL, stack) to the caller; the log has them.
    log.exception("unhandled error: %s", exc)
    return error_response(500, "internal_error", "internal error: report this with the time of the request", {})


def install(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(QueryError, _query_error)
    app.add_exception_handler(StoreError, _store_error)
    app.add_exception_handler(NotImplementedError, _not_supported)
    app.add_exception_handler(Exception, _unexpected)
