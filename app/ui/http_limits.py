"""Request bodies bounded before they are read: a 413 instead of parsing 60 MB of JSON.

An ASGI middleware around the whole served app. A declared `Content-Length` over the path's limit is
answered 413 at once, without reading a byte of the body; a body without one (chunked transfer) is
counted while it streams in and answered 413 as soon as it passes the limit, never handed on.
"""

from __future__ import annotations

import json
from typing import Any, Awaitable, Callable

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]

API_BODY_BYTES = 1 << 20  # a vote or an impression is a few hundred bytes; 1 MiB is generous


class BodyLimit:
    """Wrap `app`; bodies to a path starting with one of `limits`' prefixes get that limit, others `default`."""

    def __init__(self, app, *, default: int, limits: dict[str, int] | None = None):
        self.app = app
        self.default = default
        self.limits = sorted((limits or {}).items(), key=lambda kv: -len(kv[0]))

    def limit_for(self, path: str) -> int:
        return next((n for prefix, n in self.limits if path.startswith(prefix)), self.default)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope.get("path", ""))
        length = _content_length(scope)
        if length == -1:
            await _reply(send, 400, "Content-Length is not a number")
            return
        if length is not None:
            if length > limit:
                await _reply(send, 413, f"request body of {length} bytes is over the limit of {limit} bytes")
                return
            await self.app(scope, receive, send)  # the server reads exactly Content-Length bytes
            return
        if scope.get("method") in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)
            return
        body, messages = 0, []
        while True:  # chunked: count while it streams, hand nothing on until it is within the limit
            message = await receive()
            if message["type"] != "http.request":
                messages.append(message)
                break
            body += len(message.get("body", b""))
            if body > limit:
                await _reply(send, 413, f"request body is over the limit of {limit} bytes")
                return
            messages.append(message)
            if not message.get("more_body", False):
                break

        async def replay() -> dict:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return -1
    return None


async def _reply(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
