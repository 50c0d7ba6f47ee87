"""The two pieces every middleware of the services is built from.

Pure ASGI rather than Starlette's ``BaseHTTPMiddleware``, which costs a task and
a stream per request.
"""

from collections.abc import Callable

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class HttpMiddleware:
    """Middleware for HTTP requests; anything else (lifespan) passes straight through."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.handle(scope, receive, send)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise NotImplementedError


class WatchedSend:
    """A ``send`` that notes the response's status when it starts (None before),
    and lets ``on_start`` add headers to it."""

    def __init__(
        self, send: Send, on_start: Callable[[MutableHeaders], None] | None = None
    ) -> None:
        self.send = send
        self.on_start = on_start
        self.status: int | None = None

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            if self.on_start is not None:
                self.on_start(MutableHeaders(scope=message))
        await self.send(message)
