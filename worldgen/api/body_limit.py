"""Request bodies are limited while they are read, not after: a 540 MB JSON body took the server
from 131 MiB to 4.2 GiB before its 422. Multipart uploads have their own, per-kind limits
(api/uploads.py), counted as they stream. And a body must keep arriving: a probe held 400
half-sent requests open indefinitely; a client silent for `timeout` seconds mid-body gets 408."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from worldgen.api.errors import error_body


class BodyLimit:
    """413 for a non-multipart body above `limit` bytes: at once when Content-Length says so,
    else as soon as the bytes read pass it (the rest is never buffered). 408 for any body whose
    next part does not arrive within `timeout` seconds."""

    def __init__(self, app: ASGIApp, limit: int, timeout: float = 30.0) -> None:
        self.app, self.limit, self.timeout = app, limit, timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limited = not _header(scope, b"content-type").startswith(b"multipart/form-data")
        length = _header(scope, b"content-length")
        if limited and length.isdigit() and int(length) > self.limit:
            await _answer(send, 413, "too_large", f"the request body is larger than {self.limit} bytes",
                          {"limit": self.limit})  # fmt: skip
            return
        seen, answered, complete = 0, False, False

        async def counted() -> Message:
            nonlocal seen, answered, complete
            if answered:
                return {"type": "http.disconnect"}
            if complete:  # after the body, receive() waits for a disconnect (SSE): no timeout
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), self.timeout)
            except TimeoutError:
                answered = True
                await _answer(send, 408, "request_timeout", f"the request body stalled for {self.timeout:g} s")
                return {"type": "http.disconnect"}
            if message["type"] == "http.request":
                complete = not message.get("more_body", False)
                seen += len(message.get("body", b""))
                if limited and seen > self.limit:  # answer now; the app sees the client go away
                    answered = True
                    await _answer(send, 413, "too_large", f"the request body is larger than {self.limit} bytes",
                                  {"limit": self.limit})  # fmt: skip
                    return {"type": "http.disconnect"}
            return message

        async def quiet_after_answer(message: Message) -> None:
            if not answered:
                await send(message)

        await self.app(scope, counted, quiet_after_answer)


def _header(scope: Scope, name: bytes) -> bytes:
    return next((value for key, value in scope.get("headers", []) if key.lower() == name), b"")


async def _answer(send: Send, status: int, code: str, message: str, details: Any = None) -> None:
    import json

    body = json.dumps(error_body(code, message, details))
    headers: list[Any] = [(b"content-type", b"application/json"), (b"connection", b"close"),
                          (b"content-length", str(len(body.encode())).encode())]  # fmt: skip
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body.encode()})
