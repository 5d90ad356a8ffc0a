"""How fast one client may send: a token bucket with a memory for abuse.

A client may send ``rate`` messages a second on average and ``burst`` at
once. A message over the limit is dropped. A client whose messages keep
being dropped (as many as its burst, without its bucket ever filling up
again in between) is persistently over the limit and gets closed.

This module does no I/O; callers pass the time in.
"""

from __future__ import annotations


class RateLimiter:
    """One client's message budget."""

    def __init__(self, rate: float, burst: int, now: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.updated = now
        #: Messages dropped since the bucket was last full.
        self.dropped = 0

    def allow(self, now: float) -> bool:
        """Take a token for one message; False if the message must be dropped."""
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= self.burst:
            self.dropped = 0  # Back under the limit for a whole burst.
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        self.dropped += 1
        return False

    @property
    def persistent(self) -> bool:
        """Whether the client has been over the limit for too long."""
        return self.dropped >= self.burst
