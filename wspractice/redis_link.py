"""The link to the room's other processes, through Redis (``--redis``).

Two threads, each with its own Redis connection, and nothing on the readers'
path:

* the **publisher** takes this process's changes once per round (a
  :class:`~wspractice.shared_users.Batch`, handed over by
  :meth:`SharedUsers.take_changes
  <wspractice.shared_users.SharedUsers.take_changes>`), merges whatever
  piled up while it was busy, and sends it in one transaction: the process's
  users hash updated and one message published. It also refreshes this
  process's presence key, and sweeps away processes whose key expired;
* the **subscriber** listens on the room's channel, records what other
  processes say in the :class:`~wspractice.shared_users.RemoteRoom`, re-reads
  a process's users when it missed a message, and asks for a broadcast round
  (``on_change``) when anything changed.

Keys and channel, with the prefix ``P`` (``--redis-prefix``), for a process
whose id is ``N`` (docs/scaling.md has the table):

* ``P:node:N``: exists while process N is alive; expires after half of
  ``--presence-timeout`` unless refreshed (every fifth of it);
* ``P:users:N``: a hash, uuid -> ``[username, order, state]``, plus ``seq``,
  the number of N's last message; same expiry;
* ``P:nodes``: a set of the process ids, for a newcomer to find them;
* ``P:changes``: the channel every process publishes its messages on.

When Redis cannot be reached, the process keeps serving its own users: it
logs one WARNING, retries with a growing delay, and when Redis answers again
it writes its users back and re-reads the room (which converges even if Redis
came back empty). Other processes' users stay in view while Redis is away for
less than ``--presence-timeout``; after that, only this process's users do,
until Redis is back.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from .config import Options, redact_url
from .shared_users import (
    NODE,
    SEQ_FIELD,
    BadMessage,
    Batch,
    Entry,
    Kind,
    Message,
    RemoteRoom,
    SharedUsers,
    VERSION,
    Verdict,
    decode_message,
    decode_users_hash,
    encode_entry,
    new_node_id,
)

logger = logging.getLogger(__name__)

#: Seconds to wait for Redis to accept a connection, or to answer a command.
CONNECT_TIMEOUT = 2.0
COMMAND_TIMEOUT = 5.0
#: The first retry delay after Redis failed; each further failure doubles it,
#: up to the smaller of 1 s and half the heartbeat.
FIRST_RETRY = 0.05
#: Most messages handled between two checks of the resync list and pings.
MESSAGE_BATCH = 1000


class RedisLink:
    """This process's place in a room shared through Redis.

    :attr:`users` is the map the presence app uses. :meth:`start` connects
    (waiting a little for the first read of the room, so that the first
    snapshot holds everyone), :meth:`close` says goodbye. :attr:`connected`
    and :meth:`status` report the link's state (for ``/healthz``).
    """

    def __init__(self, options: Options, *, node: str | None = None) -> None:
        assert options.redis is not None
        self.node = node if node is not None else new_node_id()
        self.url = redact_url(options.redis)
        self.remote = RemoteRoom(self.node)
        #: The room, for the presence app.
        self.users = SharedUsers(self.node, self.remote, self.submit)
        prefix = options.redis_prefix
        self.channel = f"{prefix}:changes"
        self.nodes_key = f"{prefix}:nodes"
        self._prefix = prefix
        timeout = options.presence_timeout
        self.presence_timeout = timeout
        #: Lifetime of the presence key and the users hash, in milliseconds.
        self.ttl_ms = max(100, int(timeout * 1000 / 2))
        #: How often the presence key is refreshed and expired ones swept.
        self.heartbeat = timeout / 5
        self.max_retry = min(1.0, self.heartbeat / 2)
        self._client: redis.Redis = redis.Redis.from_url(
            options.redis,
            socket_connect_timeout=CONNECT_TIMEOUT,
            socket_timeout=COMMAND_TIMEOUT,
            retry=Retry(NoBackoff(), 0),
            client_name=f"wspractice-{self.node}",
        )
        self._on_change: Callable[[], None] = _nothing
        # Handed over by rounds to the publisher (guarded by _wake).
        self._wake = threading.Condition()
        self._pending: Batch | None = None
        #: The publisher sleeps with nothing to send: a batch must wake it.
        self._idle = False
        #: Seconds between two messages of this process, at least.
        self.publish_interval = options.redis_interval / 1000
        self._stopping = threading.Event()
        #: The subscriber has read the room once, or failed to.
        self._first_read = threading.Event()
        # The link's health (guarded by _state).
        self._state = threading.Lock()
        self._up = {"publisher": False, "subscriber": False}
        self._down_since: float | None = time.monotonic()
        self._warned = False
        #: The last error talking to Redis (text), for /healthz; None if none.
        self.last_error: str | None = None
        self._seq = 0
        #: How this process's messages start (Message.encode's field order).
        self._own_prefix = f'{{"v":{VERSION},"node":"{self.node}",'.encode()
        self._threads = [
            threading.Thread(target=self._publish_loop, name="wspractice-redis-pub"),
            threading.Thread(target=self._subscribe_loop, name="wspractice-redis-sub"),
        ]
        for thread in self._threads:
            thread.daemon = True
        self._closed = False

    def key(self, kind: str, node: str) -> str:
        """``P:node:N`` or ``P:users:N``."""
        return f"{self._prefix}:{kind}:{node}"

    # ------------------------------------------------------------ interface

    def start(self, on_change: Callable[[], None], wait: float = 3.0) -> None:
        """Connect, and wait up to ``wait`` seconds for the first read of the
        room. ``on_change`` asks for a broadcast round (any thread)."""
        self._on_change = on_change
        logger.info(
            "sharing the room through Redis %s as process %s (prefix %r)",
            self.url,
            self.node,
            self._prefix,
        )
        for thread in self._threads:
            thread.start()
        self._first_read.wait(wait)

    def submit(self, batch: Batch) -> None:
        """This process's changes of one round (called under the app's lock:
        returns at once)."""
        with self._wake:
            if self._pending is None:
                self._pending = batch
            else:
                self._pending.merge(batch)
            if self._idle:
                self._wake.notify()

    def close(self, timeout: float = 2.0) -> None:
        """Tell the room this process is leaving (its users leave everyone's
        view at once), then stop. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._stopping.set()
        with self._wake:
            self._wake.notify_all()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout)
        self._client.close()

    @property
    def connected(self) -> bool:
        """Whether both connections to Redis work."""
        with self._state:
            return all(self._up.values())

    def status(self) -> dict[str, Any]:
        """The link's state, as ``/healthz`` shows it."""
        with self._state:
            down = self._down_since
            status: dict[str, Any] = {
                "url": self.url,
                "connected": all(self._up.values()),
                "process": self.node,
                "down_for": None if down is None else time.monotonic() - down,
                "last_error": self.last_error,
            }
        status["processes"] = 1 + len(self.remote.nodes())
        status["remote_users"] = len(self.remote)
        return status

    # ------------------------------------------------------------ health

    def _ok(self, role: str) -> None:
        with self._state:
            if self._up[role]:
                return
            self._up[role] = True
            if not all(self._up.values()) or self._down_since is None:
                return
            down_for = time.monotonic() - self._down_since
            self._down_since = None
            warned, self._warned = self._warned, False
        if warned:
            logger.info(
                "Redis %s is back after %.1f s: sharing the room again",
                self.url,
                down_for,
            )
        else:
            logger.info("connected to Redis %s", self.url)

    def _failed(self, role: str, exc: BaseException) -> None:
        error = f"{type(exc).__name__}: {exc}"
        with self._state:
            self._up[role] = False
            self.last_error = error
            if self._down_since is None:
                self._down_since = time.monotonic()
            warn = not self._warned
            self._warned = True
        if warn:
            logger.warning(
                "Redis %s is unavailable (%s): serving this process's users"
                " alone, retrying",
                self.url,
                error,
            )
        else:
            logger.debug("Redis %s (%s): %s", self.url, role, error)

    def _down_for(self) -> float:
        with self._state:
            down = self._down_since
        return 0.0 if down is None else time.monotonic() - down

    def _retry_delays(self) -> _Delays:
        return _Delays(FIRST_RETRY, self.max_retry)

    # ------------------------------------------------------------ publisher

    def _publish_loop(self) -> None:
        #: This process's users as the room should know them.
        local: dict[str, Entry] = {}
        announce = True  # Write everything (first time, or after a failure).
        next_beat = 0.0
        #: When the next message may go (--redis-interval after the last).
        ready_at = 0.0
        #: Processes found without a presence key, by how many sweeps in a row.
        missing: dict[str, int] = {}
        delays = self._retry_delays()
        while True:
            with self._wake:
                self._wait_for_work(next_beat, ready_at)
                batch, self._pending = self._pending, None
            if batch is not None:
                batch.apply_to(local)
            if self._stopping.is_set():
                break
            try:
                if announce:
                    self._announce(local)
                    announce = False
                    missing.clear()
                elif batch:
                    self._send(batch, local)
                    ready_at = time.monotonic() + self.publish_interval
                if time.monotonic() >= next_beat:
                    if not self._beat():
                        logger.info("Redis had forgotten this process: announcing")
                        self._announce(local)
                    self._sweep(missing)
                    next_beat = time.monotonic() + self.heartbeat
                self._ok("publisher")
                delays.reset()
            except RedisError as exc:
                self._failed("publisher", exc)
                announce = True
                if self._stopping.wait(delays.next()):
                    break
        if self._up["publisher"]:
            self._goodbye()

    def _wait_for_work(self, next_beat: float, ready_at: float) -> None:
        """Under ``_wake``: sleep until a batch may go, the heartbeat is due,
        or the link stops. Batches that come meanwhile are merged."""
        while not self._stopping.is_set():
            now = time.monotonic()
            if now >= next_beat or (self._pending is not None and now >= ready_at):
                return
            until = next_beat if self._pending is None else min(next_beat, ready_at)
            self._idle = self._pending is None
            self._wake.wait(until - now)
            self._idle = False

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _announce(self, local: dict[str, Entry]) -> None:
        """Write every user of this process, and say so to the room."""
        seq = self._next_seq()
        users_key = self.key("users", self.node)
        fields: dict[Any, str] = {u: encode_entry(e) for u, e in local.items()}
        fields[SEQ_FIELD] = str(seq)
        message = Message(self.node, seq, Kind.FULL, Batch(joined=dict(local)))
        pipe = self._client.pipeline(transaction=True)
        pipe.delete(users_key)
        pipe.hset(users_key, mapping=fields)
        pipe.pexpire(users_key, self.ttl_ms)
        pipe.set(self.key("node", self.node), "1", px=self.ttl_ms)
        pipe.sadd(self.nodes_key, self.node)
        pipe.publish(self.channel, message.encode())
        pipe.execute()

    def _send(self, batch: Batch, local: dict[str, Entry]) -> None:
        """One round's changes: the users hash and one message, atomically."""
        seq = self._next_seq()
        users_key = self.key("users", self.node)
        fields: dict[Any, str] = {u: encode_entry(local[u]) for u in batch.joined}
        for uuid in batch.updated:
            entry = local.get(uuid)
            if entry is not None:
                fields[uuid] = encode_entry(entry)
        fields[SEQ_FIELD] = str(seq)
        pipe = self._client.pipeline(transaction=True)
        pipe.hset(users_key, mapping=fields)
        if batch.left:
            pipe.hdel(users_key, *batch.left)
        message = Message(self.node, seq, Kind.CHANGES, batch)
        pipe.publish(self.channel, message.encode())
        pipe.execute()

    def _beat(self) -> bool:
        """Refresh this process's keys; False if Redis had lost them."""
        pipe = self._client.pipeline(transaction=False)
        pipe.set(self.key("node", self.node), "1", px=self.ttl_ms, xx=True)
        pipe.pexpire(self.key("users", self.node), self.ttl_ms)
        alive, users = pipe.execute()
        return bool(alive) and bool(users)

    def _sweep(self, missing: dict[str, int]) -> None:
        """Drop processes whose presence key expired (found missing by two
        sweeps in a row, so that a process writing itself back after Redis
        restarted is not dropped meanwhile)."""
        known = {_text(n) for n in self._client.smembers(self.nodes_key)}
        nodes = sorted((known | set(self.remote.nodes())) - {self.node})
        if not nodes:
            missing.clear()
            return
        pipe = self._client.pipeline(transaction=False)
        for node in nodes:
            pipe.exists(self.key("node", node))
        alive = pipe.execute()
        gone = []
        for node, exists in zip(nodes, alive):
            if exists:
                missing.pop(node, None)
            else:
                missing[node] = missing.get(node, 0) + 1
                if missing[node] >= 2:
                    gone.append(node)
        for node in set(missing) - set(nodes):
            del missing[node]
        if not gone:
            return
        pipe = self._client.pipeline(transaction=False)
        for node in gone:
            del missing[node]
            pipe.srem(self.nodes_key, node)
            pipe.delete(self.key("users", node))
        pipe.execute()
        dropped = [node for node in gone if self.remote.drop(node)]
        if dropped:
            logger.info(
                "process(es) %s stopped answering: their users left",
                ", ".join(dropped),
            )
            self._on_change()

    def _goodbye(self) -> None:
        """This process stops: its users leave everyone's view now."""
        seq = self._next_seq()
        try:
            pipe = self._client.pipeline(transaction=True)
            pipe.delete(self.key("users", self.node), self.key("node", self.node))
            pipe.srem(self.nodes_key, self.node)
            pipe.publish(self.channel, Message(self.node, seq, Kind.BYE).encode())
            pipe.execute()
        except RedisError as exc:
            logger.info("could not say goodbye through Redis: %s", exc)

    # ------------------------------------------------------------ subscriber

    def _subscribe_loop(self) -> None:
        delays = self._retry_delays()
        while not self._stopping.is_set():
            pubsub = self._client.pubsub()  # type: ignore[no-untyped-call]
            try:
                self._listen(pubsub, delays)
            except RedisError as exc:
                self._failed("subscriber", exc)
            finally:
                self._first_read.set()
                try:
                    pubsub.close()
                except RedisError:
                    pass
            if self._down_for() >= self.presence_timeout and self.remote.drop_all():
                logger.warning(
                    "no Redis for %.0f s: other processes' users left this"
                    " process's view until it is back",
                    self.presence_timeout,
                )
                self._on_change()
            self._stopping.wait(delays.next())

    def _listen(self, pubsub: Any, delays: _Delays) -> None:
        pubsub.subscribe(self.channel)
        deadline = time.monotonic() + COMMAND_TIMEOUT
        while True:  # Subscribed once Redis confirms: then read the room.
            reply = pubsub.get_message(timeout=max(0.0, deadline - time.monotonic()))
            if reply is not None and reply["type"] == "subscribe":
                break
            if time.monotonic() >= deadline:
                raise redis.TimeoutError("no confirmation of the subscription")
        self._read_room()
        self._first_read.set()
        self._ok("subscriber")
        delays.reset()
        heard = time.monotonic()
        pinged = False
        resync: set[str] = set()
        while not self._stopping.is_set():
            reply = pubsub.get_message(timeout=min(0.5, self.heartbeat / 2))
            now = time.monotonic()
            if reply is not None:
                heard, pinged = now, False
                changed = False
                for _ in range(MESSAGE_BATCH):
                    if reply["type"] == "message":
                        changed = self._handle(reply["data"], resync) or changed
                    reply = pubsub.get_message(timeout=0)
                    if reply is None:
                        break
                if resync:
                    changed = self._read_nodes(sorted(resync)) or changed
                    resync.clear()
                if changed:
                    self._on_change()
            elif now - heard >= self.heartbeat:
                # A quiet channel: make sure the connection still works.
                if pinged and now - heard >= self.heartbeat + COMMAND_TIMEOUT:
                    raise redis.TimeoutError("no answer to a ping on the channel")
                if not pinged:
                    pubsub.ping()
                    pinged = True

    def _handle(self, data: bytes, resync: set[str]) -> bool:
        """One message from the channel; whether the room changed."""
        if data.startswith(self._own_prefix):
            return False  # This process's own message, back from Redis.
        try:
            message = decode_message(data)
        except BadMessage as exc:
            logger.warning("ignored a message on %s: %s", self.channel, exc)
            return False
        verdict = self.remote.receive(message)
        if verdict is Verdict.RESYNC:
            resync.add(message.node)
        if message.kind is Kind.BYE and verdict is Verdict.APPLIED:
            logger.info("process %s stopped: its users left", message.node)
        return verdict in (Verdict.APPLIED, Verdict.RESYNC)

    def _read_room(self) -> None:
        """Read every process's users (after subscribing, so nothing said
        from now on is missed)."""
        nodes = {_text(n) for n in self._client.smembers(self.nodes_key)}
        nodes = {n for n in nodes if NODE.fullmatch(n) and n != self.node}
        if self._read_nodes(sorted(nodes)):
            self._on_change()

    def _read_nodes(self, nodes: list[str]) -> bool:
        """Re-read these processes' users; whether the room changed."""
        if not nodes:
            return False
        pipe = self._client.pipeline(transaction=False)
        for node in nodes:
            pipe.exists(self.key("node", node))
            pipe.hgetall(self.key("users", node))
        replies = pipe.execute()
        changed = False
        for node, alive, fields in zip(nodes, replies[::2], replies[1::2]):
            if not alive or not fields:
                continue  # Gone (the sweep drops it), or not written yet.
            try:
                seq, users = decode_users_hash(fields)
            except BadMessage as exc:
                logger.warning("ignored the users of process %s: %s", node, exc)
                continue
            changed = self.remote.replace(node, seq, users) or changed
        return changed


class _Delays:
    """Retry delays: doubling from ``first`` up to ``most``."""

    def __init__(self, first: float, most: float) -> None:
        self.first = first
        self.most = most
        self._next = first

    def next(self) -> float:
        delay = self._next
        self._next = min(self.most, delay * 2)
        return delay

    def reset(self) -> None:
        self._next = self.first


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _nothing() -> None:
    pass
