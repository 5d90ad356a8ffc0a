"""The demo page's files: what is served, with which headers, and no way out.

HEAD and keep-alive, which the request handler gives every answer, are in
test_handler.py.
"""

from __future__ import annotations

from importlib import resources

import pytest

from wspractice.assets import CONTENT_SECURITY_POLICY

from .conftest import RunningServer
from .rawws import HTTPResponse, RawClient


def get(server: RunningServer, target: str) -> HTTPResponse:
    request = f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode("latin-1")
    with RawClient(server.port) as client:
        client.send(request)
        return client.read_response()


def static_bytes(name: str) -> bytes:
    return resources.files("wspractice").joinpath("static").joinpath(name).read_bytes()


@pytest.mark.parametrize(
    ("target", "name", "content_type"),
    [
        ("/", "index.html", "text/html; charset=utf-8"),
        ("/?username=Alex", "index.html", "text/html; charset=utf-8"),
        ("/static/app.js", "app.js", "text/javascript; charset=utf-8"),
        ("/static/style.css", "style.css", "text/css; charset=utf-8"),
        ("/static/favicon.svg", "favicon.svg", "image/svg+xml"),
    ],
)
def test_page_and_assets_are_served_with_type_length_and_security_headers(
    server: RunningServer, target: str, name: str, content_type: str
) -> None:
    response = get(server, target)
    body = static_bytes(name)
    assert response.status == 200
    assert response.body == body
    assert response.headers["content-type"] == content_type
    assert response.headers["content-length"] == str(len(body))
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert response.headers["cache-control"] == "no-cache"


def test_csp_allows_only_own_scripts_and_own_websocket() -> None:
    directives = dict(
        d.strip().split(" ", 1) for d in CONTENT_SECURITY_POLICY.split(";")
    )
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'"
    assert directives["connect-src"] == "'self'"
    assert "unsafe-inline" not in CONTENT_SECURITY_POLICY
    assert "unsafe-eval" not in CONTENT_SECURITY_POLICY


@pytest.mark.parametrize(
    "target",
    [
        "/static/../handler.py",
        "/static/..%2fhandler.py",
        "/static/%2e%2e/handler.py",
        "/static//etc/passwd",
        "/static/",
        "/static",
        "/static/missing.js",
        "/static/app.js/",
        "/static/APP.JS",
        "/index.html",
        "/app.js",
        "/../wspractice/handler.py",
        "/static/../../setup.cfg",
    ],
)
def test_paths_outside_the_static_files_are_404_with_the_hint(
    server: RunningServer, target: str
) -> None:
    response = get(server, target)
    assert response.status == 404
    assert b"ws://HOST:PORT/?username=NAME" in response.body
    assert response.headers["content-type"] == "text/plain; charset=utf-8"


def test_page_uses_no_inline_script_or_style_and_no_other_host() -> None:
    html = static_bytes("index.html").decode("utf-8")
    assert '<script type="module" src="/static/app.js"></script>' in html
    assert "<script>" not in html and "<style" not in html
    assert " style=" not in html and "onclick" not in html.lower()
    assert "http://" not in html and "https://" not in html
    js = static_bytes("app.js").decode("utf-8")
    assert "innerHTML" not in js.replace("never innerHTML", "")
    assert "http://" not in js.replace("http://www.w3.org/2000/svg", "").replace(
        "http://HOST:PORT", ""
    )
