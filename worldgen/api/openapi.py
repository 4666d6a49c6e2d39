"""An OpenAPI document that tells the truth, and API docs that work offline.

Routes declare the errors they raise themselves with `error_responses(...)`. What no route can
know is added here, from what actually answers before or around it:

- every path: 400 bad_host (api/auth.py BrowserGuard, the Host allow-list);
- routes behind `current_caller`: 401 unauthorized and 429 rate_limited, and the optional Bearer key;
- POST/PUT/PATCH/DELETE: 403 cross_site (BrowserGuard); these and any operation with a body:
  408 request_timeout and 413 too_large (api/body_limit.py); a JSON body: 415 when it is sent
  without `Content-Type: application/json` (api/errors.py);
- `{world_id}` paths: 404 not_found (unknown, or another key's) and 410 gone (deleted);
  `{upload_id}` paths: 404.

FastAPI's own 422 (`HTTPValidationError`, a `{detail}` body no request ever gets) becomes ErrorOut
where a request can fail validation and goes where none can (a plain string path parameter).

/docs and /redoc load Swagger UI and ReDoc from this server (/docs/assets), never from a CDN: the
files in worldgen/web/static/docs, copied from the pinned npm packages swagger-ui-dist and redoc by
the web build (web/build.mjs, run by scripts/bootstrap and in the image). Until they are built, the
pages answer 503 and the assets 404, each saying so.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts
from starlette.responses import Response

from worldgen.api.auth import UNSAFE_METHODS, current_caller
from worldgen.api.errors import ApiError
from worldgen.api.schemas import ErrorOut
from worldgen.web import STATIC

ERRORS: dict[int, str] = {
    400: "`bad_host`: the Host header names no host served here (DNS rebinding defence)",
    401: "`unauthorized`: this server needs an API key (`Authorization: Bearer <key>`), or the key is unknown "
    "or revoked",
    403: "`cross_site`: a state-changing request from another site (Origin / Sec-Fetch-Site)",
    404: "`not_found`",
    408: "`request_timeout`: the request body stalled",
    409: "`conflict`",
    410: "`gone`",
    413: "`too_large`: the request body is over the limit (`details.limit` bytes)",
    415: "`unsupported_media_type`: a JSON body sent without `Content-Type: application/json`",
    422: "`invalid_request`: `details.fields` lists each field (`field`, `message`, `type`); `invalid_json`: "
    "the body is not valid JSON (`details.line`, `details.column`)",
    429: "`rate_limited`: too many requests with this key; `Retry-After` (also `details.retry_after`) says "
    "when to try again",
    503: "`not_ready`",
}
"""Default descriptions: the error `code`s each status carries (a route may say more)."""

HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": {"description": "`Bearer`", "schema": {"type": "string"}}},
    429: {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer", "minimum": 1}}},
}

BEARER = "apiKey"
"""The security scheme: `Authorization: Bearer wg_...` (worldgen keys create)."""

DOCS_ASSETS = STATIC / "docs"
SWAGGER_JS, SWAGGER_CSS, REDOC_JS, FAVICON = (
    "swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon-32x32.png"
)  # fmt: skip
_ASSET_TYPES = {SWAGGER_JS: "text/javascript", SWAGGER_CSS: "text/css", REDOC_JS: "text/javascript",
                FAVICON: "image/png"}  # fmt: skip
ASSETS_URL = "/docs/assets"
LOCAL_ONLY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'"
)
"""The docs pages load nothing from elsewhere (ReDoc's sidebar would fetch its logo from cdn.redoc.ly)."""


def error_responses(*statuses: int | tuple[int, str]) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: each status (or `(status, description)`) answers ErrorOut."""
    responses: dict[int | str, dict[str, Any]] = {}
    for entry in statuses:
        status, description = entry if isinstance(entry, tuple) else (entry, ERRORS[entry])
        response: dict[str, Any] = {"model": ErrorOut, "description": description}
        if status in HEADERS:
            response["headers"] = copy.deepcopy(HEADERS[status])
        responses[status] = response
    return responses


def install(app: FastAPI) -> None:
    """The truthful schema at app.openapi_url, and /docs and /redoc from local assets. Create the
    app with `docs_url=None, redoc_url=None` (these replace them)."""

    cache: list[tuple[dict[str, Any], bool | None, dict[str, Any]]] = []

    def openapi() -> dict[str, Any]:
        generated = FastAPI.openapi(app)  # cached by FastAPI until the routes change
        state = getattr(app.state, "worldgen", None)  # set while the app runs (None before its lifespan)
        keys = getattr(state, "auth_required", None)
        if not cache or cache[0][0] is not generated or cache[0][1] is not keys:
            cache[:] = [(generated, keys, truthful(app, generated, keys_required=keys))]
        return cache[0][2]

    app.openapi = openapi  # type: ignore[method-assign]
    schema_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        if missing := _missing_assets(SWAGGER_JS, SWAGGER_CSS):
            return _not_built(app.title, missing, schema_url)
        return _local_only(get_swagger_ui_html(
            openapi_url=schema_url, title=f"{app.title} API", swagger_js_url=f"{ASSETS_URL}/{SWAGGER_JS}",
            swagger_css_url=f"{ASSETS_URL}/{SWAGGER_CSS}", swagger_favicon_url=f"{ASSETS_URL}/{FAVICON}",
            swagger_ui_parameters={"validatorUrl": None},  # else the spec is sent to validator.swagger.io
        ))  # fmt: skip

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        if missing := _missing_assets(REDOC_JS):
            return _not_built(app.title, missing, schema_url)
        return _local_only(get_redoc_html(
            openapi_url=schema_url, title=f"{app.title} API", redoc_js_url=f"{ASSETS_URL}/{REDOC_JS}",
            redoc_favicon_url=f"{ASSETS_URL}/{FAVICON}", with_google_fonts=False,
        ))  # fmt: skip

    @app.get(ASSETS_URL + "/{name}", include_in_schema=False)
    def docs_asset(name: str) -> Response:
        if name not in _ASSET_TYPES:
            raise ApiError(404, "not_found", f"no docs asset named {name[:64]!r}")
        path = DOCS_ASSETS / name
        if not path.is_file():
            raise ApiError(404, "not_found", f"the API docs' assets are not built ({name} not found): "
                           "run scripts/bootstrap")  # fmt: skip
        return FileResponse(path, media_type=_ASSET_TYPES[name], headers={"Cache-Control": "public, max-age=3600"})


def _local_only(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = LOCAL_ONLY
    return page


def _missing_assets(*names: str) -> list[str]:
    return [name for name in names if not (DOCS_ASSETS / name).is_file()]


def _not_built(title: str, missing: list[str], schema_url: str) -> HTMLResponse:
    page = (f"<!doctype html><title>{title} API</title><h1>{title} API</h1>"
            f"<p>The API docs' assets are not built ({', '.join(missing)} not in {_shown(DOCS_ASSETS)}): "
            f"run <code>scripts/bootstrap</code>. The OpenAPI document is at <a href=\"{schema_url}\">"
            f"{schema_url}</a>.</p>")  # fmt: skip
    return HTMLResponse(page, status_code=503)


def _shown(path: Path) -> str:
    parts = path.parts
    return "/".join(parts[parts.index("worldgen") :]) if "worldgen" in parts else path.name


# The generated document, corrected.


def truthful(app: FastAPI, generated: dict[str, Any], *, keys_required: bool | None = None) -> dict[str, Any]:
    """`keys_required`: whether this server needs an API key on /v1 (None: unknown, documented as
    optional)."""
    spec = copy.deepcopy(generated)
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    _add_error_schema(schemas)
    spec["components"].setdefault("securitySchemes", {})[BEARER] = {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key (`worldgen keys create`). "
        + ("This server requires one." if keys_required else "Optional on this server (needed where "
           "WORLDGEN_AUTH=required, or auto off loopback).")
    }  # fmt: skip
    security: list[dict[str, list[str]]] = [{BEARER: []}] if keys_required else [{BEARER: []}, {}]
    for route in iter_route_contexts(app.routes):  # with the routes of included routers
        if not isinstance(route.original_route, APIRoute) or not route.include_in_schema:
            continue
        for method in route.methods or ():
            operation = spec.get("paths", {}).get(route.path_format, {}).get(method.lower())
            if operation is not None:
                _correct(operation, route, method, security)
    unused = ("HTTPValidationError", "ValidationError")  # FastAPI's {detail} bodies, now referred to nowhere
    rest = json.dumps({k: v for k, v in schemas.items() if k not in unused}) + json.dumps(spec.get("paths"))
    for name in unused:
        if name in schemas and f"#/components/schemas/{name}" not in rest:
            del schemas[name]
    return spec


def _correct(operation: dict[str, Any], route: RouteContext, method: str, security: list[dict[str, list[str]]]) -> None:
    responses = operation.setdefault("responses", {})
    generated_422 = responses.get("422", {}).get("content", {}).get("application/json", {}).get("schema", {})
    if generated_422.get("$ref", "").endswith("/HTTPValidationError"):
        del responses["422"]
        if _can_fail_validation(operation):
            responses["422"] = _error_response(422)
    path, statuses = route.path_format or "", {400}
    if _depends_on(route, current_caller):
        statuses |= {401, 429}
        operation["security"] = security
    if method in UNSAFE_METHODS:
        statuses |= {403, 408, 413}
    if "requestBody" in operation:
        statuses |= {408, 413}
        if "application/json" in operation["requestBody"].get("content", {}):
            statuses |= {415}  # errors.py: a body sent as anything else
    if "{world_id}" in path:
        statuses |= {404, 410}
    if "{upload_id}" in path:
        statuses |= {404}
    for status in sorted(statuses):
        responses.setdefault(str(status), _error_response(status))
    operation["responses"] = dict(sorted(responses.items()))


def _error_response(status: int) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": ERRORS[status],
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}},
    }
    if status in HEADERS:
        response["headers"] = copy.deepcopy(HEADERS[status])
    return response


def _add_error_schema(schemas: dict[str, Any]) -> None:
    generated = ErrorOut.model_json_schema(ref_template="#/components/schemas/{model}", mode="serialization")
    for name, schema in generated.pop("$defs", {}).items():
        schemas.setdefault(name, schema)
    schemas.setdefault("ErrorOut", generated)


def _depends_on(route: RouteContext, dependency: Any) -> bool:
    pending = list(route.dependant.dependencies)
    while pending:
        dependant = pending.pop()
        if dependant.call is dependency:
            return True
        pending.extend(dependant.dependencies)
    return False


_ANNOTATIONS = {"title", "description", "default", "examples", "deprecated"}


def _plain_string(schema: dict[str, Any]) -> bool:
    """A schema every string satisfies: a value sent as text cannot fail it."""
    rest = {k: v for k, v in schema.items() if k not in _ANNOTATIONS}
    if rest == {"type": "string"}:
        return True
    variants = rest.pop("anyOf", None)
    return not rest and isinstance(variants, list) and all(v == {"type": "null"} or _plain_string(v) for v in variants)


def _can_fail_validation(operation: dict[str, Any]) -> bool:
    if "requestBody" in operation:
        return True
    for parameter in operation.get("parameters", []):
        if parameter.get("required") and parameter.get("in") != "path":
            return True
        if not _plain_string(parameter.get("schema", {})):
            return True
    return False
