"""What the gateway, the one service the outside world reaches, takes from a request.

- ``Host``: only one of ``GATEWAY_ALLOWED_HOSTS``, else a 400 problem. A page on
  another site can make a browser resolve its own name to 127.0.0.1 (DNS
  rebinding) and then call a gateway published there as its own origin; its
  requests still name that site in ``Host``. Health probes are exempt: a
  Kubernetes probe names the pod's IP, and they answer nothing a page could use.
- baggage: never. A client could otherwise put any ``client.id`` (or anything
  else) onto every span of every service. Its headers are dropped before FastAPI's
  telemetry reads them; the gateway sets ``client.id`` itself, after authentication.
- the client's address: the TCP peer's, unless uvicorn is told to trust a proxy's
  ``X-Forwarded-For`` (deploy/gateway/uvicorn.env: no proxy by default); it is
  ``client.address`` on the server span (FastAPI's own telemetry records none) and
  what the failed-authentication limit counts (rate_limit.py).
- trace context (``traceparent`` / ``tracestate``, or whatever else the configured
  propagators read, ``OTEL_PROPAGATORS``): a policy
  (``GATEWAY_TRUST_INCOMING_TRACE_CONTEXT``). Trusted, the client's trace continues
  (a browser or a load generator starts the trace), though never its sampling
  decision (services/telemetry/_sampling.py). Untrusted, those headers are dropped
  too, the gateway starts a new trace, and its server span links to the client's
  context: the OpenTelemetry specification's pattern for public endpoints.
  Which headers those are is asked of the propagators themselves (their
  ``fields``), so a propagator added by configuration cannot open a way around
  the policy.

And what every response carries: ``nosniff`` and ``no-store`` (API responses
are per caller and never to be cached or sniffed; the chat page and its files set
their own ``Cache-Control``, see services/common/web.py), and once the caller is
known its rate-limit quota. The server banner is switched off in uvicorn's settings
(``deploy/gateway/uvicorn.env``).
"""

from collections.abc import Sequence

from opentelemetry import propagate, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.trace import SpanContext
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.common.asgi import HttpMiddleware
from services.common.problems import problem_response

# Baggage the propagators read by header prefix rather than by name (Jaeger's and
# OpenTracing's), so not among their ``fields``.
_BAGGAGE_PREFIXES = (b"uberctx-", b"ot-baggage-")
# Where IncomingTraceContext leaves an untrusted client context for ClientOnTheServerSpan.
_CLIENT_CONTEXT = "gateway.client_trace_context"


class IncomingTraceContext:
    """Edge middleware (outside FastAPI's telemetry): drop what is not trusted."""

    def __init__(self, app: ASGIApp, *, trust_traceparent: bool) -> None:
        self.app = app
        propagated = {field.encode() for field in propagate.get_global_textmap().fields}
        baggage = {field.encode() for field in W3CBaggagePropagator().fields}
        self.trace_context = frozenset(propagated - baggage)
        self.dropped = frozenset(baggage | (set() if trust_traceparent else self.trace_context))

    def _drops(self, name: bytes) -> bool:
        return name in self.dropped or name.startswith(_BAGGAGE_PREFIXES)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers: list[tuple[bytes, bytes]] = scope["headers"]
            if any(self._drops(name) for name, _ in headers):
                untrusted = {
                    name.decode(): value.decode("latin-1")
                    for name, value in headers
                    if name in self.dropped and name in self.trace_context
                }
                scope["headers"] = [(n, v) for n, v in headers if not self._drops(n)]
                if untrusted:
                    client = trace.get_current_span(propagate.extract(untrusted))
                    if client.get_span_context().is_valid:
                        scope[_CLIENT_CONTEXT] = client.get_span_context()
        await self.app(scope, receive, send)


class ClientOnTheServerSpan(HttpMiddleware):
    """Inside the server span: who the client is, as far as the gateway can tell.
    ``client.address`` is the address uvicorn reports (the peer's, or the one a
    trusted proxy forwarded); an untrusted client trace context becomes a link."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        span = trace.get_current_span()
        client = scope.get("client")
        if client:
            span.set_attribute("client.address", client[0])
        client_context: SpanContext | None = scope.get(_CLIENT_CONTEXT)
        if client_context is not None:
            span.add_link(client_context, {"link.reason": "client trace context, not trusted"})
        await self.app(scope, receive, send)


# Where the host check notes that the host is allowed (the scope of that request).
_HOST_ALLOWED = "gateway.host_allowed"


class AllowedHosts(HttpMiddleware):
    """Starlette's TrustedHostMiddleware decides; its plain-text 400 becomes a
    problem like every other error, and ``exempt`` paths pass whatever the host."""

    def __init__(self, app: ASGIApp, hosts: Sequence[str], exempt: frozenset[str]) -> None:
        super().__init__(app)
        self.exempt = exempt
        # Asked with an app that only notes the answer, and a send that drops its
        # own refusal (no redirect to www.: that would send a caller elsewhere).
        self.check = TrustedHostMiddleware(_note_allowed, allowed_hosts=hosts, www_redirect=False)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] not in self.exempt:
            await self.check(scope, receive, _dropped)
            if not scope.pop(_HOST_ALLOWED, False):
                detail = "This server does not serve that host (the Host header)."
                await problem_response(400, "Bad Request", detail)(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def _note_allowed(scope: Scope, receive: Receive, send: Send) -> None:
    scope[_HOST_ALLOWED] = True


async def _dropped(message: Message) -> None:
    pass


# Headers a route asks the edge to add to its response, whatever the response
# turns out to be (an error included): request.state.<this>.
RESPONSE_HEADERS_STATE = "response_headers"
# API responses are per caller: never to be cached or sniffed.
_EVERY_RESPONSE = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}


def edge_headers(scope: Scope) -> dict[str, str]:
    """What every response of the public edge carries (services/common/asgi.py adds
    them, keeping a page's own ``Cache-Control``): the two above, and the ones a
    route asked for (the caller's rate-limit quota)."""
    asked: dict[str, str] = scope.get("state", {}).get(RESPONSE_HEADERS_STATE, {})
    return _EVERY_RESPONSE | asked
