"""The walkers: well-behaved clients that move steadily and check every snapshot.

Each walker (the websockets library, an independent client) sends its state
``rate`` times a second with a sequence number in it, and checks every
snapshot it receives: valid JSON of the tutorial's shape, uuid4 keys, and
nobody's sequence number ever going back. At the end each makes one last
move, and every walker must see every walker's last move: an update that no
later snapshot shows is lost.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed


class Walker:
    """A well-behaved client that moves at a steady rate and checks snapshots."""

    def __init__(self, name: str, rate: float, source: str | None = None) -> None:
        self.name = name
        self.rate = rate
        #: The source address it connects from (None: the system's choice).
        self.source = source
        self.ws: ClientConnection | None = None
        self.sent = 0
        self.sent_at: dict[int, float] = {}
        self.acked = 0
        #: Highest sequence number seen per walker.
        self.seen: dict[str, int] = {}
        self.snapshots = 0
        self.backwards = 0
        self.invalid: list[str] = []
        self.latencies: list[float] = []
        self.moving = True
        self.closed: tuple[int | None, str] | None = None
        #: Keys already checked to be uuid4 strings.
        self.keys: set[str] = set()

    async def run(self, url: str) -> None:
        self.ws = await connect(
            f"{url}/?username={self.name}",
            compression=None,
            open_timeout=30,
            local_addr=(self.source, 0) if self.source else None,
        )
        receiver = asyncio.create_task(self.receive())
        period = 1 / self.rate
        next_move = time.monotonic()
        try:
            while self.closed is None:
                if self.moving:
                    await self.move()
                # A steady schedule; a late walker skips ahead, never bursts.
                next_move = max(next_move + period, time.monotonic())
                await asyncio.sleep(next_move - time.monotonic())
        except ConnectionClosed:
            pass
        await receiver

    async def move(self) -> None:
        assert self.ws is not None
        self.sent += 1
        self.sent_at[self.sent] = time.monotonic()
        state = {"seq": self.sent, "x": self.sent % 1920, "y": len(self.name)}
        await self.ws.send(json.dumps(state))

    async def receive(self) -> None:
        assert self.ws is not None
        try:
            async for message in self.ws:
                self.check(message)
        except ConnectionClosed:
            pass
        self.closed = (self.ws.close_code, self.ws.close_reason or "")

    def check(self, message: str | bytes) -> None:
        now = time.monotonic()
        try:
            if not isinstance(message, str):
                raise ValueError("a binary message")
            snapshot = json.loads(message, parse_constant=_no_constant)
            if not isinstance(snapshot, dict) or "error" in snapshot:
                raise ValueError(message[:200])
            users: dict[str, Any] = {}
            for key, user in snapshot.items():
                if key not in self.keys:
                    if str(uuid.UUID(key)) != key or uuid.UUID(key).version != 4:
                        raise ValueError(f"bad key {key!r}")
                    self.keys.add(key)
                if user.keys() != {"username", "state"}:
                    raise ValueError(f"bad entry {key}: {user!r:.100}")
                users.setdefault(user["username"], user["state"])
        except ValueError as exc:
            if len(self.invalid) < 5:
                self.invalid.append(str(exc)[:200])
            else:
                self.invalid.append("...")
            return
        self.snapshots += 1
        for name, state in users.items():
            if not name.startswith("walker-"):
                continue
            seq = state.get("seq", 0) if isinstance(state, dict) else 0
            if seq < self.seen.get(name, 0):
                self.backwards += 1
            elif name == self.name and seq > self.acked:
                for n in range(self.acked + 1, seq + 1):
                    sent = self.sent_at.pop(n, None)
                    if sent is not None:
                        self.latencies.append(now - sent)
                self.acked = seq
            self.seen[name] = max(seq, self.seen.get(name, 0))


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} in a snapshot")


async def meet(walkers: list[Walker], timeout: float) -> bool:
    """Wait until every walker has seen every other; False after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not all(len(w.seen) == len(walkers) for w in walkers):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.1)
    return True


async def last_moves(walkers: list[Walker], timeout: float) -> int:
    """Every walker still connected moves once more; every walker must see
    every walker's last move. The number of updates some walker never saw."""
    for walker in walkers:
        walker.moving = False
    await asyncio.sleep(0.2)
    for walker in walkers:
        if walker.closed is None:
            await walker.move()
    finals = {w.name: w.sent for w in walkers}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(
        w.seen != finals for w in walkers if w.closed is None
    ):
        await asyncio.sleep(0.1)
    return sum(
        max(0, finals[name] - w.seen.get(name, 0)) for w in walkers for name in finals
    )
