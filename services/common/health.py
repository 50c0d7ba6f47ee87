"""``/healthz`` (liveness: the process serves, no I/O) and ``/readyz`` (readiness: the
one thing the service calls is usable). Neither is traced (the app factory's
untraced paths): a probe every few seconds would bury the real traces."""

from typing import Protocol

from fastapi import APIRouter, FastAPI, Request

from services.common.problems import ProblemError, problem_response

HEALTH_PATHS = frozenset({"/healthz", "/readyz"})


class ReadinessCheck(Protocol):
    async def check_ready(self, app: FastAPI) -> None:
        """Raise (anything) when it is not usable."""
        ...


def health_router(callee: ReadinessCheck) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/healthz", summary="Liveness: the process serves requests")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz", summary="Readiness: what the service calls is usable")
    async def readyz(request: Request) -> object:
        try:
            await callee.check_ready(request.app)
        except Exception as exc:  # any failure means "not ready", never a 500
            detail = exc.detail if isinstance(exc, ProblemError) else type(exc).__name__
            return problem_response(503, "Service Unavailable", f"Not ready: {detail}")
        return {"status": "ready"}

    return router
