from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response
from opentelemetry import trace
from pydantic import BaseModel, Field

from services.cache.metrics import CacheMetrics
from services.cache.settings import CacheSettings
from services.cache.store import CacheStore
from services.common.app import from_state
from services.common.problems import NotFoundError

router = APIRouter(tags=["cache"])

Key = Annotated[str, Path(pattern=r"^[A-Za-z0-9:_.-]{1,200}$", description="Cache key")]
MAX_VALUE_CHARS = 64_000


Store = Annotated[CacheStore, Depends(from_state("store"))]
Settings = Annotated[CacheSettings, Depends(from_state("settings"))]
Metrics = Annotated[CacheMetrics, Depends(from_state("metrics"))]


class CacheEntry(BaseModel):
    key: str
    value: str


class PutValue(BaseModel):
    value: str = Field(max_length=MAX_VALUE_CHARS)
    ttl_seconds: int | None = Field(default=None, ge=1, le=30 * 24 * 3600)


class AppendValue(BaseModel):
    value: str = Field(max_length=MAX_VALUE_CHARS)
    # None: the list never expires (and, having no TTL, is never evicted).
    ttl_seconds: int | None = Field(default=None, ge=1, le=30 * 24 * 3600)


class ListLength(BaseModel):
    key: str
    length: int


class ListValues(BaseModel):
    key: str
    values: list[str]


class Stats(BaseModel):
    hits: int
    misses: int
    keys: int = Field(description="Keys in the Redis database")


@router.get("/cache/{key}", summary="Read a value")
async def get_value(key: Key, store: Store, metrics: Metrics) -> CacheEntry:
    value = await store.get(key)
    hit = value is not None
    trace.get_current_span().set_attribute("cache.hit", hit)
    metrics.lookups.add(1, {"cache.result": "hit" if hit else "miss"})
    if value is None:
        raise NotFoundError(f"No value for key {key!r}.")
    return CacheEntry(key=key, value=value)


@router.put("/cache/{key}", summary="Store a value with a TTL")
async def put_value(key: Key, body: PutValue, store: Store, settings: Settings) -> CacheEntry:
    await store.put(key, body.value, body.ttl_seconds or settings.default_ttl_seconds)
    return CacheEntry(key=key, value=body.value)


@router.delete("/cache/{key}", status_code=204, summary="Delete a value (idempotent)")
async def delete_value(key: Key, store: Store) -> Response:
    await store.delete(key)
    return Response(status_code=204)


@router.post("/lists/{key}", summary="Append to a list (keeps the newest items); no TTL: kept")
async def append(key: Key, body: AppendValue, store: Store, settings: Settings) -> ListLength:
    length = await store.append(key, body.value, body.ttl_seconds, settings.max_list_length)
    return ListLength(key=key, length=length)


@router.get("/lists/{key}", summary="Read a list, or its newest items")
async def read_list(
    key: Key, store: Store, last: Annotated[int | None, Query(ge=1, le=100_000)] = None
) -> ListValues:
    values = await store.read_list(key, last)
    if not values:
        raise NotFoundError(f"No list under key {key!r}.")
    return ListValues(key=key, values=values)


@router.get("/stats", summary="Hits, misses and keys")
async def stats(store: Store) -> Stats:
    return Stats(**await store.stats())
