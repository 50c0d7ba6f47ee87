from dataclasses import dataclass

from opentelemetry.metrics import Counter, Meter


@dataclass(frozen=True)
class CacheMetrics:
    lookups: Counter

    @classmethod
    def create(cls, meter: Meter) -> "CacheMetrics":
        return cls(
            lookups=meter.create_counter(
                "cache.lookups",
                unit="{lookup}",
                description="Key lookups, by cache.result (hit or miss).",
            )
        )
