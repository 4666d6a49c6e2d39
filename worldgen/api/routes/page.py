"""GET /: the web page (built into worldgen/web/static by scripts/serve)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import FileResponse, HTMLResponse, Response

from worldgen.web import STATIC

router = APIRouter(include_in_schema=False)

NOT_BUILT = """<!doctype html><title>worldgen</title><h1>worldgen</h1>
<p>The web page has not been built. Run <code>./scripts/serve</code>, or
<code>npm --prefix web ci && npm --prefix web run build</code>. The API is at <a href="/docs">/docs</a>.</p>"""


@router.get("/")
def index() -> Response:
    page = STATIC / "index.html"
    if not page.is_file():
        return HTMLResponse(NOT_BUILT, status_code=503)
    return FileResponse(page, media_type="text/html")
