"""``--trace``: the opening handshake and every frame, logged for learners.

With ``--trace`` the server logs, for each WebSocket connection:

* the upgrade request as http.server parsed it, and the answer as it left:
  the ``101 Switching Protocols`` response, with how ``Sec-WebSocket-Accept``
  was computed from ``Sec-WebSocket-Key`` (SHA-1 of the key and RFC 6455's
  GUID, in base64), or a refusal, with the rule it broke;
* every frame in both directions: FIN, the RSV bits, the opcode, whether it
  is masked (and with which key), the payload length, the header bytes and a
  short preview of the payload.

Every line is labelled with the client's address and port, ``[ip:port]``,
and reads from the server's point of view: ``recv`` is what the server
received from the client, ``sent`` what it sent to the client.

Everything goes to the ``wspractice.trace`` logger at INFO. With tracing off
(the default) no :class:`ConnectionTracer` exists and the connection's hooks
are one ``is not None`` test each.

Rule: wsproto owns the protocol. This module builds no frame and computes no
key by hand: it runs wsproto's own :class:`~wsproto.frame_protocol.FrameDecoder`
over a copy of the bytes that crossed the socket, and shows the accept key
that :func:`wsproto.utilities.generate_accept_token` computes. It only reads
and logs; the connection never depends on it.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Iterable
from http import HTTPStatus

from wsproto.extensions import Extension
from wsproto.frame_protocol import (
    CloseReason,
    FrameDecoder,
    Opcode,
    ParseFailed,
    RsvBits,
)
from wsproto.utilities import ACCEPT_GUID, generate_accept_token

logger = logging.getLogger("wspractice.trace")

#: How many characters of a payload the trace shows.
PREVIEW_CHARS = 60

#: How many bytes of a payload are kept to build that preview (UTF-8 takes
#: up to 4 bytes per character).
_PREVIEW_BYTES = 4 * PREVIEW_CHARS + 4


class _CompressedFrames(Extension):
    """Lets the trace's decoder accept RSV1, leaving payloads compressed.

    When permessage-deflate is in force, RSV1 marks a compressed message.
    The trace shows such payloads as "compressed, N bytes": it does not
    inflate them (that is the connection's job, and its state).
    """

    name = "permessage-deflate"

    def enabled(self) -> bool:
        return True

    def offer(self) -> bool | str:
        return False

    def frame_inbound_header(
        self,
        proto: object,
        opcode: Opcode,
        rsv: RsvBits,
        payload_length: int,
    ) -> CloseReason | RsvBits:
        return RsvBits(True, False, False)


class _Direction:
    """One direction of one connection: its own decoder and what it has seen."""

    def __init__(self, label: str, *, from_client: bool, compressed: bool) -> None:
        self.label = label
        self.from_client = from_client
        extensions: list[Extension] = [_CompressedFrames()] if compressed else []
        # The decoder plays the receiving side: the server decodes what the
        # client sends (client=False: frames must be masked) and a client
        # decodes what the server sends (client=True: frames must not be).
        self.decoder = FrameDecoder(client=not from_client, extensions=extensions)
        self.broken = False
        self._header_bytes = b""
        self._preview = bytearray()
        self._message_compressed = False

    def feed(self, data: bytes) -> None:
        if self.broken:
            return
        self.decoder.receive_bytes(data)
        try:
            while self._step():
                pass
        except ParseFailed as exc:
            self.broken = True
            logger.info(
                "%s %s cannot decode: %s (close code %d); not tracing this"
                " direction any more",
                self.label,
                "recv" if self.from_client else "sent",
                exc,
                exc.code,
            )

    def _step(self) -> bool:
        """Decode what the buffer holds of the next frame; False to wait."""
        decoder = self.decoder
        if decoder.header is None:
            before = len(decoder.buffer)
            pending = bytes(decoder.buffer.buffer[:14])  # The longest header.
            if not decoder.parse_header():
                return False
            self._header_bytes = pending[: before - len(decoder.buffer)]
            self._preview.clear()
        header = decoder.header
        assert header is not None
        frame = decoder.process_buffer()
        if frame is None:
            return False
        payload = frame.payload  # Raw bytes: FrameDecoder decodes no text.
        assert isinstance(payload, (bytes, bytearray))
        room = _PREVIEW_BYTES - len(self._preview)
        if room > 0:
            self._preview += payload[:room]
        if frame.frame_finished:
            self._log_frame(header.fin, header.rsv, header.opcode, header.payload_len)
        return True

    def _log_frame(self, fin: bool, rsv: RsvBits, opcode: Opcode, length: int) -> None:
        head = self._header_bytes
        if self.from_client:
            # A client frame's header ends with its 4-byte masking key.
            masking = f"MASK=1 key={head[-4:].hex()}"
        else:
            masking = "MASK=0"
        if opcode in (Opcode.TEXT, Opcode.BINARY):
            self._message_compressed = rsv[0]
        compressed = self._message_compressed and not opcode.iscontrol()
        if fin and not opcode.iscontrol():
            self._message_compressed = False
        logger.info(
            "%s %s frame FIN=%d RSV=%d%d%d opcode=%#x %s %s len=%d [%s] %s",
            self.label,
            "recv" if self.from_client else "sent",
            fin,
            *rsv,
            opcode.value,
            opcode.name.lower(),
            masking,
            length,
            head.hex(" "),
            _preview(opcode, bytes(self._preview), length, compressed),
        )


def _preview(opcode: Opcode, data: bytes, length: int, compressed: bool) -> str:
    """A short, log-safe view of a payload (``data`` is its beginning)."""
    if compressed:
        return f"(compressed, {length} bytes)"
    if opcode is Opcode.CLOSE:
        if length == 0:
            return "(no code: 1005)"
        code = int.from_bytes(data[:2], "big")
        try:
            name = CloseReason(code).name
        except ValueError:
            name = "application" if code >= 3000 else "unknown"
        reason = data[2:].decode("utf-8", "replace")
        return f"code={code} ({name}) reason={reason!r}"
    if opcode is Opcode.BINARY or opcode.iscontrol():
        shown = data[:24]
        more = f" +{length - len(shown)} bytes" if length > len(shown) else ""
        return f"{shown!r}{more}" if opcode.iscontrol() else f"{shown.hex(' ')}{more}"
    text = data.decode("utf-8", "replace")  # A fragment may end mid-character.
    if len(text) > PREVIEW_CHARS or length > len(data):
        return f"{text[:PREVIEW_CHARS]!r}... ({length} bytes)"
    return repr(text)


class ConnectionTracer:
    """Logs one connection's handshake and frames, both ways."""

    def __init__(self, peer: str) -> None:
        #: How the connection is named in every line, e.g. ``[127.0.0.1:50312]``.
        self.label = f"[{peer}]"
        self._inbound: _Direction | None = None
        self._outbound: _Direction | None = None

    # ------------------------------------------------------------ handshake

    def request(self, request_line: str, headers: Iterable[tuple[str, str]]) -> None:
        """The upgrade request: its request line and headers, in order.

        As http.server parsed them: each line without its CRLF.
        """
        logger.info("%s recv %s", self.label, request_line)
        for name, value in headers:
            logger.info("%s recv %s: %s", self.label, name, value)
        logger.info("%s recv (empty line: end of the request head)", self.label)

    def accepted(self, key: str, response_head: bytes, *, compressed: bool) -> None:
        """The 101 response (``response_head``, CRLFs included) for ``key``."""
        guid = ACCEPT_GUID.decode("ascii")
        digest = hashlib.sha1(key.encode("ascii") + ACCEPT_GUID).digest()
        token = generate_accept_token(key.encode("ascii")).decode("ascii")
        assert token == base64.b64encode(digest).decode("ascii")
        label = self.label
        logger.info(
            "%s accept Sec-WebSocket-Accept = base64(SHA-1(key + GUID)):", label
        )
        logger.info("%s accept   key          %s", label, key)
        logger.info("%s accept   + GUID       %s%s", label, key, guid)
        logger.info("%s accept   SHA-1 (hex)  %s", label, digest.hex())
        logger.info(
            "%s accept   base64       %s  (wsproto.utilities.generate_accept_token)",
            label,
            token,
        )
        for line in response_head.decode("latin-1").split("\r\n"):
            if line:
                logger.info("%s sent %s", label, line)
        logger.info("%s sent (empty line: frames follow)", label)
        self._inbound = _Direction(label, from_client=True, compressed=compressed)
        self._outbound = _Direction(label, from_client=False, compressed=compressed)

    def refused(self, status: int, reason: str, response: bytes) -> None:
        """A refused handshake: the broken rule, then ``response`` (head and
        body) as it was written."""
        label = self.label
        phrase = HTTPStatus(status).phrase
        logger.info("%s refuse %d %s: %s", label, status, phrase, reason)
        head, _, body = response.partition(b"\r\n\r\n")
        for line in head.decode("latin-1").split("\r\n"):
            logger.info("%s sent %s", label, line)
        logger.info("%s sent (empty line: the body follows)", label)
        text = body.decode("utf-8", "replace")
        logger.info("%s sent body, %d bytes: %r", label, len(body), text)

    # ------------------------------------------------------------ frames

    def received(self, data: bytes) -> None:
        """Bytes read from the client; ``b""`` is the end of the stream."""
        if not data:
            logger.info("%s recv EOF (the client closed its side of TCP)", self.label)
        elif self._inbound is not None:
            self._inbound.feed(bytes(data))

    def sent(self, data: bytes | bytearray | memoryview) -> None:
        """Frames the server sends the client, in the order they go out
        (before TLS), as they are queued for the socket."""
        if data and self._outbound is not None:
            self._outbound.feed(bytes(data))
