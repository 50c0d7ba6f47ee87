from opentelemetry.metrics import Meter


class CacheMetrics:
    """``cache.lookups``: every key lookup, labelled ``cache.result`` = hit | miss.

    The hit ratio on the cache dashboard is hits over all lookups.
    """

    def __init__(self, meter: Meter) -> None:
        self.lookups = meter.create_counter(
            "cache.lookups", unit="{lookup}", description="Key lookups, by cache.result."
        )
