"""Options: every rule of ``Options.__post_init__``, and what it derives.

Each rule is checked on both sides of its bound: the value just past it is
refused with a ValueError that names the field and the rule, and the bound
itself is accepted. How the command line reports these errors is in
test_cli.py.
"""

from __future__ import annotations

import dataclasses
import math

import pytest

from wspractice.config import ABLATABLE, DEFAULT_MAX_MESSAGE_SIZE, Options

POSITIVE = (
    "max_message_size",
    "max_state_size",
    "max_connections",
    "max_header_size",
    "rate_burst",
)
ZERO_OR_MORE = (
    "broadcast_interval",
    "broadcast_bandwidth",
    "send_timeout",
    "ping_interval",
    "close_timeout",
    "max_bad_messages",
    "max_connections_per_address",
    "rate_limit",
)
MORE_THAN_ZERO = ("ping_timeout", "handshake_timeout")


def refused(**changes: object) -> str:
    """The message of the ValueError that Options(**changes) raises."""
    with pytest.raises(ValueError) as info:
        Options(**changes)  # type: ignore[arg-type]
    return str(info.value)


def test_the_defaults_are_valid() -> None:
    options = Options()
    assert options.max_message_size == DEFAULT_MAX_MESSAGE_SIZE
    assert (options.host, options.port) == ("127.0.0.1", 8000)


@pytest.mark.parametrize("name", POSITIVE)
@pytest.mark.parametrize("value", [0, -1])
def test_counts_and_sizes_must_be_positive(name: str, value: int) -> None:
    assert refused(**{name: value}) == f"{name} must be positive, got {value}"


@pytest.mark.parametrize("name", POSITIVE)
def test_one_is_enough_for_a_count_or_size(name: str) -> None:
    assert getattr(Options(**{name: 1}), name) == 1  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ZERO_OR_MORE)
@pytest.mark.parametrize("value", [-1, -0.001, math.nan])
def test_intervals_rates_and_timeouts_must_be_zero_or_more(
    name: str, value: float
) -> None:
    assert refused(**{name: value}) == f"{name} must be 0 or more, got {value}"


@pytest.mark.parametrize("name", ZERO_OR_MORE)
def test_zero_is_allowed_where_it_turns_a_mechanism_off(name: str) -> None:
    assert getattr(Options(**{name: 0}), name) == 0  # type: ignore[arg-type]


@pytest.mark.parametrize("name", MORE_THAN_ZERO)
@pytest.mark.parametrize("value", [0, -1, math.nan])
def test_ping_and_handshake_timeouts_must_be_more_than_zero(
    name: str, value: float
) -> None:
    assert refused(**{name: value}) == f"{name} must be more than 0, got {value}"


@pytest.mark.parametrize("name", MORE_THAN_ZERO)
def test_a_small_ping_or_handshake_timeout_is_allowed(name: str) -> None:
    assert getattr(Options(**{name: 0.01}), name) == 0.01  # type: ignore[arg-type]


@pytest.mark.parametrize("port", [-1, 65536])
def test_the_port_must_be_a_tcp_port(port: int) -> None:
    assert refused(port=port) == f"port must be between 0 and 65535, got {port}"


@pytest.mark.parametrize("port", [0, 65535])
def test_port_0_and_65535_are_allowed(port: int) -> None:
    assert Options(port=port).port == port


def test_the_broadcast_interval_is_in_milliseconds_and_at_most_a_minute() -> None:
    assert Options(broadcast_interval=60_000).broadcast_interval == 60_000
    assert refused(broadcast_interval=60_001) == (
        "broadcast_interval is in milliseconds and must be at most 60000," " got 60001"
    )


def test_a_key_needs_a_certificate() -> None:
    assert refused(keyfile="key.pem") == (
        "keyfile needs certfile: a key alone cannot serve TLS"
    )
    # A certificate file may hold the key too: certfile alone is allowed.
    assert Options(certfile="both.pem").keyfile is None


def test_only_known_mechanisms_can_be_ablated() -> None:
    assert Options(ablate=ABLATABLE).ablate == ("gate", "pacing", "coarse-timers")
    assert refused(ablate=("gate", "turbo", "magic")) == (
        "ablate: unknown mechanism(s) magic, turbo; known: gate, pacing, coarse-timers"
    )


def test_replace_applies_the_same_rules() -> None:
    options = Options().replace(max_message_size=100, port=0)
    assert (options.max_message_size, options.port) == (100, 0)
    with pytest.raises(ValueError, match="max_message_size must be positive"):
        options.replace(max_message_size=0)


def test_options_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Options().port = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("max_message_size", "fragments"),
    [(1, 64), (1024, 64), (1040, 65), (DEFAULT_MAX_MESSAGE_SIZE, 2048)],
)
def test_max_fragments_is_one_per_16_bytes_and_at_least_64(
    max_message_size: int, fragments: int
) -> None:
    options = Options(max_message_size=max_message_size)
    assert options.max_fragments == fragments
