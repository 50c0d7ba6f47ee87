"""The admin endpoints (``/admin/faults``) on a listener of their own, never the
service's port.

The service's port is what callers reach: the gateway's is the public edge, and
chat's and cache's are open to every caller inside their network. One admin call
takes a service down on purpose (services/common/faults.py), so the admin
endpoints get a second HTTP server, bound to loopback by default
(``<SERVICE>_ADMIN_HOST``, ``<SERVICE>_ADMIN_PORT``; the port defaults to the
service's ``admin_port`` in services/registry.py): only the host, container or pod
itself reaches it, and no compose ``ports:`` or Kubernetes Service ever names it.
``make fault`` calls it natively on 127.0.0.1 and in containers through
``docker exec`` (stack/faults.py); in a pod, ``kubectl port-forward`` or
``kubectl exec`` reach it the same way.

Faults are state of one process (``app.state.faults``) and uvicorn ``--workers N``
runs N processes, so the admin server runs inside each of them: a
``uvicorn.Server`` started in the app's lifespan. Its socket has ``SO_REUSEPORT``
so every worker binds the same port (the kernel spreads connections over them, as
it does for the service's port, and lets only processes of the same user share
it). The service's own uvicorn owns the process's signals: this server never
installs handlers, and stops when the lifespan ends.

Every request needs the admin key (``X-Admin-Key``, compared in constant time),
checked before its body is read. After ``<SERVICE>_ADMIN_FAILURES_PER_MINUTE``
wrong keys within a minute, every request is a 429 until the oldest of them is a
minute old, the right key included: there is one rightful caller (whoever runs
``make fault``), so refusing all of them costs a minute's wait, where serving the
right key would tell a guesser which guess was right. The count is kept in the
process, not in Redis: every caller of a loopback listener is local, so one
budget for all of them is the right unit; the admin API must work while Redis is
what is being broken; and chat and cache have no Redis to share. With N workers
each keeps its own count (N times the budget in all).
"""

import asyncio
import hmac
import logging
import math
import socket
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

import uvicorn
from fastapi import FastAPI
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from services.common.asgi import HttpMiddleware
from services.common.faults import Faults, fault_routes
from services.common.problems import install_problem_handlers, problem_response
from services.telemetry import Telemetry

ADMIN_KEY_HEADER = "X-Admin-Key"
ADMIN_PREFIX = "/admin"
WINDOW_SECONDS = 60

_log = logging.getLogger(__name__)


class FailedAttempts:
    """At most ``per_window`` failures within any ``WINDOW_SECONDS`` (a moving window).

    A deque of the last failures' times: what ``limits``' in-memory storages do
    with expiry timers (a thread, or a task calling into the thread pool).
    """

    def __init__(self, per_window: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._failures: deque[float] = deque(maxlen=per_window)
        self._clock = clock

    def retry_after(self) -> int | None:
        """Seconds until another attempt may be made; None: one may be made now."""
        if len(self._failures) < (self._failures.maxlen or 0):
            return None
        wait = WINDOW_SECONDS - (self._clock() - self._failures[0])
        return math.ceil(wait) if wait > 0 else None

    def count(self) -> None:
        self._failures.append(self._clock())


class AdminGuard(HttpMiddleware):
    """The admin key on every request, or 401; past the failure budget, 429."""

    def __init__(self, app: ASGIApp, admin_key: str, failures_per_minute: int) -> None:
        super().__init__(app)
        self.admin_key = admin_key.encode()
        self.failures = FailedAttempts(failures_per_minute)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        wait = self.failures.retry_after()
        if wait is not None:
            detail = "Too many wrong admin keys: try again later."
            response = problem_response(
                429, "Too Many Requests", detail, headers={"Retry-After": str(wait)}
            )
        elif self._authorized(Headers(scope=scope).get(ADMIN_KEY_HEADER)):
            await self.app(scope, receive, send)
            return
        else:
            self.failures.count()
            detail = f"Send the admin key in the {ADMIN_KEY_HEADER} header."
            response = problem_response(401, "Unauthorized", detail)
        await response(scope, receive, send)

    def _authorized(self, key: str | None) -> bool:
        return key is not None and hmac.compare_digest(key.encode(), self.admin_key)


def admin_app(
    name: str, faults: Faults, telemetry: Telemetry, *, admin_key: str, failures_per_minute: int
) -> FastAPI:
    """The admin endpoints of service ``name``, acting on its ``faults``; traced
    like the service's own requests (a fault set shows in the trace store too)."""
    app = FastAPI(
        title=f"otel-chat-demo {name} admin",
        openapi_url=None,  # no document, no docs pages: nothing to discover
        docs_url=None,
        redoc_url=None,
        telemetry=telemetry.fastapi_config(excluded_paths=frozenset()),
    )
    install_problem_handlers(app)
    app.include_router(fault_routes(faults), prefix=ADMIN_PREFIX)
    app.add_middleware(AdminGuard, admin_key=admin_key, failures_per_minute=failures_per_minute)
    return app


class _InnerServer(uvicorn.Server):
    """A uvicorn server inside another one's process.

    ``uvicorn.Server.serve`` replaces the process's SIGINT and SIGTERM handlers
    with its own for as long as it runs (``capture_signals``), and re-raises the
    signals it caught when it ends. Here the service's own uvicorn must keep
    them: it shuts the app down, and the app's lifespan stops this server.
    """

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass(frozen=True)
class AdminListener:
    """The admin app on its own socket, for the app's whole life (a Resource of the
    app factory). Its URL is ``app.state.admin_url`` once it is open."""

    app: ASGIApp
    host: IPv4Address | IPv6Address
    port: int  # 0: any free port

    @asynccontextmanager
    async def open(self, app: FastAPI, telemetry: Telemetry) -> AsyncIterator[None]:
        sock = _shared_socket(self.host, self.port)
        config = uvicorn.Config(
            self.app,
            lifespan="off",  # the service's lifespan is the one that runs
            log_config=None,  # the service's logging stays as telemetry set it up
            access_log=False,
            # The peer is who calls: no proxy stands in front of a loopback port.
            proxy_headers=False,
            server_header=False,
            http="h11",  # bounded request heads (see deploy/gateway/uvicorn.env)
            ws="none",
            limit_concurrency=16,  # its callers: `make fault`, a drill, a test
            timeout_keep_alive=5,
        )
        server = _InnerServer(config)
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        # Up in a few turns of the loop (the socket is bound already); a server that
        # cannot start fails the service's start, not its first admin call.
        while not server.started:
            if serving.done():
                serving.result()  # raises what stopped it
                raise RuntimeError("admin listener: the server stopped while starting")
            await asyncio.sleep(0.01)
        port = sock.getsockname()[1]
        host = f"[{self.host}]" if self.host.version == 6 else str(self.host)
        app.state.admin_url = f"http://{host}:{port}"
        _log.info("admin endpoints on %s%s", app.state.admin_url, ADMIN_PREFIX)
        try:
            yield
        finally:
            server.should_exit = True
            await serving


def _shared_socket(host: IPv4Address | IPv6Address, port: int) -> socket.socket:
    """A listening socket on ``host:port`` that every worker of the service can
    bind too (SO_REUSEPORT); listening already, so calls queue from now on."""
    family = socket.AF_INET6 if host.version == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((str(host), port))
        sock.listen()
    except OSError as exc:
        sock.close()
        raise RuntimeError(f"admin listener: cannot listen on {host}:{port}: {exc}") from exc
    sock.setblocking(False)
    return sock
