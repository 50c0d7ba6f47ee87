"""The pages a browser opens: the chat page at / and every service's /docs, from
local files, under a policy that allows this origin only; API responses as before."""

import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.trace import SpanKind

from services.cache.main import create_app as create_cache
from services.cache.settings import CacheSettings
from services.chat.main import create_app as create_chat
from services.chat.settings import ChatSettings
from services.common.web import CONTENT_SECURITY_POLICY
from services.gateway.main import create_app as create_gateway
from services.gateway.settings import DEMO_API_KEY, GatewaySettings
from tests.services.conftest import Chain, InMemoryTelemetry, _lifespan

# A src or href with a scheme or a protocol-relative URL: something from elsewhere.
ELSEWHERE = re.compile(r"""(?:src|href)=["'](?:[a-z]+:|//)(?!,)""")


async def test_the_chat_page_comes_with_its_policy(chain: Chain) -> None:
    response = await chain.gateway.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "default-src 'self'" in CONTENT_SECURITY_POLICY
    assert "unsafe-inline" not in CONTENT_SECURITY_POLICY
    assert response.headers["x-content-type-options"] == "nosniff"
    # Revalidated each time, not no-store: the page is the same for everyone.
    assert response.headers["cache-control"] == "no-cache"
    assert not ELSEWHERE.findall(response.text)
    assert '<script defer src="/assets/chat.js">' in response.text


@pytest.mark.parametrize(
    ("path", "media_type"),
    [("/assets/chat.js", "text/javascript"), ("/assets/chat.css", "text/css")],
)
async def test_page_assets_are_revalidated_not_refetched(
    chain: Chain, path: str, media_type: str
) -> None:
    first = await chain.gateway.get(path)
    assert first.status_code == 200
    assert first.headers["content-type"].startswith(media_type)
    assert first.headers["cache-control"] == "no-cache"
    assert first.headers["x-content-type-options"] == "nosniff"
    again = await chain.gateway.get(path, headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304
    assert again.content == b""


async def test_api_responses_are_still_never_stored(chain: Chain) -> None:
    response = await chain.chat("hello")
    assert response.headers["cache-control"] == "no-store"
    assert "content-security-policy" not in response.headers


async def test_the_page_and_its_files_are_not_traced(chain: Chain) -> None:
    for path in ("/", "/assets/chat.js", "/page-config", "/docs", "/docs/assets/swagger-init.js"):
        assert (await chain.gateway.get(path)).status_code == 200, path
    assert chain.spans("gateway") == []
    await chain.chat("hello")  # while the API is
    servers = [s.name for s in chain.spans("gateway") if s.kind == SpanKind.SERVER]
    assert servers == ["POST /chat"]


async def test_page_config_names_the_trace_link_and_the_demo_key(chain: Chain) -> None:
    config = (await chain.gateway.get("/page-config")).json()
    assert config["demo_api_key"] == DEMO_API_KEY
    link = config["trace_link_template"].replace("{trace_id}", "ab" * 16)
    assert link.startswith("http://localhost:3000/explore?")
    assert '"datasource":"tempo"' in link
    assert '"query":"' + "ab" * 16 + '"' in link


async def test_page_config_offers_no_key_the_gateway_does_not_take(redis_url: str) -> None:
    settings = GatewaySettings(
        redis_url=redis_url,
        api_keys={"another-key": "someone"},
        trace_link_template="http://jaeger.example/trace/{trace_id}",
    )
    async with serving(create_gateway(settings, InMemoryTelemetry().outbound())) as gateway:
        config = (await gateway.get("/page-config")).json()
    assert config == {
        "trace_link_template": "http://jaeger.example/trace/{trace_id}",
        "demo_api_key": None,
    }


def test_a_trace_link_without_a_trace_id_is_refused() -> None:
    with pytest.raises(ValueError, match="trace_id"):
        GatewaySettings(trace_link_template="http://localhost:3000/explore")


@pytest.mark.parametrize("service", ["gateway", "chat", "cache"])
async def test_every_service_serves_swagger_ui_itself(service: str, redis_url: str) -> None:
    outbound = InMemoryTelemetry().outbound()
    factories: dict[str, Callable[[], FastAPI]] = {
        "gateway": lambda: create_gateway(GatewaySettings(redis_url=redis_url), outbound),
        "chat": lambda: create_chat(ChatSettings(), outbound),
        "cache": lambda: create_cache(CacheSettings(redis_url=redis_url), outbound),
    }
    async with serving(factories[service]()) as client:
        docs = await client.get("/docs")
        assert docs.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert not ELSEWHERE.findall(docs.text)
        assets = re.findall(r'(?:src|href)="(/docs/assets/[^"]+)"', docs.text)
        assert len(assets) == 4  # icon, styles, Swagger UI, its set-up
        for asset in assets:
            response = await client.get(asset)
            assert response.status_code == 200, asset
            assert response.headers["cache-control"] == "no-cache"
        init = (await client.get("/docs/assets/swagger-init.js")).text
        assert 'url: "/openapi.json"' in init
        assert (await client.get("/redoc")).status_code == 404  # it loads from a CDN


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client for ``app``, inside the app's lifespan."""
    async with _lifespan(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
            yield client


async def test_each_turn_of_the_history_remembers_its_trace(chain: Chain) -> None:
    """So the page can link a reloaded conversation's replies to their traces."""
    first = (await chain.chat("hello")).json()
    second = (await chain.chat("and metrics?", session_id=first["session_id"])).json()
    history = await chain.gateway.get(
        f"/chat/{first['session_id']}/history", headers={"X-API-Key": DEMO_API_KEY}
    )
    turns = history.json()["turns"]
    assert [turn["trace_id"] for turn in turns] == [first["trace_id"], second["trace_id"]]
