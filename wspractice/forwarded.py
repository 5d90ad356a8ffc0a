"""The client's address behind a reverse proxy: ``X-Forwarded-For``, ``Forwarded``.

A proxy connects to wspractice itself, so the socket's peer is the proxy.
The proxy says whom it serves in a header, which it appends to: each proxy on
the way adds the address of whoever connected to it, so the header lists the
hops from the client (first) to the last proxy before wspractice (last).

Anyone can send such a header, so it is believed only from the proxies that
the operator names (``--forwarded-allow-ips``, the convention of uvicorn's and
gunicorn's option of the same name), and only as far back as it was written
by them: :func:`client_address` walks the hops from the last one, skipping
trusted proxies, and the first address that is not one of them is the client.
A client that writes its own header only adds hops *before* the one its proxy
appended, and never gets past it.

Only one header is read, the one the proxy maintains (``--forwarded-header``):
were both read, a client could send the one its proxy does not touch and
choose its own address.

Rule: this module decides; it does no I/O.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

#: The headers that ``--forwarded-header`` may name.
FORWARDED_HEADERS = ("x-forwarded-for", "forwarded")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_address(text: str) -> Address | None:
    """An IP address from a hop: ``1.2.3.4``, ``1.2.3.4:5678``, ``::1``,
    ``[::1]`` or ``[::1]:5678``; None for anything else (``unknown``, an
    obfuscated ``_hidden`` identifier, a name). IPv4-mapped IPv6 addresses
    come back as IPv4, so that one client has one address."""
    text = text.strip()
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or not (text[end + 1 :] == "" or text[end + 1 :][:1] == ":"):
            return None
        text = text[1:end]
    elif text.count(":") == 1:  # IPv4 with a port; bare IPv6 has more colons.
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


@dataclass(frozen=True)
class TrustedProxies:
    """The proxies whose forwarding headers are believed."""

    networks: tuple[Network, ...] = ()
    #: ``*``: every peer is a trusted proxy.
    everyone: bool = False

    @classmethod
    def parse(cls, entries: Iterable[str]) -> TrustedProxies:
        """From ``--forwarded-allow-ips`` entries: addresses, networks
        (``10.0.0.0/8``) or ``*``; ValueError for anything else."""
        networks = []
        for entry in entries:
            entry = entry.strip()
            if entry == "*":
                return cls((), everyone=True)
            networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
        return cls(tuple(networks))

    def __bool__(self) -> bool:
        return self.everyone or bool(self.networks)

    def trusts(self, address: Address | None) -> bool:
        if self.everyone:
            return True
        if address is None:
            return False
        return any(address in network for network in self.networks)


def forwarded_for(values: Sequence[str]) -> list[str]:
    """The ``for=`` value of every element of ``Forwarded`` headers (RFC
    7239), in order; an element without one counts as ``unknown``.

    Values may be quoted (``for="[2001:db8::17]:4711"``), with backslash
    escapes; commas and semicolons inside quotes are part of the value.
    """
    hops = []
    for element in _split_outside_quotes(",".join(values), ","):
        found = "unknown"
        for pair in _split_outside_quotes(element, ";"):
            key, equals, value = pair.partition("=")
            if equals and key.strip().lower() == "for":
                found = _unquote(value.strip())
        if element.strip():
            hops.append(found)
    return hops


def x_forwarded_for(values: Sequence[str]) -> list[str]:
    """The hops of ``X-Forwarded-For`` headers, in order (several headers
    are one list, as RFC 9110 section 5.3 combines them)."""
    return [hop.strip() for value in values for hop in value.split(",")]


def client_address(
    peer: str,
    headers: Sequence[tuple[str, str]],
    trusted: TrustedProxies,
    header: str = "x-forwarded-for",
) -> str | None:
    """The client's address as the trusted proxies report it, or None.

    None means the socket's ``peer`` address is the client: the peer is not
    a trusted proxy, or it sent no usable ``header`` (``x-forwarded-for`` or
    ``forwarded``). Walking the hops from the last, trusted proxies are
    skipped; the first other hop is the client, and if it is not an IP
    address (``unknown``) the answer is None too. If every hop is a trusted
    proxy, the first one is the client.
    """
    if not trusted or not trusted.trusts(parse_address(peer)):
        return None
    name = header.lower()
    values = [value for key, value in headers if key.lower() == name]
    if not values:
        return None
    hops = forwarded_for(values) if name == "forwarded" else x_forwarded_for(values)
    if not hops:
        return None
    for hop in reversed(hops):
        address = parse_address(hop)
        if address is None:
            return None
        if not trusted.trusts(address):
            return str(address)
    first = parse_address(hops[0])
    return None if first is None else str(first)


def _split_outside_quotes(text: str, separator: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == separator and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        out, escaped = [], False
        for char in value[1:-1]:
            if escaped or char != "\\":
                out.append(char)
                escaped = False
            else:
                escaped = True
        return "".join(out)
    return value
