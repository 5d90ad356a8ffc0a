"""The opening handshake's rules (RFC 6455 section 4.2) and the app's own.

:func:`check_upgrade` takes a request that :mod:`http.server` has already
parsed and either returns a :class:`Request` (what the server is about to
accept) or raises :class:`~wspractice.errors.HandshakeError` with the status
and a reason a person can act on. :func:`parse_username` is the presence
app's own rule for its query string. :func:`accept` then lets wsproto compute
``Sec-WebSocket-Accept`` and negotiate permessage-deflate. :class:`HostRule`
and :func:`check_host` say which names in ``Host`` the server answers to, for
upgrades and for the demo page alike (a guard against DNS rebinding).

Rule: this module decides; it does no I/O and imports neither ``socket``,
``threading`` nor ``http.server``. The WebSocket server calls it.
"""

from __future__ import annotations

import base64
import ipaddress
import re
import unicodedata
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus

from wsproto.extensions import Extension, PerMessageDeflate
from wsproto.handshake import server_extensions_handshake
from wsproto.utilities import generate_accept_token

from .config import MAX_USERNAME_LENGTH
from .errors import HandshakeError

#: The only protocol version RFC 6455 defines.
WEBSOCKET_VERSION = "13"

_HEADER_VERSION = (("Sec-WebSocket-Version", WEBSOCKET_VERSION),)


@dataclass(frozen=True)
class Request:
    """A WebSocket upgrade request that passed RFC 6455's rules.

    The Node tutorial's ``request``, as ``wsServer.on("connection")`` gets it.
    """

    #: The request path, without the query string (``/`` or ``/echo``).
    path: str
    #: The query string, still percent-encoded (``username=Alex``).
    query: str
    #: The client's ``Sec-WebSocket-Key``, as sent.
    key: str
    #: The request headers, in order.
    headers: tuple[tuple[str, str], ...] = ()
    #: The client's ``Sec-WebSocket-Extensions`` offers, one string each.
    extension_offers: tuple[str, ...] = field(default=())
    #: The client's address, as logs show it (``127.0.0.1:50312``).
    peer: str = ""
    #: The subprotocols the client offers (``Sec-WebSocket-Protocol``), in
    #: its order of preference.
    subprotocols: tuple[str, ...] = field(default=())


def header_values(headers: Iterable[tuple[str, str]], name: str) -> list[str]:
    """Every value of header ``name`` (ASCII case-insensitive), in order."""
    name = name.lower()
    return [value for key, value in headers if key.lower() == name]


def _tokens(values: Iterable[str]) -> list[str]:
    """The comma-separated tokens of a list-valued header, lower-cased."""
    return [token.strip().lower() for value in values for token in value.split(",")]


def is_websocket_request(headers: Sequence[tuple[str, str]]) -> bool:
    """Whether the client is trying to open a WebSocket.

    A request that names ``websocket`` in ``Upgrade``, or carries any
    ``Sec-WebSocket-*`` header, is held to the handshake rules; any other
    request is plain HTTP (an ``Upgrade`` to another protocol, such as
    ``h2c``, is ignored as RFC 9110 section 7.8 allows).
    """
    if "websocket" in _tokens(header_values(headers, "Upgrade")):
        return True
    return any(key.lower().startswith("sec-websocket-") for key, _ in headers)


