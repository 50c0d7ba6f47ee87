"""What `make dev` prints once the native stack is up is true: every URL answers, and
the Prometheus build there has no web UI, as the printed note says."""

import httpx
import pytest

from stack.native import NativeStack


def test_every_printed_url_answers(stack: NativeStack) -> None:
    urls = stack.urls()
    assert {"jaeger", "victoria-logs", "prometheus", "gateway"} <= set(urls)
    for name, (url, _note) in urls.items():
        response = httpx.get(url, timeout=10, follow_redirects=True)
        assert response.status_code == 200, (name, url, response.status_code)
        assert response.content, (name, url)


@pytest.mark.parametrize("path", ["/", "/query", "/alerts"])
def test_native_prometheus_has_no_web_ui_as_printed(stack: NativeStack, path: str) -> None:
    """If a build with the UI arrives, this fails: then print the UI's URL instead."""
    _url, note = stack.urls()["prometheus"]
    assert "no web UI" in note
    response = httpx.get(
        f"http://127.0.0.1:{stack.ports.prometheus}{path}", timeout=10, follow_redirects=True
    )
    assert response.status_code != 200, path
