"""/v1/session: the web page's way to use an API key. A browser cannot put an Authorization
header on an EventSource, an <img> or a 3D model load, so the page posts the key once and the
server keeps it in an HttpOnly, SameSite=Strict cookie that `current_caller` reads too (cross-site
requests stay refused by the Origin check)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field

from worldgen.api.auth import SESSION_COOKIE
from worldgen.api.errors import ApiError
from worldgen.api.openapi import error_responses
from worldgen.api.state import AppState, app_state
from worldgen.jobs.api_keys import key_for

router = APIRouter(prefix="/v1/session", tags=["session"])

COOKIE_DAYS = 30


class SessionIn(BaseModel):
    key: str = Field(min_length=1, max_length=200, description="An API key (worldgen keys create).")


@router.post("", status_code=204, responses=error_responses(401))
def open_session(body: SessionIn, request: Request, response: Response, state: AppState = Depends(app_state)) -> None:
    if key_for(state.store, body.key.strip()) is None:
        raise ApiError(401, "unauthorized", "unknown or revoked API key", {"www_authenticate": "Bearer"})
    response.set_cookie(SESSION_COOKIE, body.key.strip(), max_age=COOKIE_DAYS * 86400, httponly=True,
                        samesite="strict", secure=request.url.scheme == "https", path="/")  # fmt: skip


@router.delete("", status_code=204)
def close_session(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/")
