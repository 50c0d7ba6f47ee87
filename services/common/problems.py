"""Errors as RFC 9457 problem details (``application/problem+json``).

The exceptions a service raises on purpose::

    ProblemError                 an error a client may see (status, title, detail)
     ├── NotFoundError           404 unknown session, key, ...
     ├── UnauthorizedError       401 missing or wrong API key
     ├── RateLimitedError        429 too many requests from one client
     └── DownstreamError         502 a service we call answered with an error
          ├── DownstreamTimeoutError      504 ... or did not answer in time
          └── DownstreamUnavailableError  503 ... or could not be reached at all

Validation errors become 422 (400 for a body that is not JSON at all); any
other exception becomes a 500 whose body says nothing about the internals.
"""

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from opentelemetry import trace
from starlette.exceptions import HTTPException
from starlette.responses import Response

PROBLEM_JSON = "application/problem+json"

_log = logging.getLogger(__name__)


class ProblemError(Exception):
    status = 500
    title = "Internal Server Error"

    def __init__(
        self,
        detail: str,
        *,
        status: int | None = None,
        title: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status or self.status
        self.title = title or self.title
        self.headers = headers or {}


class NotFoundError(ProblemError):
    status = 404
    title = "Not Found"


class UnauthorizedError(ProblemError):
    status = 401
    title = "Unauthorized"


class RateLimitedError(ProblemError):
    status = 429
    title = "Too Many Requests"


class DownstreamError(ProblemError):
    status = 502
    title = "Bad Gateway"


class DownstreamTimeoutError(DownstreamError):
    status = 504
    title = "Gateway Timeout"


class DownstreamUnavailableError(DownstreamError):
    status = 503
    title = "Service Unavailable"


def problem_response(
    status: int,
    title: str,
    detail: str,
    *,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """A problem+json response; the trace id lets a user find it in Tempo."""
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    body["detail"] = detail
    span_context = trace.get_current_span().get_span_context()
    if span_context.is_valid:
        body["trace_id"] = trace.format_trace_id(span_context.trace_id)
    body.update(extra)
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


async def _problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ProblemError)
    return problem_for(request, exc)


def problem_for(request: Request, exc: ProblemError) -> Response:
    """The response for a ProblemError; server-side failures are logged too."""
    if exc.status >= 500:
        # The client sees a short detail; the span and log keep the cause.
        trace.get_current_span().record_exception(exc)
        _log.warning("%s %s failed: %s", request.method, request.url.path, exc.detail)
    return problem_response(exc.status, exc.title, exc.detail, headers=exc.headers)


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    title = "Not Found" if exc.status_code == 404 else "HTTP Error"
    return problem_response(exc.status_code, title, str(exc.detail), headers=exc.headers)


async def _validation(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    if any(error.get("type") == "json_invalid" for error in errors):
        return problem_response(400, "Bad Request", "The request body is not valid JSON.")
    # Echo where and why, never the rejected input itself.
    summary = [
        {"loc": list(error.get("loc", ())), "msg": error.get("msg"), "type": error.get("type")}
        for error in errors
    ]
    return problem_response(
        422, "Unprocessable Content", "The request is not valid.", errors=summary
    )


async def _unhandled(request: Request, exc: Exception) -> Response:
    trace.get_current_span().record_exception(exc)
    _log.exception("unhandled error in %s %s", request.method, request.url.path)
    return problem_response(500, "Internal Server Error", "An unexpected error occurred.")


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ProblemError, _problem)
    app.add_exception_handler(HTTPException, _http_exception)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(Exception, _unhandled)