def check_upgrade(
    request_version: str,
    target: str,
    headers: Sequence[tuple[str, str]],
    allowed_origins: Sequence[str] = (),
    peer: str = "",
    *,
    host_rule: HostRule | None = None,
) -> Request:
    """Apply RFC 6455's rules, the Host rule and the Origin policy.

    ``request_version`` is the request line's version (``"HTTP/1.1"``),
    ``target`` its request target as http.server decoded it (latin-1), and
    ``headers`` the request headers in order. The caller has already
    checked that the method is GET. The endpoint's own rules (the presence
    app's ``username``) come after, in its ``check_request``. ``host_rule`` is
    the server's :class:`HostRule`; None accepts every ``Host`` (as the rules
    alone are tested).
    """
    if request_version != "HTTP/1.1":
        raise HandshakeError(
            HTTPStatus.BAD_REQUEST,
            f"a WebSocket handshake needs HTTP/1.1, not {request_version}",
        )
    if "websocket" not in _tokens(header_values(headers, "Upgrade")):
        raise HandshakeError(
            HTTPStatus.BAD_REQUEST,
            "the Upgrade header must be 'websocket'",
        )
    if "upgrade" not in _tokens(header_values(headers, "Connection")):
        raise HandshakeError(
            HTTPStatus.BAD_REQUEST,
            "the Connection header must include 'Upgrade'",
        )
    versions = header_values(headers, "Sec-WebSocket-Version")
    if not versions:
        raise HandshakeError(
            HTTPStatus.BAD_REQUEST,
            "the Sec-WebSocket-Version header is missing; this server speaks 13",
            _HEADER_VERSION,
        )
    if [v.strip() for v in versions] != [WEBSOCKET_VERSION]:
        raise HandshakeError(
            HTTPStatus.UPGRADE_REQUIRED,
            f"unsupported Sec-WebSocket-Version {', '.join(versions)!r};"
            f" this server speaks {WEBSOCKET_VERSION}",
            _HEADER_VERSION,
        )
    key = _check_key(header_values(headers, "Sec-WebSocket-Key"))
    hosts = header_values(headers, "Host")
    if len(hosts) != 1 or not hosts[0].strip():
        raise HandshakeError(
            HTTPStatus.BAD_REQUEST, "exactly one non-empty Host header is required"
        )
    if host_rule is not None:
        check_host(hosts[0], host_rule)
    origins = header_values(headers, "Origin")
    if len(origins) > 1:
        raise HandshakeError(HTTPStatus.BAD_REQUEST, "more than one Origin header")
    if origins:
        check_origin(origins[0], hosts[0], allowed_origins)

    path, query = _split_target(target)
    offers = tuple(
        offer.strip()
        for value in header_values(headers, "Sec-WebSocket-Extensions")
        for offer in value.split(",")
        if offer.strip()
    )
    subprotocols = tuple(
        token.strip()
        for value in header_values(headers, "Sec-WebSocket-Protocol")
        for token in value.split(",")
        if token.strip()
    )
    return Request(path, query, key, tuple(headers), offers, peer, subprotocols)


def _check_key(keys: list[str]) -> str:
    if not keys:
        raise HandshakeError(
            HTTPStatus.BAD_REQUEST, "the Sec-WebSocket-Key header is missing"
        )
    if len(keys) > 1:
        raise HandshakeError(
            HTTPStatus.BAD_REQUEST, "more than one Sec-WebSocket-Key header"
        )
    key = keys[0].strip()
    try:
        raw = base64.b64decode(key, validate=True)
    except ValueError:  # binascii.Error, or a key that is not ASCII
        raw = b""
    if len(raw) != 16:
        raise HandshakeError(
            HTTPStatus.BAD_REQUEST,
            "Sec-WebSocket-Key must be 16 random bytes in base64 (24 characters)",
        )
    return key


def _split_target(target: str) -> tuple[str, str]:
    """The path and the query of a request target, as Unicode text.

    http.server decodes the request line as latin-1; clients that send raw
    UTF-8 rather than percent-escapes get their text back here.
    """
    try:
        text = target.encode("latin-1").decode("utf-8")
    except UnicodeError:
        raise HandshakeError(
            HTTPStatus.BAD_REQUEST, "the request target is not valid UTF-8"
        ) from None
    try:
        parts = urllib.parse.urlsplit(text)
    except ValueError as exc:  # e.g. http://[::1/ (an unclosed IPv6 address)
        raise HandshakeError(
            HTTPStatus.BAD_REQUEST, f"the request target is not a valid URL: {exc}"
        ) from None
    return parts.path or "/", parts.query


