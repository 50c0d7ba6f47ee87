from opentelemetry.metrics import Meter

# Replies take from milliseconds (a hit) to the thinking cap (1.5 s by default).
REPLY_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class ChatMetrics:
    """``chat.replies`` and ``chat.reply.duration``, both labelled ``cache.hit``;
    ``chat.degraded``: replies made without the cache service, by
    ``chat.degraded.reason`` (cache_unavailable, history_unsaved)."""

    def __init__(self, meter: Meter) -> None:
        self.replies = meter.create_counter(
            "chat.replies", unit="{reply}", description="Replies, by cache.hit."
        )
        self.reply_latency = meter.create_histogram(
            "chat.reply.duration",
            unit="s",
            description="Time to produce a reply (lookup, thinking, storing), by cache.hit.",
            explicit_bucket_boundaries_advisory=REPLY_SECONDS_BUCKETS,
        )
        self.degraded = meter.create_counter(
            "chat.degraded",
            unit="{reply}",
            description="Replies made without the cache service, by chat.degraded.reason.",
        )
