"""The chat page at ``/``: static files built by ``make web`` from ``web/``.

The page (``page/index.html``, ``chat.css`` and one script bundle, ``chat.js``)
talks to this gateway only: the chat API with the API key the user gives it,
and ``/otlp/v1/traces`` (services/gateway/otlp.py) for its spans. What it needs
to know of the deployment comes from ``/page-config``.
"""

from pathlib import Path

from fastapi import APIRouter, Request
from pydantic import BaseModel
from starlette.responses import Response

from services.common.web import Assets, page
from services.gateway.settings import DEMO_API_KEY, GatewaySettings

PAGE = Path(__file__).parent / "page"
ASSETS_PATH = "/assets"
# The page and its files are not traced on the server: the browser's own
# document-load spans tell how the page loaded.
UNTRACED_PATHS = frozenset({"/", "/page-config"})
UNTRACED_PREFIXES = (f"{ASSETS_PATH}/",)

router = APIRouter(include_in_schema=False)


class PageConfig(BaseModel):
    # A reply's trace id makes a link with this ({trace_id} replaced).
    trace_link_template: str
    # Prefilled in the key form, only while the demo key is one the gateway takes.
    demo_api_key: str | None


@router.get("/")
async def chat_page() -> Response:
    return page(PAGE / "index.html")


@router.get("/page-config")
async def page_config(request: Request) -> PageConfig:
    settings: GatewaySettings = request.app.state.settings
    demo_key = DEMO_API_KEY if DEMO_API_KEY in settings.api_keys else None
    return PageConfig(trace_link_template=settings.trace_link_template, demo_api_key=demo_key)


def page_assets() -> Assets:
    return Assets(directory=PAGE)
