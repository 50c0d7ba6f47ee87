"""The one HTTP client a service keeps for the service it calls.

Built once per app (in its lifespan) and shared by every request: a client
per call would pay a TCP handshake each time and leak connections.
:meth:`ServiceClient.request` turns transport errors and error statuses into
the problems of :mod:`services.common.problems`, and sends each call to the
next replica of the service (:mod:`services.common.balancing`).
"""

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI
from httpx_aiohttp import AiohttpTransport

from services.common.balancing import Endpoint, Endpoints, NoEndpointError
from services.common.deadline import budget_header, remaining_seconds
from services.common.faults import Faults, InjectedFaultError
from services.common.problems import (
    DOWNSTREAM_TYPE,
    PROBLEM_JSON,
    CalleeError,
    DownstreamError,
    NotFoundError,
    ProblemError,
    not_there_is_an_answer,
)
from services.common.settings import DownstreamSettings
from services.telemetry import Telemetry

_log = logging.getLogger(__name__)


# Calls that can be sent twice without doing twice what they do (a POST can
# say it is, when it carries an id the callee stores it once under).
_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE"})
# A callee's own answers worth one more try: it is restarting, or overloaded
# for a moment. A 504 is not: it already spent the time.
_RETRYABLE = frozenset({502, 503})


@dataclass(frozen=True)
class ServiceClient:
    """An HTTP client for one named service (the name goes into error details)."""

    name: str
    http: httpx.AsyncClient
    faults: Faults
    # Its replicas: a path (``/cache/key``) goes to the next one. An absolute URL
    # (the gateway's relay to the Collector) goes where it says.
    endpoints: Endpoints

    async def request(
        self, method: str, url: str, *, idempotent: bool | None = None, **kwargs: Any
    ) -> httpx.Response:
        """Send a request within the current request's budget; return a 2xx
        response, raise a ProblemError otherwise.

        A 4xx problem from downstream is about the client's own request (unknown
        session, invalid input): it is relayed with its status and detail.
        Anything else is the downstream service's failure, named in the detail
        with the cause it gave ("cache: Redis is unavailable."): 503 when it is
        unreachable or says so, 504 when out of time, 502 otherwise.

        Retries: an idempotent call (GET, PUT, DELETE; a POST when the caller
        says so) gets one more try, with jitter, if time is left, and only when
        this hop failed (CalleeError): unreachable, a broken connection, or a
        502/503 of the callee's own. A failure the callee relays from below
        (problem type DOWNSTREAM_TYPE, "cache: Redis is unavailable.") is not
        retried: the callee already tried what it could, and retrying at every
        hop would multiply the calls to whatever is failing. Every attempt goes
        to the next replica.
        """
        if idempotent is None:
            idempotent = method in _IDEMPOTENT
        attempts = 2 if idempotent else 1
        for attempt in range(1, attempts + 1):
            try:
                return await self._send(method, url, **kwargs)
            except CalleeError as failure:
                left = remaining_seconds()
                pause = random.uniform(0.01, 0.05)  # noqa: S311 (jitter, not a secret)
                more_time = left is None or left > pause + 0.1
                if attempt == attempts or not more_time:
                    raise
                _log.info("retrying %s %s %s after: %s", self.name, method, url, failure.detail)
                await asyncio.sleep(pause)
        raise AssertionError("unreachable")

    async def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        response = await self.exchange(method, url, **kwargs)
        if response.is_success:
            return response
        is_problem = response.headers.get("content-type") == PROBLEM_JSON
        problem = response.json() if is_problem else {}
        detail = str(problem.get("detail", ""))
        status = response.status_code
        if response.is_client_error and is_problem:
            if status == 404:
                raise NotFoundError(detail)
            raise ProblemError(status, detail)
        if is_problem and status in (502, 503, 504):
            # It says what failed below it: keep the status, name the hop.
            named = detail if detail.startswith(f"{self.name}:") else f"{self.name}: {detail}"
            relayed = problem.get("type") == DOWNSTREAM_TYPE
            if relayed or status not in _RETRYABLE:
                raise DownstreamError(status, named)
            raise CalleeError(status, named)
        if status in _RETRYABLE:  # a proxy's, or a server's without a problem body
            raise CalleeError(502, f"{self.name}: failed ({status}).")
        raise DownstreamError(502, f"{self.name}: failed ({status}).")

    async def exchange(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """Send one request within the current request's budget and return the
        response, whatever its status; a failure to get one is a problem: 503
        unreachable, 504 out of time, 502 a broken connection."""
        left = remaining_seconds()
        if left is not None and left <= 0:
            raise DownstreamError(504, f"{self.name}: not called, the request is out of time.")
        timeout = self.http.timeout
        if left is not None:  # never wait past the request's own deadline
            timeout = httpx.Timeout(
                min(timeout.read or left, left), connect=min(timeout.connect or left, left)
            )
        headers = {**kwargs.pop("headers", {}), **budget_header()}
        try:
            await self.faults.inject(self.name)
        except InjectedFaultError as exc:
            raise CalleeError(503, f"{self.name}: unreachable (injected fault).") from exc
        replica: Endpoint | None = None
        if url.startswith("/"):
            try:
                replica = await self.endpoints.pick()
            except NoEndpointError as exc:
                raise CalleeError(503, f"{self.name}: unreachable (no address).") from exc
            url = replica.url(url)
            if replica.host_header:  # the name the URL gave, not the IP called
                headers["Host"] = replica.host_header
        try:
            return await self.http.request(method, url, headers=headers, timeout=timeout, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            if replica is not None:
                self.endpoints.failed(replica)
            raise CalleeError(503, f"{self.name}: unreachable.") from exc
        except httpx.TimeoutException as exc:
            raise DownstreamError(504, f"{self.name}: no answer in time.") from exc
        except httpx.TransportError as exc:
            raise CalleeError(502, f"{self.name}: the connection failed.") from exc


@dataclass(frozen=True)
class Downstream:
    """A service this app calls over HTTP (a Callee of the app factory).

    ``urls``: its base URLs, one per replica or per name that resolves to its
    replicas (services/common/balancing.py). Its client lives on
    ``app.state.<name>_client`` while the app runs.
    """

    name: str
    urls: Sequence[str]
    settings: DownstreamSettings
    transport: httpx.AsyncBaseTransport | None = None  # see app.Outbound.transport

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
        # the rest of the gateway together (docs/operate/benchmark.md).
        transport = self.transport or AiohttpTransport(limits=limits)
        # No base URL: every call names its replica (ServiceClient.exchange).
        endpoints = Endpoints(self.urls, ttl_seconds=self.settings.resolve_ttl_seconds)
        async with httpx.AsyncClient(timeout=timeout, transport=transport) as http:
            telemetry.instrument_http_client(http, response_hook=not_there_is_an_answer)
            client = ServiceClient(self.name, http, app.state.faults, endpoints)
            setattr(app.state, self.state_name, client)
            yield

    async def check_ready(self, app: FastAPI) -> None:
        """Readiness: the downstream service answers its liveness probe."""
        client: ServiceClient = getattr(app.state, self.state_name)
        await client.request("GET", "/healthz")
