"""Errors as RFC 9457 problem details (``application/problem+json``).

The exceptions a service raises on purpose::

    ProblemError          an error the client sees: status, detail (401, 429, ...)
     ├── NotFoundError    404: no such session or key (callers catch it: a cache miss)
     └── DownstreamError  a service we call failed: 502 bad answer, 503 unreachable,
          │               504 too slow (answered with type DOWNSTREAM_TYPE)
          └── CalleeError the service we call failed itself: unreachable, its
                          connection broken, or its own 502/503 (not one it relays)

Validation errors become 422 (400 for a body that is not JSON at all), a body
over the app's limit 413; any other exception becomes a 500 whose body says
nothing about the internals (see services.common.middleware.UnhandledErrors).
:func:`documented` describes these responses in a route's OpenAPI.
"""

import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from opentelemetry import trace
from opentelemetry.instrumentation.httpx import RequestInfo, ResponseInfo
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException
from starlette.responses import Response

PROBLEM_JSON = "application/problem+json"

_log = logging.getLogger(__name__)


class Problem(BaseModel):
    """The body of every error response (RFC 9457)."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    trace_id: str | None = Field(default=None, description="Look the request up in Tempo")
    # 422 only: where and why the input was rejected (never the input itself).
    errors: list[dict[str, Any]] | None = None


_PROBLEM_SCHEMA = Problem.model_json_schema()
_WHEN = {
    400: "The body is not JSON",
    401: "No API key, or an unknown one",
    404: "No such session (or not yours)",
    413: "The body is over the size limit",
    422: "The input is not valid",
    429: "Over the rate limit: retry after Retry-After seconds",
    502: "A service behind this one failed",
    503: "A service behind this one is unreachable",
    504: "A service behind this one did not answer in time",
}


def documented(
    *statuses: int, headers: Mapping[int, Mapping[str, str]] | None = None
) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for these error statuses, as problem+json.

    ``headers`` documents response headers per status: {status: {name: description}}.
    """
    responses: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        response: dict[str, Any] = {
            "description": _WHEN.get(status, HTTPStatus(status).phrase),
            "content": {PROBLEM_JSON: {"schema": _PROBLEM_SCHEMA}},
        }
        if headers and status in headers:
            response["headers"] = {
                name: {"description": text, "schema": {"type": "string"}}
                for name, text in headers[status].items()
            }
        responses[status] = response
    return responses


class ProblemError(Exception):
    type = "about:blank"

    def __init__(
        self, status: int, detail: str, *, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = HTTPStatus(status).phrase
        self.detail = detail
        self.headers = dict(headers or {})


# A 404 that means "there is no such thing" (a cache miss, an unknown session),
# as opposed to a wrong URL. Callers' client spans count it as an answer, not a
# failure (see telemetry); the header lets them tell before reading the body.
NOT_THERE_TYPE = "urn:otel-chat-demo:problem:not-there"
PROBLEM_TYPE_HEADER = "X-Problem-Type"


class NotFoundError(ProblemError):
    def __init__(self, detail: str) -> None:
        super().__init__(404, detail, headers={PROBLEM_TYPE_HEADER: NOT_THERE_TYPE})
        self.type = NOT_THERE_TYPE


async def not_there_is_an_answer(
    span: trace.Span, request: RequestInfo, response: ResponseInfo
) -> None:
    """The client spans' hook (services/common/http_client.py): a 404 that says "not
    there" (a cache miss, an unknown session) is an answer, not a failed call. Left as
    ERROR, every cache miss would paint the trace red and count in the span-metrics
    error rate. Any other 404 (a wrong URL) stays an error."""
    not_there = response.headers and response.headers.get(PROBLEM_TYPE_HEADER) == NOT_THERE_TYPE
    if response.status_code == 404 and not_there:
        span.set_status(trace.StatusCode.OK)


# The type of a 5xx a service answers because something it calls failed. Its
# caller knows from it that the failure is further down: retrying would only
# send the failing part more calls (each hop retrying multiplies them).
DOWNSTREAM_TYPE = "urn:otel-chat-demo:problem:downstream-failed"


class DownstreamError(ProblemError):
    """Not the client's fault: logged, and recorded on the server span."""

    type = DOWNSTREAM_TYPE


class CalleeError(DownstreamError):
    """The called service itself failed (services.common.http_client): a blip
    of that hop (a connection reset, a replica restarting), so an idempotent
    call is worth one more try; its own callers see a DownstreamError like any."""


def problem_response(
    status: int,
    title: str,
    detail: str,
    *,
    headers: Mapping[str, str] | None = None,
    type: str = "about:blank",  # RFC 9457: a URI naming the kind of problem
    **extra: Any,
) -> JSONResponse:
    """A problem+json response; the trace id lets a user find it in Tempo."""
    body: dict[str, Any] = {"type": type, "title": title, "status": status}
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
    return problem_response(exc.status, exc.title, exc.detail, headers=exc.headers, type=exc.type)


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    title = HTTPStatus(exc.status_code).phrase
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


def unhandled_problem(method: str, path: str, exc: Exception) -> Response:
    """The 500 for an exception nobody expected: recorded on the span, logged
    once with its traceback, and never described to the client."""
    trace.get_current_span().record_exception(exc)
    _log.error("unhandled error in %s %s", method, path, exc_info=exc)
    return problem_response(500, "Internal Server Error", "An unexpected error occurred.")


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ProblemError, _problem)
    app.add_exception_handler(HTTPException, _http_exception)
    app.add_exception_handler(RequestValidationError, _validation)
    # Any other exception: see services.common.middleware.UnhandledErrors.
