"""Server settings: every limit and timeout in one frozen object.

This module does no I/O. The CLI builds an :class:`Options` from the command
line; tests build one directly. Every field has a documented default, and
every field is a command-line option of the same name (``max_message_size``
is ``--max-message-size``).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from .forwarded import FORWARDED_HEADERS, TrustedProxies

#: Largest message (in bytes, counted across fragments) either endpoint accepts.
#: A cursor update is about 20 bytes; 32 KiB leaves ample room for a richer
#: state while keeping a snapshot of a thousand users small.
DEFAULT_MAX_MESSAGE_SIZE = 32 * 1024

#: The longest username, in characters, after percent-decoding.
MAX_USERNAME_LENGTH = 64

#: Speed mechanisms that ``Options.ablate`` may turn off (see
#: :mod:`wspractice.fanout` and :meth:`wspractice.writer.Writer.call_at`).
ABLATABLE = ("gate", "pacing", "coarse-timers")

#: What ``--redis-prefix`` may contain: it starts every key and channel name.
REDIS_PREFIX = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


@dataclass(frozen=True)
class Options:
    """What the server may accept and how long it waits."""

    host: str = "127.0.0.1"
    port: int = 8000
    #: Close with 1009 when a message grows past this many bytes.
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    #: Negotiate permessage-deflate when the client offers it.
    compression: bool = False
    #: Build at most one snapshot per this many milliseconds; 0 broadcasts
    #: once per message, as the Node tutorial does. Measured with 25 users at
    #: 20 Hz, 1 ms gave p50/p99 latencies of 1.0/3.7 ms against 1.6/6.0 for
    #: 2 ms and 4.0/7.1 for 5 ms; from 100 users up, where rounds are paced by
    #: how busy the readers are, the three were within the noise of each
    #: other (docs/benchmarks.md, "Choosing --broadcast-interval").
    broadcast_interval: float = 1.0
    #: Megabytes of snapshots a second that coalesced rounds may send, all
    #: connections together; 0: no cap. A round to N users sends N copies of
    #: an N-entry map, so when 1,000 users join at once, uncapped rounds
    #: would each move ~70 MB; 200 MB/s spaces them ~0.35 s apart, which
    #: connected 1,000 users in 2.6 s instead of 4.1 s. Rooms up to 100
    #: users (under 1 MB a round) never reach the cap.
    broadcast_bandwidth: float = 200.0
    #: Close a connection that has accepted no data for this many seconds.
    send_timeout: float = 10.0
    #: Ping a client after this many seconds without hearing from it;
    #: 0 disables keepalive pings.
    ping_interval: float = 20.0
    #: Close with 1011 when a ping has had no pong for this many seconds.
    ping_timeout: float = 20.0
    #: Seconds to wait for the client's reply to our close frame.
    close_timeout: float = 5.0
    #: Close with 1008 after this many bad messages in a row; 0 never does.
    max_bad_messages: int = 10
    #: Presence messages a client may send per second on average; 0: no limit.
    rate_limit: float = 60.0
    #: ... and at once. Persistent excess closes with 1008. 30 s of a cursor at
    #: 20 Hz: when the server falls behind, a client's queued moves arrive in
    #: one read, and must not count as a flood (with 120, a server 4 s behind
    #: at 500 users dropped well-behaved clients' moves).
    rate_burst: int = 600
    #: Largest state a presence client may set, in bytes of compact JSON.
    #: A cursor needs about 20 (``{"x":412,"y":230}``), a rich presence
    #: state (cursor, viewport, selection, colour, status) a few hundred;
    #: 1 KiB leaves room for that and keeps a full map of N users under
    #: N × 1.1 KB, which every tutorial client receives after every change.
    max_state_size: int = 1024
    #: Refuse new WebSockets with 503 beyond this many open ones.
    max_connections: int = 10_000
    #: Refuse new WebSockets from one client address beyond this many open
    #: ones, with 429; 0: no limit. A lecture hall behind one NAT address
    #: fits in 256, while one machine cannot take the whole server.
    max_connections_per_address: int = 256
    #: Drop a client that has not sent a whole request head in this many seconds.
    handshake_timeout: float = 10.0
    #: Largest request head (request line and headers), in bytes; 431 beyond.
    max_header_size: int = 16 * 1024
    #: PEM certificate chain and private key: serve wss:// and https://.
    certfile: str | None = None
    keyfile: str | None = None
    #: Origins allowed besides the same origin and loopback; ``"*"`` allows all.
    allowed_origins: tuple[str, ...] = ()
    #: Names the server answers to in ``Host``, besides IP addresses,
    #: ``localhost`` and its own names (see :class:`~wspractice.handshake.HostRule`):
    #: ``example.com``, ``.example.com`` with its subdomains, ``"*"`` any.
    allowed_hosts: tuple[str, ...] = ()
    #: Proxies whose ``forwarded_header`` gives the client's address:
    #: addresses, networks (``10.0.0.0/8``) or ``"*"``. None by default.
    forwarded_allow_ips: tuple[str, ...] = ()
    #: The header those proxies maintain: ``x-forwarded-for`` or ``forwarded``.
    forwarded_header: str = "x-forwarded-for"
    #: Log every frame and the handshake (for learners).
    trace: bool = False
    #: Speed mechanisms to turn off, for the benchmark's ablation only
    #: (``WSPRACTICE_ABLATE``; see :mod:`wspractice.fanout`).
    ablate: tuple[str, ...] = ()
    # -- One room, several processes (docs/scaling.md) --
    #: ``redis://`` or ``rediss://`` URL: share the room with every process
    #: that uses the same Redis and prefix. None: this process alone.
    redis: str | None = None
    #: Starts every Redis key and channel name of the room.
    redis_prefix: str = "wspractice"
    #: Users of a process that vanished leave everyone's view within this
    #: many seconds.
    presence_timeout: float = 10.0
    #: Milliseconds between two messages this process publishes, at least;
    #: the changes of the rounds in between are merged into the next one.
    #: 0: one message per round.
    redis_interval: float = 10.0
    #: Bind with SO_REUSEPORT, so that several processes share the port
    #: (set by ``--workers``; not an option of its own).
    reuse_port: bool = False

    def __post_init__(self) -> None:
        """Refuse settings that cannot work, naming the field and the rule."""
        _check_types(self)
        for name in (
            "max_message_size",
            "max_state_size",
            "max_connections",
            "max_header_size",
            "rate_burst",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for name in (
            "broadcast_interval",
            "broadcast_bandwidth",
            "send_timeout",
            "ping_interval",
            "close_timeout",
            "max_bad_messages",
            "max_connections_per_address",
            "rate_limit",
            "redis_interval",
        ):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be 0 or more, got {getattr(self, name)}")
        for name in ("ping_timeout", "handshake_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(
                    f"{name} must be more than 0, got {getattr(self, name)}"
                )
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be between 0 and 65535, got {self.port}")
        if self.broadcast_interval > 60_000:
            raise ValueError(
                "broadcast_interval is in milliseconds and must be at most 60000,"
                f" got {self.broadcast_interval}"
            )
        if self.keyfile and not self.certfile:
            raise ValueError("keyfile needs certfile: a key alone cannot serve TLS")
        for name in self.allowed_hosts:
            check_allowed_host(name)
        try:
            TrustedProxies.parse(self.forwarded_allow_ips)
        except ValueError as exc:
            raise ValueError(
                f"forwarded_allow_ips: {exc}; give addresses, networks such as"
                " 10.0.0.0/8, or '*'"
            ) from None
        if self.forwarded_header not in FORWARDED_HEADERS:
            raise ValueError(
                f"forwarded_header must be one of {', '.join(FORWARDED_HEADERS)},"
                f" got {self.forwarded_header!r}"
            )
        if self.redis is not None:
            check_redis_url(self.redis)
        if not REDIS_PREFIX.fullmatch(self.redis_prefix):
            raise ValueError(
                "redis_prefix must be 1 to 64 letters, digits or _.:-,"
                f" got {self.redis_prefix!r}"
            )
        if not 0.5 <= self.presence_timeout <= 3600:
            raise ValueError(
                "presence_timeout must be between 0.5 and 3600 seconds,"
                f" got {self.presence_timeout}"
            )
        _check_whole_numbers(self)
        unknown = set(self.ablate) - set(ABLATABLE)
        if unknown:
            raise ValueError(
                f"ablate: unknown mechanism(s) {', '.join(sorted(unknown))};"
                f" known: {', '.join(ABLATABLE)}"
            )

    @property
    def max_fragments(self) -> int:
        """Most frames one message may be split into.

        Every frame costs the server a parse however small it is, so the
        count is capped in proportion to the size limit: one frame per 16
        bytes of ``max_message_size``, and never fewer than 64.
        """
        return max(64, self.max_message_size // 16)

    def replace(self, **changes: object) -> Options:
        """A copy with some fields changed (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


# ------------------------------------------------------------------ checks

#: A host name, or ``.`` and a domain (``.example.com``).
_HOST_NAME = re.compile(r"\.?[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*\.?")


def check_allowed_host(name: str) -> None:
    """Refuse an ``allowed_hosts`` entry that no ``Host`` header could match.

    Accepted: a name (``example.com``), a domain with its subdomains
    (``.example.com``), an IP address (always allowed anyway) and ``*``.
    """
    text = name.strip()
    if text == "*" or _HOST_NAME.fullmatch(text):
        return
    try:
        ipaddress.ip_address(text[1:-1] if text.startswith("[") else text)
        return
    except ValueError:
        pass
    hint = ""
    if ":" in text or "/" in text:
        hint = ": give the name alone, without a scheme, port or path"
    raise ValueError(f"allowed_hosts: {name!r} is not a host name{hint}")


#: What each kind of field takes, by its annotation.
_KINDS: dict[str, tuple[str, Callable[[object], bool]]] = {
    "int": ("an integer", lambda v: isinstance(v, (int, float))),
    "float": ("a number", lambda v: isinstance(v, (int, float))),
    "bool": ("True or False", lambda v: isinstance(v, bool)),
    "str": ("a string", lambda v: isinstance(v, str)),
    "str | None": ("a string or None", lambda v: v is None or isinstance(v, str)),
    "tuple[str, ...]": (
        "a tuple of strings",
        lambda v: isinstance(v, (tuple, list)) and all(isinstance(x, str) for x in v),
    ),
}


def _check_types(options: Options) -> None:
    """Refuse a value of the wrong kind before any rule compares it.

    A list is taken for a tuple of strings (and stored as a tuple); a lone
    string is refused there, since ``"*"`` in ``"https://*.example"`` would
    be a substring test.
    """
    for field in dataclasses.fields(options):
        value = getattr(options, field.name)
        kind = _KINDS.get(str(field.type))
        if kind is None:
            continue
        what, fits = kind
        if isinstance(value, bool) and field.type in ("int", "float"):
            fits = _never
        if not fits(value):
            raise ValueError(f"{field.name} must be {what}, got {value!r}")
        if isinstance(value, list):
            object.__setattr__(options, field.name, tuple(value))


def _check_whole_numbers(options: Options) -> None:
    """Integer fields take no fractions (after the range checks, so that
    ``-0.5`` is reported as out of range)."""
    for field in dataclasses.fields(options):
        value = getattr(options, field.name)
        if field.type == "int" and isinstance(value, float):
            if not (math.isfinite(value) and value.is_integer()):
                raise ValueError(f"{field.name} must be a whole number, got {value}")
            object.__setattr__(options, field.name, int(value))


def _never(value: object) -> bool:
    return False


def check_redis_url(url: str) -> None:
    """Refuse a Redis URL that cannot work, saying why (the password never).

    Accepted: ``redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]`` and the same
    with ``rediss://`` (TLS); a query string is passed on to the client.
    """
    shown = redact_url(url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"redis URL {shown} is not usable: {exc}") from None
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError(
            f"redis URL {shown} must start with redis:// or rediss:// (TLS)"
        )
    if not parts.hostname:
        raise ValueError(
            f"redis URL {shown} has no host; e.g. redis://127.0.0.1:6379/0"
        )
    if port == 0:
        raise ValueError(f"redis URL {shown} has port 0")
    db = parts.path.lstrip("/")
    if db and not (db.isdigit() and db.isascii()):
        raise ValueError(
            f"redis URL {shown}: the path must be a database number, got /{db}"
        )


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***``: the form logs show."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "<not a URL>" if "@" in url else url
    netloc, slash, path = rest.partition("/")
    credentials, at, host = netloc.rpartition("@")
    if at:  # A credential without a colon may still be a password: hide it.
        user, colon, _ = credentials.partition(":")
        netloc = f"{user}:***@{host}" if colon else f"***@{host}"
    return f"{scheme}://{netloc}{slash}{path}"
