"""Pages a person opens in a browser: headers for them, and each service's /docs.

The pages and their assets are files in the package (built by ``make web`` from
``web/``, committed): nothing is built at run time and nothing is fetched from
another origin, so they work offline.

- HTML pages carry a ``Content-Security-Policy`` that allows this origin only:
  no inline script or style, no other host to load from or send to, no framing.
- Assets (scripts, styles) are revalidated on every use (``no-cache`` with an
  ``ETag``: a 304 costs a round trip, no body). Their names carry no content hash,
  so a long ``max-age`` would keep serving an old bundle after an upgrade. The
  gateway's ``no-store`` is for API responses only: a route's own Cache-Control
  wins over the edge's default.
- ``/docs`` is Swagger UI from ``swagger_ui/`` (FastAPI's own page loads it from
  a CDN, with an inline script that such a policy forbids).
"""

import os
from os import PathLike
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response
from starlette.types import Scope

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        # Swagger UI shows images of the spec as data: URLs.
        "img-src 'self' data:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Cache-Control": "no-cache",
    "Referrer-Policy": "no-referrer",
}
ASSET_CACHE_CONTROL = "no-cache"

SWAGGER_UI = Path(__file__).parent / "swagger_ui"
DOCS_PATH = "/docs"
DOCS_ASSETS = "/docs/assets"
# The documentation's page, its files and the document it shows.
DOCS_PATHS = frozenset({DOCS_PATH, "/openapi.json"})
DOCS_PREFIXES = (f"{DOCS_ASSETS}/",)


def page(path: Path) -> Response:
    """An HTML page, with the headers every page carries."""
    return FileResponse(path, media_type="text/html", headers=PAGE_HEADERS)


class Assets(StaticFiles):
    """Files of one folder, revalidated on every use (see the module docstring)."""

    def file_response(
        self,
        full_path: PathLike[str] | str,
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["Cache-Control"] = ASSET_CACHE_CONTROL
        return response


def mount_docs(app: FastAPI) -> None:
    """Swagger UI at /docs for the app's /openapi.json, from local files (create the
    app with ``docs_url=None, redoc_url=None``)."""
    router = APIRouter(include_in_schema=False)

    @router.get(DOCS_PATH)
    async def docs() -> Response:
        return page(SWAGGER_UI / "index.html")

    app.include_router(router)
    app.mount(DOCS_ASSETS, Assets(directory=SWAGGER_UI), name="docs-assets")
