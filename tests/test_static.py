"""The demo page's files over plain HTTP: headers, HEAD, and no way out."""

from __future__ import annotations

from importlib import resources

import pytest

from wspractice.assets import CONTENT_SECURITY_POLICY

from .conftest import RunningServer
from .rawws import HTTPResponse, RawClient


def parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers


def get(server: RunningServer, target: str, method: str = "GET") -> HTTPResponse:
    request = f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode("latin-1")
    with RawClient(server.port) as client:
        client.send(request)
        if method != "HEAD":
            return client.read_response()
        # No body follows a HEAD response, whatever Content-Length says.
        while b"\r\n\r\n" not in client.buffer:
            assert client._fill(), client.buffer
        head, rest = client.buffer.split(b"\r\n\r\n", 1)
        status, headers = parse_head(head)
        if headers.get("connection") == "close":
            assert client.at_eof()
            assert client.buffer == head + b"\r\n\r\n"
        else:  # The next response must follow the head at once.
            client.send(b"GET /nothing-here HTTP/1.1\r\nHost: x\r\n\r\n")
            while not rest.startswith(b"HTTP/") or b"\r\n\r\n" not in rest:
                assert client._fill(), client.buffer
                rest = client.buffer.split(b"\r\n\r\n", 1)[1]
            assert rest.startswith(b"HTTP/1.1 404 Not Found\r\n"), rest
        return HTTPResponse(status, headers, b"")


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


def test_head_sends_the_headers_of_get_and_no_body(server: RunningServer) -> None:
    response = get(server, "/static/app.js", "HEAD")
    assert response.status == 200
    assert response.headers["content-length"] == str(len(static_bytes("app.js")))
    assert response.headers["content-type"] == "text/javascript; charset=utf-8"
    assert response.body == b""


def test_keep_alive_serves_a_second_request_on_the_same_connection(
    server: RunningServer,
) -> None:
    with RawClient(server.port) as client:
        request = b"GET /static/style.css HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        client.send(request + request)
        first = client.read_response()
        second = client.read_response()
    assert first.status == second.status == 200
    assert first.body == second.body == static_bytes("style.css")


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


def test_head_of_an_unknown_path_is_404_without_body(server: RunningServer) -> None:
    response = get(server, "/nothing-here", "HEAD")
    assert response.status == 404
    assert response.body == b""


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
