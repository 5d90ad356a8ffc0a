"""The connection core, driven with byte strings and a fake clock.

No socket, no thread, no sleep: each test feeds :class:`Protocol` the bytes a
client would send, at times it chooses, and reads back the frames the server
would write. Client frames are built by hand (tests/rawws.py), independently
of wsproto.
"""

from __future__ import annotations

import struct
import zlib

import pytest
from wsproto.extensions import PerMessageDeflate

from wspractice.config import Options
from wspractice.protocol import HIGH_WATER, Broadcast, Protocol, Snapshot

from .rawws import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    close_frame,
    frame,
    parse_frames,
)

START = 1000.0


class Client:
    """A protocol and a fake clock; what a socket would carry, as frames."""

    def __init__(self, **changes: object) -> None:
        self.options = Options(
            max_message_size=1000,
            ping_interval=20,
            ping_timeout=10,
            close_timeout=5,
            send_timeout=30,
        ).replace(**changes)
        self.now = START
        self.protocol = Protocol(self.options, self.now, **self.protocol_args())

    def protocol_args(self) -> dict[str, object]:
        return {}

    def send(self, *frames: bytes) -> list[str | bytes]:
        """Feed frames in one read; every message the protocol hands out."""
        self.protocol.receive_data(b"".join(frames), self.now)
        return self.messages()

    def messages(self) -> list[str | bytes]:
        found = []
        while (message := self.protocol.next_message()) is not None:
            found.append(message)
        return found

    def wire(self) -> bytes:
        """Everything the protocol wants written, as if the socket took it all."""
        data = b""
        while (chunk := self.protocol.data_to_send()) is not None:
            data += bytes(chunk)
            self.protocol.data_sent(len(chunk), self.now)
        return data

    def received(self) -> list[tuple[int, bool, bytes]]:
        return parse_frames(self.wire())

    def close_frame_received(self) -> tuple[int, str]:
        ((opcode, fin, payload),) = self.received()
        assert (opcode, fin) == (OP_CLOSE, True)
        (code,) = struct.unpack("!H", payload[:2])
        return code, payload[2:].decode()

    def tick(self, seconds: float) -> None:
        """Let time pass and run the timer if it is due."""
        self.now += seconds
        deadline = self.protocol.deadline()
        if deadline is not None and self.now >= deadline:
            self.protocol.timer(self.now)


# ---------------------------------------------------------------- messages


def test_a_text_message_is_str_and_a_binary_one_bytes() -> None:
    client = Client()
    messages = client.send(frame(OP_TEXT, "héllo".encode()), frame(OP_BINARY, b"\0\1"))
    assert messages == ["héllo", b"\0\1"]
    assert client.received() == []


def test_fragments_are_assembled_and_pings_between_them_answered() -> None:
    client = Client()
    messages = client.send(
        frame(OP_TEXT, b"hel", fin=False),
        frame(OP_PING, b"are you there"),
        frame(OP_CONT, b"lo", fin=False),
        frame(OP_CONT, b"!"),
    )
    assert messages == ["hello!"]
    assert client.received() == [(OP_PONG, True, b"are you there")]


def test_a_message_is_handed_out_before_a_close_frame_read_with_it() -> None:
    client = Client()
    client.protocol.receive_data(frame(OP_TEXT, b"last") + close_frame(1000), START)
    assert client.protocol.next_message() == "last"
    # The endpoint can still answer: the close frame is not handled yet.
    assert client.protocol.send_text("reply")
    assert client.protocol.next_message() is None
    opcodes = [opcode for opcode, _, _ in client.received()]
    assert opcodes == [OP_TEXT, OP_CLOSE]
    assert client.protocol.closed


def test_a_client_close_is_answered_with_its_code_and_ends_the_connection() -> None:
    client = Client()
    assert client.send(close_frame(1000, "bye")) == []
    assert client.close_frame_received() == (1000, "bye")
    assert client.protocol.closed
    assert not client.protocol.send_text("too late")


def test_a_close_without_a_code_is_answered_with_an_empty_close() -> None:
    client = Client()
    client.send(frame(OP_CLOSE))
    assert client.received() == [(OP_CLOSE, True, b"")]
    assert client.protocol.closed


