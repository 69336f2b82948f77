"""ASGI middleware that refuses request bodies above a size limit with 413, before they reach parsing."""

from __future__ import annotations

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodySizeLimit:
    """Reject a body whose Content-Length, or whose streamed size, exceeds the limit for its path.

    `max_bytes` applies everywhere except under the path prefixes of `overrides` (e.g. boundary uploads).
    """

    def __init__(self, app: ASGIApp, max_bytes: int, overrides: dict[str, int] | None = None) -> None:
        self.app = app
        self.default = max_bytes
        self.overrides = overrides or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is None and b"transfer-encoding" not in headers:
            # HTTP/1.1 has no body without either header (RFC 9112 §6.3): nothing to count.
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        limit = next((v for prefix, v in self.overrides.items() if path.startswith(prefix)), self.default)
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await self._refuse(send, limit)
            return
        received = 0
        refused = False

        async def limited_receive() -> Message:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    refused = True
                    raise _TooLarge()
            return message

        started = False

        async def guarded_send(message: Message) -> None:
            # The app may turn the aborted read into its own error response: answer 413 in its place.
            nonlocal started
            if refused:
                if message["type"] == "http.response.start" and not started:
                    started = True
                    await self._refuse(send, limit)
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except _TooLarge:
            if not started:
                await self._refuse(send, limit)

    async def _refuse(self, send: Send, limit: int) -> None:
        body = orjson.dumps({"error": {"code": "input_too_large",
                                       "message": f"请求体过大（上限 {limit:,} 字节），请简化几何或分批提交",
                                       "context": {"limit": limit}}})
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass
