"""A presence client that completes its handshake, then never reads."""

from __future__ import annotations

import socket

import procstat
import rawframes
from serverproc import ServerError


class StalledClient:
    """A presence user whose receive buffer is made tiny and never read.

    The server feels the stall at once rather than after the kernel has
    soaked up megabytes; ``held_by`` tells whether the server still holds
    its end of the connection.
    """

    def __init__(self, port: int, username: str = "stalled") -> None:
        self.port = port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.settimeout(10)
        try:
            self.sock.connect(("127.0.0.1", port))
            self.local_port = self.sock.getsockname()[1]
            request = rawframes.upgrade_request(
                f"/?username={username}", host=f"127.0.0.1:{port}"
            )
            self.sock.sendall(request)
            head = b""
            while not head.endswith(b"\r\n\r\n"):
                chunk = self.sock.recv(1)  # Byte by byte: leave the frames unread.
                if not chunk:
                    raise ServerError(
                        "the server closed the stalled client's handshake"
                    )
                head += chunk
        except BaseException:
            self.sock.close()
            raise
        status = rawframes.response_status(head)
        if status != 101:
            self.sock.close()
            raise ServerError(f"stalled client's handshake failed: HTTP {status}")

    def held_by(self, pid: int | None) -> bool | None:
        """Whether process ``pid`` still has its end of this connection open
        (None if that cannot be known)."""
        if pid is None:
            return None
        return procstat.holds_tcp_connection(pid, self.port, self.local_port)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> StalledClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
