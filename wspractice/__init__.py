"""wspractice: a live-presence WebSocket server, the Node tutorial in Python.

Every connected user, named by ``?username=`` in the URL, has a small JSON
state (a cursor position) that the server shares with everyone in real time.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .config import Options
from .connection import Connection, Endpoint
from .errors import CloseError, HandshakeError
from .handshake import Request
from .server import Server

__all__ = [
    "CloseError",
    "Connection",
    "Endpoint",
    "HandshakeError",
    "Options",
    "Request",
    "Server",
    "__version__",
]
