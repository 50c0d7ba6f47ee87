"""Faults on purpose, so a demo can break things and watch the telemetry tell it.

A fault is latency, an error rate, or both, aimed at a target:

- ``self``: the service's own request handling (health probes and the admin
  endpoints excepted). Errors answer with the fault's ``status`` (500: an
  exception, logged and recorded; 503: "down").
- a dependency by name (``chat``, ``cache``, ``redis``): every call to it waits
  first, or fails as if it were unreachable.

Each injection is a span of its own (``fault.injected``), so a trace shows that
the time or the error was put there on purpose.

Set at start with ``<SERVICE>_FAULTS='{"redis": {"latency_ms": 700}}'``, and at
run time, without a restart, through ``/admin/faults`` (GET, PUT a whole plan,
DELETE to clear) on the service's admin listener (services/common/admin.py: its
own loopback port, with the ``X-Admin-Key`` header), never on the service's port.

A plan belongs to one process: with several uvicorn workers or replicas, each
takes its own call (the environment variable reaches them all).
"""

import asyncio
import logging
import random
from http import HTTPStatus

from fastapi import APIRouter
from opentelemetry import trace
from pydantic import BaseModel, Field, NonNegativeInt
from starlette.types import ASGIApp, Receive, Scope, Send

from services.common.asgi import HttpMiddleware
from services.common.problems import problem_response

SELF = "self"
_log = logging.getLogger(__name__)


class Fault(BaseModel):
    latency_ms: NonNegativeInt = Field(default=0, le=60_000)
    error_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    # The status of an injected error of the service itself (``self``).
    status: int = Field(default=500, ge=500, le=599)


FaultPlan = dict[str, Fault]


class InjectedFaultError(Exception):
    """A dependency made to fail on purpose."""

    def __init__(self, target: str) -> None:
        super().__init__(f"injected fault: {target}")
        self.target = target


class Faults:
    """The faults in force in this process (one plan, replaced as a whole)."""

    def __init__(self, plan: FaultPlan, tracer: trace.Tracer) -> None:
        self.plan: FaultPlan = dict(plan)
        self.tracer = tracer

    async def inject(self, target: str) -> None:
        """Wait and/or raise InjectedFaultError, as the plan says for ``target``."""
        fault = self.plan.get(target)
        if fault is None:
            return
        with self.tracer.start_as_current_span(
            "fault.injected",
            attributes={"fault.target": target, "fault.latency_ms": fault.latency_ms},
        ):
            if fault.latency_ms:
                await asyncio.sleep(fault.latency_ms / 1000)
            if random.random() < fault.error_rate:  # noqa: S311 (chance, not a secret)
                raise InjectedFaultError(target)


class SelfFaultMiddleware(HttpMiddleware):
    """Apply the ``self`` fault to every request but health probes (admin calls
    never pass here: they have an app of their own)."""

    def __init__(self, app: ASGIApp, faults: Faults, exempt: frozenset[str]) -> None:
        super().__init__(app)
        self.faults = faults
        self.exempt = exempt

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] not in self.exempt:
            try:
                await self.faults.inject(SELF)
            except InjectedFaultError as fault:
                status = self.faults.plan[SELF].status
                if status == 500:
                    raise  # an unexpected exception, as a real bug would be
                trace.get_current_span().record_exception(fault)
                detail = "Injected fault: this service is failing."
                response = problem_response(status, HTTPStatus(status).phrase, detail)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def fault_routes(faults: Faults) -> APIRouter:
    """GET/PUT/DELETE /faults of ``faults``, for the admin app to serve (and guard)."""
    router = APIRouter()

    @router.get("/faults")
    async def read_faults() -> FaultPlan:
        return faults.plan

    @router.put("/faults")
    async def set_faults(plan: FaultPlan) -> FaultPlan:
        faults.plan = dict(plan)
        # What was broken on purpose, and when, for whoever reads the logs later.
        _log.info("fault plan set: %s", {t: f.model_dump() for t, f in plan.items()})
        return plan

    @router.delete("/faults", status_code=204)
    async def clear_faults() -> None:
        faults.plan = {}
        _log.info("fault plan cleared")

    return router
