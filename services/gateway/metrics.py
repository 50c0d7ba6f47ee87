from opentelemetry.metrics import Meter


class GatewayMetrics:
    """``chat.requests``: chat requests by ``chat.outcome``.

    ok, rejected (the client's fault: 4xx) or error (ours or downstream: 5xx).
    """

    def __init__(self, meter: Meter) -> None:
        self.chat_requests = meter.create_counter(
            "chat.requests", unit="{request}", description="Chat requests, by chat.outcome."
        )
