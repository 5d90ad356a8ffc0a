"""Unit tests for the message rate limiter (no I/O)."""

from __future__ import annotations

import pytest

from wspractice.ratelimit import RateLimiter


def test_a_burst_passes_then_messages_are_dropped() -> None:
    limiter = RateLimiter(rate=10, burst=5, now=0.0)
    assert [limiter.allow(0.0) for _ in range(7)] == [True] * 5 + [False] * 2
    assert limiter.dropped == 2


def test_tokens_come_back_at_the_rate() -> None:
    limiter = RateLimiter(rate=10, burst=5, now=0.0)
    for _ in range(5):
        limiter.allow(0.0)
    assert not limiter.allow(0.05)
    assert limiter.allow(0.1)
    assert not limiter.allow(0.1)


def test_a_client_at_the_rate_is_never_dropped() -> None:
    limiter = RateLimiter(rate=60, burst=120, now=0.0)
    assert all(limiter.allow(i / 60) for i in range(60 * 30))


def test_steady_excess_becomes_persistent() -> None:
    limiter = RateLimiter(rate=60, burst=120, now=0.0)
    t = 0.0
    while not limiter.persistent:
        limiter.allow(t)
        t += 1 / 100  # 100 messages a second against a limit of 60
        assert t < 10
    # The burst (2 s worth) went through, then 40 a second were dropped.
    assert 4.0 < t < 6.0


def test_a_pause_that_refills_the_bucket_forgives_the_past() -> None:
    limiter = RateLimiter(rate=10, burst=5, now=0.0)
    for _ in range(9):
        limiter.allow(0.0)
    assert limiter.dropped == 4
    assert limiter.allow(1.0)  # 1 s refills 5 tokens: the bucket was full.
    assert limiter.dropped == 0 and not limiter.persistent


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        RateLimiter(rate=0, burst=5, now=0.0)