def test_bytes_with_the_handshake_and_split_reads_make_the_same_messages() -> None:
    data = frame(OP_TEXT, b'{"x": 1}') + frame(OP_TEXT, b'{"x": 2}')
    client = Client()
    found = []
    for i in range(len(data)):  # One byte per read.
        found += client.send(data[i : i + 1])
    assert found == ['{"x": 1}', '{"x": 2}']


def test_end_of_stream_without_a_close_frame_ends_the_connection() -> None:
    client = Client()
    client.protocol.receive_data(frame(OP_TEXT, b"partial", fin=False), START)
    client.protocol.receive_eof(START)
    assert client.messages() == []
    assert client.protocol.closed
    assert client.received() == []  # Nobody to answer.


# ---------------------------------------------------------------- protocol errors


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (frame(OP_TEXT, b"x", rsv=4), "Reserved bit set"),
        (frame(0x3, b"x"), "Invalid opcode"),
        (frame(OP_PING, b"x", fin=False), "fragment control frame"),
        (frame(OP_PING, b"x" * 126), "Control frame with payload len > 125"),
        (frame(OP_CONT, b"x"), "unexpected continuation"),
        (frame(OP_TEXT, b"x", mask=False), "masked"),
    ],
    ids=["rsv", "opcode", "fragmented-ping", "long-ping", "orphan-cont", "unmasked"],
)
def test_a_protocol_violation_closes_with_1002(data: bytes, fragment: str) -> None:
    client = Client()
    assert client.send(data, frame(OP_TEXT, b"never read")) == []
    code, reason = client.close_frame_received()
    assert code == 1002
    assert fragment.lower() in reason.lower()
    # Nothing after the violation is parsed, and there is no waiting for a
    # reply that could not be parsed anyway.
    assert client.protocol.closed
    assert client.send(frame(OP_TEXT, b"more")) == []


def test_invalid_utf8_closes_with_1007_even_across_fragments() -> None:
    client = Client()
    # U+00E9 is C3 A9: split between frames, then broken by the second byte.
    client.send(frame(OP_TEXT, b"caf\xc3", fin=False), frame(OP_CONT, b"\x28"))
    code, _ = client.close_frame_received()
    assert code == 1007
    assert client.protocol.closed


# ---------------------------------------------------------------- limits


def test_a_message_over_the_limit_closes_with_1009_counting_fragments() -> None:
    client = Client(max_message_size=10)
    messages = client.send(
        frame(OP_TEXT, b"123456", fin=False), frame(OP_CONT, b"78901", fin=False)
    )
    assert messages == []
    assert client.close_frame_received() == (1009, "message is larger than 10 bytes")
    # We sent our close: what the client sends now is dropped (RFC 6455 1.4),
    # and its close frame ends the closing handshake.
    assert client.send(frame(OP_CONT, b"x"), frame(OP_TEXT, b"later")) == []
    assert not client.protocol.closed
    client.send(close_frame(1009))
    assert client.protocol.closed
    assert client.received() == []


def test_the_limit_counts_utf8_bytes_not_characters() -> None:
    client = Client(max_message_size=10)
    assert client.send(frame(OP_TEXT, "ééééé".encode())) == ["ééééé"]  # 10 bytes.
    client.send(frame(OP_TEXT, "éééééé".encode()))
    assert client.close_frame_received()[0] == 1009


def test_too_many_fragments_close_with_1008() -> None:
    client = Client(max_message_size=1024)  # At most 64 fragments.
    frames = [frame(OP_TEXT, b"a", fin=False)]
    frames += [frame(OP_CONT, b"a", fin=False) for _ in range(64)]
    client.send(*frames)
    assert client.close_frame_received() == (
        1008,
        "message split into more than 64 fragments",
    )


# ---------------------------------------------------------------- closing


def test_our_close_waits_for_the_clients_then_ends() -> None:
    client = Client()
    client.protocol.close(1001, "going away", client.now)
    assert client.close_frame_received() == (1001, "going away")
    assert client.protocol.close_code == 1001
    assert not client.protocol.closed
    assert client.send(frame(OP_TEXT, b"late")) == []  # Dropped.
    client.send(close_frame(1001))
    assert client.protocol.closed
    assert client.protocol.deadline() is None


def test_a_client_that_never_answers_our_close_is_dropped_after_close_timeout() -> None:
    client = Client(close_timeout=5)
    client.protocol.close(1000, "", client.now)
    client.wire()
    assert client.protocol.deadline() == START + 5
    client.tick(4.9)
    assert client.protocol.abort_reason is None
    client.tick(0.1)
    assert client.protocol.abort_reason == (
        "the client did not finish the closing handshake"
    )
    assert client.protocol.closed


