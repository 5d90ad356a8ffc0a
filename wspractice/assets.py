"""The demo page's files: ``GET /`` and ``GET /static/NAME``.

The page lives in ``wspractice/static/`` and ships as package data (no build
step, no CDN). :func:`find` maps a request path to one of those files and
:func:`headers` gives the response headers that go with it. A request path
is never joined to a directory: it must name one of the files that the
directory lists, exactly, so no path (``..``, percent-escapes, symlinks)
can reach anything else.

Rule: this module only reads the package's own files; it imports neither
``socket``, ``threading`` nor ``http.server``. The request handler calls it.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from importlib import resources

#: The URL prefix of every file but the page itself.
PREFIX = "/static/"

#: The page served at ``/``.
INDEX = "index.html"

#: Content-Type by file extension; a file of any other kind is not served.
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}

#: What the page may load: its own script, style and images, and WebSockets
#: to its own origin ('self' matches ws:// and wss:// on the same host and
#: port in CSP Level 3). No inline script or style, no other site, no frames.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self';"
    " connect-src 'self'; base-uri 'none'; form-action 'self';"
    " frame-ancestors 'none'"
)


@dataclass(frozen=True)
class Asset:
    """One file of the demo page, ready to send."""

    name: str
    body: bytes
    content_type: str


def _static_files() -> dict[str, str]:
    """File name -> content type, for every servable file in ``static/``."""
    files: dict[str, str] = {}
    for entry in resources.files("wspractice").joinpath("static").iterdir():
        name = entry.name
        dot = name.rfind(".")
        content_type = CONTENT_TYPES.get(name[dot:]) if dot > 0 else None
        if content_type is not None and entry.is_file():
            files[name] = content_type
    return files


def find(target: str) -> Asset | None:
    """The file that request target ``target`` names, or None.

    ``/`` (with any query string, e.g. ``/?username=Alex``) is the page;
    ``/static/NAME`` is the file NAME of the static directory.
    """
    path = urllib.parse.urlsplit(target).path
    if path == "/":
        name = INDEX
    elif path.startswith(PREFIX):
        name = path[len(PREFIX) :]
    else:
        return None
    content_type = _static_files().get(name)
    if content_type is None:
        return None
    body = resources.files("wspractice").joinpath("static").joinpath(name).read_bytes()
    return Asset(name, body, content_type)


def headers(asset: Asset) -> list[tuple[str, str]]:
    """The response headers for ``asset``, Content-Length included."""
    return [
        ("Content-Type", asset.content_type),
        ("Content-Length", str(len(asset.body))),
        ("X-Content-Type-Options", "nosniff"),
        ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
        ("Referrer-Policy", "no-referrer"),
        # Learners edit these files: always ask the server for the latest.
        ("Cache-Control", "no-cache"),
    ]
