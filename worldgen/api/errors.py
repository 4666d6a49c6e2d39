"""One error shape for every error: {"error": {"code", "message", "details"}}."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Mount

from worldgen.errors import WorldgenError
from worldgen.jobs.state import IllegalTransition
from worldgen.jobs.store import IdempotencyConflict, JobNotFound
from worldgen.request import error_field, error_message


class ApiError(Exception):
    def __init__(
        self, status: int, code: str, message: str, details: Any = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details
        self.headers = headers or {}


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


def _respond(status: int, code: str, message: str, details: Any = None) -> JSONResponse:
    return JSONResponse(status_code=status, content=error_body(code, message, details))


_HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
               408: "request_timeout", 409: "conflict", 410: "gone", 413: "too_large", 415: "unsupported_media_type",
               422: "invalid_request", 429: "rate_limited"}  # fmt: skip


def allowed_methods(request: Request) -> str | None:
    """The methods the request's path answers, over every route it matches: Starlette's own 405
    names only the first route's (GET /v1/worlds/{id} hid DELETE), and StaticFiles names none."""
    methods: set[str] = set()
    root_path = request.scope.get("app_root_path", request.scope.get("root_path", ""))  # a Mount changes root_path
    scope = {"type": "http", "method": request.method, "path": request.scope["path"], "root_path": root_path}
    for route in iter_route_contexts(request.app.router.routes):  # included routers' routes, too
        match, _ = route.matches(scope)
        if match is Match.NONE:
            continue
        if route.methods:
            methods |= route.methods
        elif isinstance(route.original_route, Mount) and isinstance(route.original_route.app, StaticFiles):
            methods |= {"GET", "HEAD"}
    return ", ".join(sorted(methods)) or None


def _is_json(request: Request) -> bool:
    media_type = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    return media_type == "application/json" or (media_type.startswith("application/") and media_type.endswith("+json"))


def _invalid_json(error: Mapping[str, Any], body: Any) -> JSONResponse:
    """A JSON syntax error: what and where (line and column, as Python's json counts them), no field."""
    what = str((error.get("ctx") or {}).get("error") or "syntax error")
    position = error["loc"][-1] if isinstance(error["loc"][-1], int) else 0
    text = body if isinstance(body, str) else ""
    line = text.count("\n", 0, position) + 1
    column = position - text.rfind("\n", 0, position)
    return _respond(422, "invalid_json", f"request body is not valid JSON: {what} at line {line} column {column}",
                    {"line": line, "column": column, "position": position})  # fmt: skip


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        response = _respond(exc.status, exc.code, exc.message, exc.details)
        response.headers.update(exc.headers)
        if exc.status == 401 and isinstance(exc.details, dict) and "www_authenticate" in exc.details:
            response.headers.setdefault("WWW-Authenticate", str(exc.details["www_authenticate"]))  # RFC 9110 §15.5.2
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        syntax = next((e for e in exc.errors() if e["type"] == "json_invalid"), None)
        if syntax is not None:
            return _invalid_json(syntax, exc.body)
        if isinstance(exc.body, bytes | bytearray) and exc.body and not _is_json(request):
            # FastAPI reads a body as JSON only when it says so; any other body fails as "not an object".
            sent = request.headers.get("content-type") or "no Content-Type"
            return _respond(415, "unsupported_media_type",
                            f"the request body must be JSON: send Content-Type: application/json (got {sent})",
                            {"content_type": request.headers.get("content-type")})  # fmt: skip
        fields = [{"field": error_field(e), "message": error_message(e), "type": e["type"]} for e in exc.errors()]
        summary = "; ".join(f"{f['field'] or 'body'}: {f['message']}" for f in fields[:5])
        return _respond(422, "invalid_request", f"invalid request: {summary}", {"fields": fields})

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        response = _respond(exc.status_code, code, str(exc.detail))
        response.headers.update(exc.headers or {})
        if exc.status_code == 405 and (allow := allowed_methods(request)):
            response.headers["Allow"] = allow  # RFC 9110 §15.5.6: a 405 says what is allowed
        return response

    @app.exception_handler(JobNotFound)
    async def _not_found(request: Request, exc: JobNotFound) -> JSONResponse:
        return _respond(404, "not_found", f"no world with id {exc.args[0]!r}")

    @app.exception_handler(IllegalTransition)
    async def _conflict(request: Request, exc: IllegalTransition) -> JSONResponse:
        return _respond(409, "conflict", str(exc), {"status": exc.current.value})

    @app.exception_handler(IdempotencyConflict)
    async def _idempotency(request: Request, exc: IdempotencyConflict) -> JSONResponse:
        return _respond(409, "idempotency_conflict", str(exc), {"job_id": exc.job_id})

    @app.exception_handler(WorldgenError)
    async def _worldgen(request: Request, exc: WorldgenError) -> JSONResponse:
        return _respond(400, exc.code, exc.message, exc.details)

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        return _respond(500, "internal_error", f"internal error: {type(exc).__name__}")
