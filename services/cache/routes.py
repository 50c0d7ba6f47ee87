from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response
from opentelemetry import trace
from pydantic import BaseModel, Field

from services.cache.lists import AppendOptions, ListGroup
from services.cache.metrics import CacheMetrics
from services.cache.settings import CacheSettings
from services.cache.store import CacheStore
from services.common.app import from_state
from services.common.models import CURSOR_PATTERN, ITEM_ID_PATTERN
from services.common.problems import NotFoundError

router = APIRouter(tags=["cache"])

KEY_PATTERN = r"^[A-Za-z0-9:_.-]{1,200}$"
Key = Annotated[str, Path(pattern=KEY_PATTERN, description="Cache key")]
MAX_VALUE_CHARS = 64_000
# The most items one read returns: what a response may cost is bounded.
MAX_PAGE_ITEMS = 1_000


Store = Annotated[CacheStore, Depends(from_state("store"))]
Settings = Annotated[CacheSettings, Depends(from_state("settings"))]
Metrics = Annotated[CacheMetrics, Depends(from_state("metrics"))]


class CacheEntry(BaseModel):
    key: str
    value: str


class PutValue(BaseModel):
    value: str = Field(max_length=MAX_VALUE_CHARS)
    ttl_seconds: int | None = Field(default=None, ge=1, le=30 * 24 * 3600)


class Group(BaseModel):
    """A group of lists with a cap: past it, its least recently appended go."""

    key: str = Field(pattern=KEY_PATTERN)
    max_lists: int = Field(ge=1, le=100_000)


class AppendItem(BaseModel):
    value: str = Field(max_length=MAX_VALUE_CHARS)
    item_id: str | None = Field(
        default=None,
        pattern=ITEM_ID_PATTERN,
        description="An item already in the list under this id is not appended again",
    )
    ttl_seconds: int | None = Field(
        default=None,
        ge=1,
        le=30 * 24 * 3600,
        description="Idle expiry, renewed by every append; none: the list is kept",
    )
    max_length: int | None = Field(
        default=None,
        ge=1,
        description="Keep the newest this many (at most, and by default, CACHE_MAX_LIST_LENGTH)",
    )
    must_exist: bool = Field(default=False, description="Only append to a list that exists")
    group: Group | None = None


class ListAppended(BaseModel):
    key: str
    appended: bool = Field(description="False: an item with this id was there already")
    position: int = Field(description="The item's position (kept while it is in the list)")
    length: int
    trimmed: int = Field(description="Items dropped from the oldest end so far")
    evicted: int = Field(description="Lists of the group this append deleted")
    stored: str | None = Field(
        default=None, description="When not appended: the value stored under the id"
    )


class ListLength(BaseModel):
    key: str
    length: int


class ListValues(BaseModel):
    key: str
    values: list[str] = Field(description="Oldest first")
    length: int = Field(description="Items in the list")
    trimmed: int = Field(description="Items dropped from the oldest end so far")
    next_cursor: str | None = Field(description="Where the next page starts; null: no more")


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


@router.post("/lists/{key}", summary="Append to a list, once per item id")
async def append(key: Key, body: AppendItem, store: Store, settings: Settings) -> ListAppended:
    cap = settings.max_list_length
    group = body.group
    options = AppendOptions(
        item_id=body.item_id,
        ttl_seconds=body.ttl_seconds,
        max_length=min(body.max_length or cap, cap),
        must_exist=body.must_exist,
        group=ListGroup(group.key, group.max_lists) if group else None,
    )
    done = await store.append(key, body.value, options)
    if done.outcome == "missing":
        raise NotFoundError(f"No list under key {key!r}.")
    return ListAppended(
        key=key,
        appended=done.outcome == "appended",
        position=done.position,
        length=done.length,
        trimmed=done.trimmed,
        evicted=done.evicted,
        stored=done.stored,
    )


@router.get("/lists/{key}", summary="Read a page of a list, oldest first")
async def read_list(
    key: Key,
    store: Store,
    count: Annotated[int, Query(ge=1, le=MAX_PAGE_ITEMS)] = 100,
    cursor: Annotated[
        str | None, Query(pattern=CURSOR_PATTERN, description="A page's next_cursor")
    ] = None,
) -> ListValues:
    page = await store.read_page(key, start=None if cursor is None else int(cursor), count=count)
    if not page.length:
        raise NotFoundError(f"No list under key {key!r}.")
    after = page.next_position
    return ListValues(
        key=key,
        values=page.values,
        length=page.length,
        trimmed=page.trimmed,
        next_cursor=None if after is None else str(after),
    )


@router.get("/lists/{key}/length", summary="How many items a list holds")
async def list_length(key: Key, store: Store) -> ListLength:
    length = await store.list_length(key)
    if not length:
        raise NotFoundError(f"No list under key {key!r}.")
    return ListLength(key=key, length=length)


@router.get("/stats", summary="Hits, misses and keys")
async def stats(store: Store) -> Stats:
    return Stats(**await store.stats())