def test_close_is_a_no_op_once_started() -> None:
    client = Client()
    client.protocol.close(1000, "first", client.now)
    client.protocol.close(1011, "second", client.now)
    assert client.close_frame_received() == (1000, "first")


# ---------------------------------------------------------------- keepalive


def test_an_idle_client_is_pinged_and_a_matching_pong_keeps_it() -> None:
    client = Client(ping_interval=20, ping_timeout=10)
    assert client.protocol.deadline() == START + 20
    client.tick(20)
    ((opcode, _, payload),) = client.received()
    assert opcode == OP_PING
    assert client.protocol.deadline() == START + 30  # The pong's deadline.
    client.send(frame(OP_PONG, payload))
    assert client.protocol.deadline() == START + 40  # Next ping: 20 s from the pong.
    client.tick(10)
    assert client.received() == []
    assert client.protocol.open


def test_reading_anything_postpones_the_ping() -> None:
    client = Client(ping_interval=20)
    client.tick(15)
    client.send(frame(OP_TEXT, b"{}"))
    assert client.protocol.deadline() == START + 35
    client.tick(5)  # 20 s after the start, 5 s after the message.
    assert client.received() == []


def test_no_pong_within_ping_timeout_closes_with_1011() -> None:
    client = Client(ping_interval=20, ping_timeout=10)
    client.tick(20)
    ((_, _, payload),) = client.received()
    client.send(frame(OP_PONG, payload + b"?"))  # Not ours: does not count.
    client.tick(9.9)
    assert client.received() == []
    client.tick(0.1)
    assert client.close_frame_received() == (
        1011,
        "keepalive ping timeout: no pong within 10 s",
    )
    client.tick(5)  # close_timeout
    assert client.protocol.abort_reason is not None


def test_no_pings_when_the_interval_is_zero() -> None:
    client = Client(ping_interval=0)
    assert client.protocol.deadline() is None


# ---------------------------------------------------------------- the outbox


def snapshot(version: int) -> Snapshot:
    text = f'{{"v":{version}}}'
    return Snapshot(version, text, frame(OP_TEXT, text.encode(), mask=False))


class Sum(Broadcast):
    """A broadcast that merges by adding up, like changes that accumulate."""

    __slots__ = ("total",)

    def __init__(self, version: int, total: int) -> None:
        super().__init__(version, None)  # Each connection frames its own.
        self.total = total

    def text(self) -> str:
        return str(self.total)

    def merged(self, newer: Broadcast) -> Broadcast:
        assert isinstance(newer, Sum)
        return Sum(newer.version, self.total + newer.total)


def test_a_full_socket_keeps_only_the_newest_snapshot_after_own_replies() -> None:
    client = Client()
    protocol = client.protocol
    protocol.send_broadcast(snapshot(1))
    chunk = protocol.data_to_send()
    assert chunk is not None
    protocol.data_sent(0, client.now)  # The socket is full.
    protocol.send_broadcast(snapshot(2))
    protocol.send_text("reply")
    protocol.send_broadcast(snapshot(3))
    protocol.send_broadcast(snapshot(2))  # Older than the newest: ignored.
    assert [payload for _, _, payload in client.received()] == [
        b'{"v":1}',  # Was being written: it goes out whole.
        b"reply",
        b'{"v":3}',
    ]


def test_a_waiting_broadcast_is_merged_with_newer_ones_never_skipped() -> None:
    client = Client()
    protocol = client.protocol
    protocol.send_text("first")
    protocol.data_to_send()
    protocol.data_sent(0, client.now)  # The socket is full.
    for version in range(1, 5):
        protocol.send_broadcast(Sum(version, version))
    assert [payload for _, _, payload in client.received()] == [b"first", b"10"]
    protocol.send_broadcast(Sum(5, 5))
    assert client.received() == [(OP_TEXT, True, b"5")]


def test_a_partial_write_resumes_where_it_stopped() -> None:
    client = Client()
    client.protocol.send_text("abcdef")
    chunk = client.protocol.data_to_send()
    assert chunk is not None
    client.protocol.data_sent(3, client.now)
    rest = client.protocol.data_to_send()
    assert rest is not None and bytes(rest) == bytes(chunk[3:])
    assert client.wire() == bytes(rest)


