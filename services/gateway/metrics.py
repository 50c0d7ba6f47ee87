from dataclasses import dataclass

from opentelemetry.metrics import Counter, Meter


@dataclass(frozen=True)
class GatewayMetrics:
    chat_requests: Counter

    @classmethod
    def create(cls, meter: Meter) -> "GatewayMetrics":
        return cls(
            chat_requests=meter.create_counter(
                "chat.requests",
                unit="{request}",
                description="Chat requests by chat.outcome: ok, rejected (4xx) or error (5xx).",
            )
        )