def parse_username(query: str) -> str:
    """``username`` from a query string, under the presence app's rules.

    Like the tutorial's ``url.parse(request.url, true).query``, but a missing,
    empty, repeated or invalid username is an error that says which rule it
    broke.
    """
    try:
        params = urllib.parse.parse_qs(
            query, keep_blank_values=True, errors="strict", max_num_fields=100
        )
    except UnicodeDecodeError:
        raise HandshakeError(
            HTTPStatus.BAD_REQUEST,
            "the query string has percent-escapes that are not valid UTF-8",
        ) from None
    except ValueError:
        raise HandshakeError(
            HTTPStatus.BAD_REQUEST, "the query string has too many parameters"
        ) from None
    names = params.get("username")
    if names is None:
        raise HandshakeError(
            HTTPStatus.BAD_REQUEST,
            "username is required: add ?username=NAME to the URL",
        )
    if len(names) > 1:
        raise HandshakeError(HTTPStatus.BAD_REQUEST, "username must be given only once")
    return check_username(names[0])


def check_username(name: str) -> str:
    """Return ``name`` if it is a valid username, else raise HandshakeError."""
    if not name:
        raise HandshakeError(HTTPStatus.BAD_REQUEST, "username must not be empty")
    if len(name) > MAX_USERNAME_LENGTH:
        raise HandshakeError(
            HTTPStatus.BAD_REQUEST,
            f"username must be at most {MAX_USERNAME_LENGTH} characters,"
            f" got {len(name)}",
        )
    for char in name:
        if unicodedata.category(char) == "Cc":
            raise HandshakeError(
                HTTPStatus.BAD_REQUEST,
                f"username must not contain control characters"
                f" (found U+{ord(char):04X})",
            )
    return name


# ---------------------------------------------------------------- Origin


def _origin_host_port(origin: str) -> tuple[str, str, int] | None:
    """``(scheme, host, port)`` of a serialized origin, or None if malformed."""
    try:
        parts = urllib.parse.urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https", "ws", "wss") or not parts.hostname:
        return None
    if port is None:
        port = 443 if parts.scheme in ("https", "wss") else 80
    return parts.scheme, parts.hostname.lower(), port


def _host_port(host: str, default_port: int) -> tuple[str, int] | None:
    """``(host, port)`` of a Host header value, or None if malformed."""
    try:
        parts = urllib.parse.urlsplit("//" + host.strip())
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname:
        return None
    return parts.hostname.lower(), default_port if port is None else port


def is_loopback_host(host: str) -> bool:
    """``localhost``, ``*.localhost``, 127.0.0.0/8 or ::1."""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_origin(origin: str, host: str, allowed_origins: Sequence[str]) -> None:
    """Refuse a cross-site Origin (403) unless ``allowed_origins`` names it.

    Allowed without configuration: the same origin (its host and port equal
    the Host header's) and loopback origins on any port, where the tutorial's
    React client runs on a development server. ``"*"`` allows every origin.
    """
    if "*" in allowed_origins:
        return
    normalized = origin.strip().rstrip("/").lower()
    if normalized in (o.rstrip("/").lower() for o in allowed_origins):
        return
    parsed = _origin_host_port(origin)
    if parsed is not None:
        scheme, origin_host, origin_port = parsed
        if is_loopback_host(origin_host):
            return
        default_port = 443 if scheme in ("https", "wss") else 80
        if _host_port(host, default_port) == (origin_host, origin_port):
            return
    raise HandshakeError(
        HTTPStatus.FORBIDDEN,
        f"Origin {origin!r} is not allowed: it is neither this server's origin"
        " nor loopback; start the server with --allowed-origin to allow it",
    )


# ---------------------------------------------------------------- Host

