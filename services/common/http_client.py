"""The one HTTP client a service keeps for the service it calls.

Built once per app (in its lifespan) and shared by every request: a client
per call would pay a TCP handshake each time and leak connections.
:meth:`ServiceClient.request` turns transport errors and error statuses into
the problems of :mod:`services.common.problems`.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI
from httpx_aiohttp import AiohttpTransport

from services.common.problems import PROBLEM_JSON, DownstreamError, NotFoundError, ProblemError
from services.common.settings import DownstreamSettings
from services.telemetry import Telemetry


@dataclass(frozen=True)
class ServiceClient:
    """An HTTP client for one named service (the name goes into error details)."""

    name: str
    http: httpx.AsyncClient

    async def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """Send a request; return 2xx responses, raise a ProblemError otherwise.

        A 4xx problem from downstream is about the client's own request
        (unknown session, invalid input): it is relayed with its status and
        detail. Anything else is the downstream service's failure: 502/503/504.
        """
        try:
            response = await self.http.request(method, url, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise DownstreamError(503, f"The {self.name} service is unreachable.") from exc
        except httpx.TimeoutException as exc:
            message = f"The {self.name} service did not answer in time."
            raise DownstreamError(504, message) from exc
        except httpx.TransportError as exc:
            raise DownstreamError(502, f"The {self.name} service connection failed.") from exc
        if response.is_success:
            return response
        if response.is_client_error and response.headers.get("content-type") == PROBLEM_JSON:
            detail = str(response.json().get("detail", ""))
            if response.status_code == 404:
                raise NotFoundError(detail)
            raise ProblemError(response.status_code, detail)
        raise DownstreamError(502, f"The {self.name} service answered {response.status_code}.")


@dataclass(frozen=True)
class Downstream:
    """The service this app calls (a Dependency of the app factory).

    Its client lives on ``app.state.<name>_client`` while the app runs.
    """

    name: str
    base_url: str
    settings: DownstreamSettings
    transport: httpx.AsyncBaseTransport | None = None  # see Wiring.transport

    @property
    def state_name(self) -> str:
        return f"{self.name}_client"

    @asynccontextmanager
    async def open(self, app: FastAPI, telemetry: Telemetry) -> AsyncIterator[None]:
        timeout = httpx.Timeout(
            self.settings.read_timeout_seconds, connect=self.settings.connect_timeout_seconds
        )
        limits = httpx.Limits(
            max_connections=self.settings.max_connections,
            max_keepalive_connections=self.settings.max_connections,
        )
        # httpx's API over aiohttp's connection pool: httpx's own pool (httpcore)
        # polls every pooled connection on each request, which cost more CPU than
        # the rest of the gateway together (see the README's benchmark).
        transport = self.transport or AiohttpTransport(limits=limits)
        async with httpx.AsyncClient(
            base_url=self.base_url, timeout=timeout, transport=transport
        ) as http:
            telemetry.instrument_http_client(http)
            setattr(app.state, self.state_name, ServiceClient(self.name, http))
            yield

    async def check_ready(self, app: FastAPI) -> None:
        """Readiness: the downstream service answers its liveness probe."""
        client: ServiceClient = getattr(app.state, self.state_name)
        await client.request("GET", "/healthz")
