"""Request bodies are limited while they are read, not after: a 540 MB JSON body took the server
from 131 MiB to 4.2 GiB before its 422. Multipart uploads have their own, per-kind limits
(api/uploads.py), counted as they stream."""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from worldgen.api.errors import error_body


class BodyLimit:
    """413 for a non-multipart body above `limit` bytes: at once when Content-Length says so,
    else as soon as the bytes read pass it (the rest is never buffered)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _header(scope, b"content-type").startswith(b"multipart/form-data"):
            await self.app(scope, receive, send)
            return
        length = _header(scope, b"content-length")
        if length.isdigit() and int(length) > self.limit:
            await _too_large(send, self.limit)
            return
        seen, answered = 0, False

        async def counted() -> Message:
            nonlocal seen, answered
            if answered:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:  # answer now; the app sees the client go away
                    answered = True
                    await _too_large(send, self.limit)
                    return {"type": "http.disconnect"}
            return message

        async def quiet_after_answer(message: Message) -> None:
            if not answered:
                await send(message)

        await self.app(scope, counted, quiet_after_answer)


def _header(scope: Scope, name: bytes) -> bytes:
    return next((value for key, value in scope.get("headers", []) if key.lower() == name), b"")


async def _too_large(send: Send, limit: int) -> None:
    import json

    body = json.dumps(error_body("too_large", f"the request body is larger than {limit} bytes", {"limit": limit}))
    headers: list[Any] = [(b"content-type", b"application/json"), (b"connection", b"close")]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body.encode()})