#: A name in ``Host`` (RFC 3986's reg-name as DNS names use it; ``_`` too,
#: which container and local network names carry), or a dotted IPv4 address.
_HOST_NAME = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*\.?")

#: At most five digits: ``:65535``.
_PORT = re.compile(r"[0-9]{0,5}")


def parse_host(value: str) -> tuple[str, int | None]:
    """The name and the port of a ``Host`` header value (``host[:port]``).

    The name comes back in one canonical form: lower-case, without the
    trailing dot of a fully qualified name (``LocalHost.`` is ``localhost``),
    and an IPv6 address without its brackets and compressed (``[0::1]`` is
    ``::1``). The port is None when there is none (``host`` or ``host:``).
    Anything else, such as an IPv6 address without brackets, a user name
    (``user@host``) or a port over 65535, is a 400.
    """
    text = value.strip()
    if text.startswith("["):
        end = text.find("]")
        literal, rest = text[1:end], text[end + 1 :]
        try:
            if end < 0:
                raise ValueError("no closing bracket")
            name = str(ipaddress.IPv6Address(literal))
        except ValueError:
            raise _bad_host(value) from None
    else:
        name, colon, port = text.partition(":")
        rest = colon + port
        if not _HOST_NAME.fullmatch(name):
            raise _bad_host(value)
        name = name.lower().removesuffix(".")
    if not rest or rest == ":":
        return name, None
    if rest[0] != ":" or not _PORT.fullmatch(rest[1:]) or int(rest[1:]) > 65535:
        raise _bad_host(value)
    return name, int(rest[1:])


def _bad_host(value: str) -> HandshakeError:
    return HandshakeError(
        HTTPStatus.BAD_REQUEST,
        f"the Host header {value!r} is not a host name or address with an"
        " optional port",
    )


def is_ip_address(name: str) -> bool:
    """Whether ``name`` (as :func:`parse_host` returns it) is an IP address."""
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _canonical_name(name: str) -> str:
    """A name or address as :func:`parse_host` would return it."""
    name = name.strip().lower()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        return name.removesuffix(".")


@dataclass(frozen=True)
class HostRule:
    """The names in ``Host`` that the server answers to.

    A web page on a name whose DNS record the page's author controls can make
    that name resolve to 127.0.0.1 after the page has loaded (DNS rebinding);
    the browser then treats the server as the page's own origin, and the
    Origin check alone cannot tell. The name is still in ``Host``, so a
    server that answers only to names it knows is safe from it.

    Always allowed, whatever the server listens on: every IP address (a page
    served from an address cannot rebind it), ``localhost`` and
    ``*.localhost`` (RFC 6761: they never leave the machine). Then ``names``
    exactly, and ``domains`` with their subdomains; everything when
    ``any_name``. Build one with :func:`host_rule`.
    """

    names: frozenset[str] = frozenset()
    domains: tuple[str, ...] = ()
    any_name: bool = False

    def allows(self, name: str) -> bool:
        """Whether the server answers to ``name`` (as :func:`parse_host` gives it)."""
        if self.any_name or name in self.names:
            return True
        if name == "localhost" or name.endswith(".localhost") or is_ip_address(name):
            return True
        return any(name == d or name.endswith("." + d) for d in self.domains)


