#!/usr/bin/env python3
"""What permessage-deflate costs and saves on wspractice's own messages.

    python scripts/measure_compression.py [--messages N]

It frames real presence traffic with wsproto, once without extensions and
once with permessage-deflate (context takeover, as browsers negotiate it),
and prints, per kind of message: the bytes on the wire, and the CPU time per
message spent by the server (parsing inbound cursor updates, framing outbound
snapshots). A snapshot is framed once for every connection without
compression, but once per connection with it, because each connection has
its own compression context; the last column shows that cost for a room of
that size.
"""

from __future__ import annotations

import argparse
import json
import random
import time
import uuid

from wsproto.connection import Connection, ConnectionType
from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import FrameProtocol


def negotiated_pair() -> tuple[PerMessageDeflate, PerMessageDeflate]:
    """A server-side and a client-side extension that agreed on deflate."""
    server, client = PerMessageDeflate(), PerMessageDeflate()
    offer = client.offer()
    assert isinstance(offer, str)
    response = server.accept(offer)
    assert isinstance(response, str)
    client.finalize(response)
    return server, client


def cursor_messages(count: int) -> list[str]:
    rng = random.Random(1)
    x, y = 400, 300
    out = []
    for _ in range(count):
        x = max(0, min(1920, x + rng.randint(-12, 12)))
        y = max(0, min(1080, y + rng.randint(-12, 12)))
        out.append(json.dumps({"x": x, "y": y}))
    return out


def snapshots(users: int, count: int) -> list[str]:
    """``count`` successive snapshots of a room: one user moves between each."""
    rng = random.Random(users)
    room = {
        str(uuid.UUID(int=rng.getrandbits(128), version=4)): {
            "username": f"user{n}",
            "state": {"x": rng.randint(0, 1920), "y": rng.randint(0, 1080)},
        }
        for n in range(users)
    }
    ids = list(room)
    out = []
    for _ in range(count):
        state = room[rng.choice(ids)]["state"]
        state["x"] = max(0, min(1920, state["x"] + rng.randint(-12, 12)))
        state["y"] = max(0, min(1080, state["y"] + rng.randint(-12, 12)))
        out.append(json.dumps(room, separators=(",", ":")))
    return out


def inbound(messages: list[str], deflate: bool) -> tuple[float, float]:
    """(bytes per message on the wire, server CPU µs per message)."""
    if deflate:
        server_ext, client_ext = negotiated_pair()
        client = FrameProtocol(client=True, extensions=[client_ext])
        server = Connection(ConnectionType.SERVER, [server_ext])
    else:
        client = FrameProtocol(client=True, extensions=[])
        server = Connection(ConnectionType.SERVER, [])
    frames = [bytes(client.send_data(m, fin=True)) for m in messages]
    start = time.process_time()
    for data in frames:
        server.receive_data(data)
        for _ in server.events():
            pass
    cpu = time.process_time() - start
    return sum(map(len, frames)) / len(frames), cpu / len(frames) * 1e6


def outbound(texts: list[str], deflate: bool) -> tuple[float, float]:
    """(bytes per snapshot on the wire, CPU µs to frame one snapshot)."""
    extensions = [negotiated_pair()[0]] if deflate else []
    server = FrameProtocol(client=False, extensions=extensions)
    size = 0
    start = time.process_time()
    for text in texts:
        size += len(server.send_data(text, fin=True))
    cpu = time.process_time() - start
    return size / len(texts), cpu / len(texts) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20000)
    args = parser.parse_args()

    messages = cursor_messages(args.messages)
    print(f"Inbound cursor updates ({args.messages} messages, e.g. {messages[0]})")
    print(f"{'':14}{'bytes/msg':>12}{'server CPU µs/msg':>20}")
    for deflate in (False, True):
        size, cpu = inbound(messages, deflate)
        name = "deflate" if deflate else "plain"
        print(f"{name:14}{size:12.1f}{cpu:20.1f}")

    print()
    print("Outbound snapshots, one user moving between each (framing: once per")
    print("room without deflate, once per connection with it)")
    header = (
        f"{'users':>6}{'plain bytes':>13}{'deflate bytes':>15}{'saved':>8}"
        f"{'plain µs':>10}{'deflate µs':>12}{'deflate µs x users':>20}"
    )
    print(header)
    for users in (1, 10, 100, 500, 1000):
        texts = snapshots(users, max(20, 20000 // users))
        plain_size, plain_cpu = outbound(texts, False)
        deflate_size, deflate_cpu = outbound(texts, True)
        saved = 1 - deflate_size / plain_size
        print(
            f"{users:6}{plain_size:13.0f}{deflate_size:15.0f}{saved:8.0%}"
            f"{plain_cpu:10.1f}{deflate_cpu:12.1f}{deflate_cpu * users:20.0f}"
        )


if __name__ == "__main__":
    main()