def test_a_socket_that_takes_nothing_for_send_timeout_is_dropped() -> None:
    client = Client(send_timeout=30, ping_interval=0)
    client.protocol.send_text("x" * 100)
    client.protocol.data_to_send()
    client.protocol.data_sent(0, client.now)
    assert client.protocol.deadline() == START + 30
    client.tick(20)
    client.protocol.data_to_send()
    client.protocol.data_sent(10, client.now)  # Progress: the clock restarts.
    assert client.protocol.deadline() == START + 50
    client.tick(30)
    assert client.protocol.abort_reason == "the client took no data for 30 seconds"
    assert client.protocol.data_to_send() is None
    assert client.protocol.closed


def test_reading_pauses_while_replies_pile_up_and_resumes_as_they_leave() -> None:
    client = Client(max_message_size=HIGH_WATER)
    protocol = client.protocol
    while not protocol.reading_paused:
        assert protocol.send_bytes(b"x" * 4096)
    assert protocol.pending_bytes > HIGH_WATER
    client.wire()
    assert not protocol.reading_paused
    assert protocol.pending_bytes == 0


def test_an_aborted_connection_sends_and_reads_nothing_more() -> None:
    client = Client()
    client.protocol.send_text("queued")
    client.protocol.abort("testing")
    assert client.protocol.data_to_send() is None
    assert not client.protocol.send_text("more")
    assert client.send(frame(OP_TEXT, b"ignored")) == []
    assert client.protocol.closed


def test_messages_read_before_an_abort_are_not_handed_out() -> None:
    # Bug 6 of the fuzzing: a dropped client's messages kept being handled.
    client = Client()
    client.protocol.receive_data(
        b"".join(frame(OP_TEXT, b"%d" % i) for i in range(5)), client.now
    )
    assert client.protocol.next_message() == "0"
    client.protocol.abort("the endpoint dropped it")
    assert client.protocol.next_message() is None
    assert client.protocol.closed


def test_every_frame_is_sealed_once_in_the_order_it_leaves() -> None:
    sealed: list[bytes] = []

    def seal(data: bytes) -> bytes:
        sealed.append(data)
        return b"<" + data + b">"

    class Sealed(Client):
        def protocol_args(self) -> dict[str, object]:
            return {"seal": seal}

    client = Sealed()
    client.protocol.send_broadcast(snapshot(1))
    client.protocol.data_to_send()
    client.protocol.data_sent(0, client.now)
    client.protocol.send_broadcast(snapshot(2))  # Replaced before leaving...
    client.protocol.send_broadcast(snapshot(3))
    client.protocol.send_text("a")
    wire = client.wire()
    # ...so never sealed; the rest in wire order.
    assert [s[2:] for s in sealed] == [b'{"v":1}', b"a", b'{"v":3}']
    assert wire == b"".join(b"<" + s + b">" for s in sealed)


# ---------------------------------------------------------------- compression


class Compressed(Client):
    def protocol_args(self) -> dict[str, object]:
        deflate = PerMessageDeflate()
        deflate.finalize("permessage-deflate")
        return {"extensions": [deflate]}


def deflated(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-15)
    payload = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return frame(OP_TEXT, payload[:-4], rsv=4)  # RSV1: compressed.


def test_a_compressed_message_is_inflated() -> None:
    client = Compressed()
    assert client.send(deflated(b'{"x": 1}' * 10)) == ['{"x": 1}' * 10]


def test_a_deflate_bomb_stops_at_the_size_limit() -> None:
    client = Compressed(max_message_size=64 * 1024)
    bomb = deflated(b" " * (64 * 1024 * 1024))
    assert len(bomb) < 100 * 1024
    client.send(bomb)
    assert client.close_frame_received() == (
        1009,
        f"message is larger than {64 * 1024} bytes",
    )


def test_a_compressed_connection_frames_snapshots_itself() -> None:
    client = Compressed()
    client.protocol.send_broadcast(snapshot(1))
    ((opcode, fin, payload),) = client.received()
    assert (opcode, fin) == (OP_TEXT, True)
    inflated = zlib.decompressobj(wbits=-15).decompress(payload + b"\x00\x00\xff\xff")
    assert inflated == b'{"v":1}'
