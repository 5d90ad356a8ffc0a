"""wspractice: a live-presence WebSocket server, the Node tutorial in Python.

Every connected user, named by ``?username=`` in the URL, has a small JSON
state (a cursor position) that the server shares with everyone in real time.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .config import Options
from .server import WebSocketServer

__all__ = ["Options", "WebSocketServer", "__version__"]
