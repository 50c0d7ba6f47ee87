from dataclasses import dataclass

from opentelemetry.metrics import Counter, Histogram, Meter


@dataclass(frozen=True)
class ChatMetrics:
    replies: Counter
    reply_latency: Histogram

    @classmethod
    def create(cls, meter: Meter) -> "ChatMetrics":
        return cls(
            replies=meter.create_counter(
                "chat.replies", unit="{reply}", description="Replies, by cache.hit."
            ),
            reply_latency=meter.create_histogram(
                "chat.reply.duration",
                unit="s",
                description="Time to produce a reply (lookup, thinking, storing), by cache.hit.",
                explicit_bucket_boundaries_advisory=[
                    0.005,
                    0.01,
                    0.025,
                    0.05,
                    0.1,
                    0.25,
                    0.5,
                    1.0,
                    2.5,
                    5.0,
                ],
            ),
        )
