"""Who is calling: API keys (`Authorization: Bearer wg_...`), and the browser defences that hold
with or without them.

`WORLDGEN_AUTH=auto` (default) requires a key whenever the server listens on a non-loopback
address and keeps the embedded default zero-config on loopback; `required` always; `off` never
(on a non-loopback address only with `worldgen serve --insecure-no-auth`). A world belongs to the
key that made it: another key gets 404 for it; an admin key, or a caller on a server without auth,
sees every world.

Browsers: a state-changing request whose `Origin` is not the server itself (or that the browser
marks `Sec-Fetch-Site: cross-site`) is refused with 403, so a web page cannot cancel, delete or
upload through a visitor's browser; and where the server listens on loopback the `Host` header
must be a loopback name, so DNS rebinding cannot reach it.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass
from urllib.parse import urlsplit

from fastapi import Depends, Request
from starlette.types import ASGIApp, Receive, Scope, Send

from worldgen.api.errors import ApiError, error_body
from worldgen.api.state import AppState, app_state
from worldgen.jobs.api_keys import ApiKey, key_for
from worldgen.jobs.store import Job, Upload

AUTH_MODES = ("auto", "required", "off")
SESSION_COOKIE = "worldgen_key"
"""The web page's key (routes/session.py), read when a request has no Authorization header."""
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def is_loopback(host: str | None) -> bool:
    if host is None or host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def auth_required(mode: str, listen_host: str | None) -> bool:
    """`listen_host` None: the app is not served on a socket of ours (tests, embedding)."""
    if mode == "required":
        return True
    if mode == "off":
        return False
    return not is_loopback(listen_host)


@dataclass(frozen=True)
class Caller:
    key: ApiKey | None

    @property
    def sees_all(self) -> bool:
        return self.key is None or self.key.admin

    @property
    def key_id(self) -> str | None:
        return self.key.id if self.key is not None else None

    def owns(self, item: Job | Upload) -> bool:
        """A world or an upload: the caller's own, or the caller sees all."""
        return self.sees_all or item.owner_key_id == self.key_id


def too_many(message: str, retry_after: float) -> ApiError:
    seconds = max(1, math.ceil(retry_after))
    return ApiError(429, "rate_limited", message, {"retry_after": seconds}, headers={"Retry-After": str(seconds)})


def current_caller(request: Request, state: AppState = Depends(app_state)) -> Caller:
    header = request.headers.get("authorization", "")
    if not header and request.cookies.get(SESSION_COOKIE):
        header = f"Bearer {request.cookies[SESSION_COOKIE]}"
    scheme, _, token = header.partition(" ")
    if header:
        if scheme.lower() != "bearer" or not token.strip():
            raise _unauthorized("the Authorization header must be 'Bearer <API key>'")
        key = key_for(state.store, token.strip())
        if key is None:
            raise _unauthorized("unknown or revoked API key")
        wait = state.rate_limits.wait_seconds(key.id)
        if wait > 0:
            raise too_many(f"more than {state.rate_limits.rate:g} requests per second with this key", wait)
        return Caller(key)
    if state.auth_required:
        raise _unauthorized("this server needs an API key: send 'Authorization: Bearer <key>' (worldgen keys create)")
    return Caller(None)


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, {"www_authenticate": "Bearer"})


class BrowserGuard:
    """The Host allow-list (on loopback) and the same-origin check for state-changing requests."""

    def __init__(self, app: ASGIApp, listen_host: str | None, allowed_hosts: tuple[str, ...] = ()) -> None:
        self.app = app
        hosts = set(allowed_hosts)
        if listen_host is not None and is_loopback(listen_host):
            hosts |= set(LOOPBACK_NAMES)
        self.allowed_hosts = frozenset(h.strip("[]").lower() for h in hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        host = _hostname(headers.get("host", ""))
        if self.allowed_hosts and host not in self.allowed_hosts:
            await _refuse(send, 400, "bad_host", f"Host {host!r} is not served here")
            return
        if scope["method"] in UNSAFE_METHODS:
            origin = headers.get("origin")
            cross = headers.get("sec-fetch-site") == "cross-site"
            if cross or (origin is not None and urlsplit(origin).netloc.lower() != headers.get("host", "").lower()):
                await _refuse(send, 403, "cross_site", "a state-changing request from another site is refused")
                return
        await self.app(scope, receive, send)


def _hostname(host_header: str) -> str:
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


async def _refuse(send: Send, status: int, code: str, message: str) -> None:
    import json

    body = json.dumps(error_body(code, message)).encode()
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})
