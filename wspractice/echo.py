"""``/echo``: every text or binary message comes back unchanged.

The smallest endpoint there is, and the one the Autobahn TestSuite drives.
"""

from __future__ import annotations

import logging

from .connection import Connection
from .handshake import Request

logger = logging.getLogger(__name__)


class EchoApp:
    """Sends each message back to its sender."""

    def check_request(self, request: Request) -> None:
        """Anyone may connect: no username needed, no subprotocol chosen."""

    def handle_connection(self, connection: Connection, request: Request) -> None:
        logger.debug("%r: echo connection opened", connection)

    def handle_message(self, connection: Connection, message: str | bytes) -> None:
        if isinstance(message, str):
            connection.send_text(message)
        else:
            connection.send_bytes(message)

    def handle_close(self, connection: Connection) -> None:
        logger.debug("%r: echo connection closed", connection)
