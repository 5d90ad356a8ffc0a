"""Errors that know their meaning on the wire.

Each exception carries the HTTP status (handshake) or the WebSocket close code
(open connection) that reports it, and a short reason a person can act on.
Only the request handler and the session loop turn them into bytes.

This module does no I/O.
"""

from __future__ import annotations

from http import HTTPStatus

from wsproto.frame_protocol import CloseReason

Header = tuple[str, str]


class HandshakeError(Exception):
    """The server refuses an HTTP request; ``status`` says how."""

    def __str__(self) -> str:
        return f"{self.status.value} {self.status.phrase}: {self.reason}"

    def __init__(
        self,
        status: HTTPStatus,
        reason: str,
        headers: tuple[Header, ...] = (),
    ) -> None:
        super().__init__(status, reason, headers)
        self.status = status
        self.reason = reason
        self.headers = headers


class MessageError(Exception):
    """A message the presence app cannot use.

    Only its sender hears of it, as ``{"error": reason}``; the connection and
    the sender's state stay as they were.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class CloseError(Exception):
    """An error that ends one connection with ``code`` and ``reason``."""

    code: CloseReason = CloseReason.INTERNAL_ERROR

    def __str__(self) -> str:
        return f"{self.code.value} {self.code.name}: {self.reason}"

    def __init__(self, reason: str, code: CloseReason | None = None) -> None:
        super().__init__(reason, code)
        self.reason = reason
        if code is not None:
            self.code = code


class UnsupportedData(CloseError):
    """A message of a type the endpoint does not take (1003)."""

    code = CloseReason.UNSUPPORTED_DATA


class PolicyViolation(CloseError):
    """A client that keeps breaking the rules (1008)."""

    code = CloseReason.POLICY_VIOLATION


class MessageTooBig(CloseError):
    """A message larger than ``--max-message-size`` (1009)."""

    code = CloseReason.MESSAGE_TOO_BIG