def host_rule(
    listen_host: str,
    allowed_hosts: Iterable[str] = (),
    machine_names: Iterable[str] = (),
) -> HostRule:
    """The :class:`HostRule` of a server listening on ``listen_host``.

    Besides what every rule allows: ``listen_host`` itself when it is a
    name; ``machine_names`` (the machine's own host name, which the server
    looks up) when the server listens beyond loopback, on a specific address
    or on every interface (``0.0.0.0``, ``::`` or ``""``), since other
    devices of a local network reach it by that name; and ``allowed_hosts``
    (``--allowed-host``): a name, ``.example.com`` for that domain and its
    subdomains, or ``*`` for any name.
    """
    names: set[str] = set()
    domains: list[str] = []
    listen = _canonical_name(listen_host)
    if listen in ("", "0.0.0.0", "::"):
        loopback_only = False
    elif is_ip_address(listen):
        loopback_only = ipaddress.ip_address(listen).is_loopback
    else:
        names.add(listen)
        loopback_only = listen == "localhost" or listen.endswith(".localhost")
    if not loopback_only:
        names.update(_canonical_name(name) for name in machine_names if name)
    for allowed in allowed_hosts:
        if allowed.strip() == "*":
            return HostRule(frozenset(names), tuple(domains), any_name=True)
        if allowed.strip().startswith("."):
            domains.append(_canonical_name(allowed.strip()[1:]))
        else:
            names.add(_canonical_name(allowed))
    return HostRule(frozenset(names), tuple(domains))


def check_host(value: str, rule: HostRule) -> None:
    """Refuse a ``Host`` header that the server does not answer to.

    A malformed value is a 400 (:func:`parse_host`); a name that ``rule``
    does not allow is a 403 whose reason says how to allow it. The reason
    names no allowed name: whoever sent the request learns nothing of the
    server's configuration.
    """
    name, _ = parse_host(value)
    if not rule.allows(name):
        shown = f"[{name}]" if ":" in name else name
        raise HandshakeError(
            HTTPStatus.FORBIDDEN,
            f"Host {value.strip()!r} is not a name of this server; if it is,"
            f" start the server with --allowed-host {shown} (other names are"
            " refused to guard against DNS rebinding)",
        )


def check_host_header(headers: Sequence[tuple[str, str]], rule: HostRule) -> None:
    """:func:`check_host` for a plain HTTP request, whose ``Host`` may be
    missing (HTTP/1.0; a browser always sends one); two are a 400."""
    hosts = header_values(headers, "Host")
    if len(hosts) > 1:
        raise HandshakeError(HTTPStatus.BAD_REQUEST, "more than one Host header")
    if hosts:
        check_host(hosts[0], rule)


# ---------------------------------------------------------------- accept


def accept(
    request: Request, compression: bool, subprotocol: str | None = None
) -> tuple[list[tuple[str, str]], list[Extension]]:
    """The 101 response's headers and the extensions now in force.

    wsproto computes ``Sec-WebSocket-Accept`` (SHA-1 of the key and the RFC's
    GUID, in base64) and negotiates permessage-deflate, which is offered
    only when the client asked for it and ``compression`` is on.
    ``subprotocol`` is the one the endpoint selected among the client's
    offers (RFC 6455 section 4.2.2); it must be one of them.
    """
    if subprotocol is not None and subprotocol not in request.subprotocols:
        raise ValueError(f"subprotocol {subprotocol!r} was not offered")
    headers = [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        (
            "Sec-WebSocket-Accept",
            generate_accept_token(request.key.encode("ascii")).decode("ascii"),
        ),
    ]
    extensions: list[Extension] = []
    if compression:
        deflate = _accept_deflate(request.extension_offers)
        if deflate is not None:
            extension, response = deflate
            headers.append(("Sec-WebSocket-Extensions", response))
            extensions.append(extension)
    if subprotocol is not None:
        headers.append(("Sec-WebSocket-Protocol", subprotocol))
    return headers, extensions


def _accept_deflate(offers: Sequence[str]) -> tuple[Extension, str] | None:
    """The first permessage-deflate offer wsproto can accept, and the answer.

    An offer with an invalid parameter is declined, as RFC 7692 section 5
    asks, and the next one is tried; without any, the connection goes on
    without compression.
    """
    for offer in offers:
        if offer.split(";", 1)[0].strip().lower() != PerMessageDeflate.name:
            continue
        deflate = PerMessageDeflate()
        try:
            response = server_extensions_handshake([offer], [deflate])
        except ValueError:  # e.g. client_max_window_bits=abc or =20
            continue
        if response is not None:
            return deflate, response.decode("ascii")
    return None
