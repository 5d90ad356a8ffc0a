"""The presence app's wire format: what a client sends and what it gets back.

A client sends its whole state as one JSON object in a text message, e.g.
``{"x": 412, "y": 230}``. :func:`parse_state` checks it and returns the state
re-encoded as compact JSON, the form it takes inside every snapshot. A message
that is not a JSON object raises :class:`~wspractice.errors.MessageError`,
whose reason goes back to the sender alone via :func:`error_reply`.

:class:`MessageRules` holds one client's record (its message rate, its bad
messages in a row) and turns each message into a decision: :class:`Update`,
:class:`Reply`, :class:`Drop` or :class:`Close`. The app carries it out.

This module does no I/O; the time is passed in.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import NoReturn, Union

from wsproto.frame_protocol import CloseReason

from .config import Options
from .errors import MessageError
from .ratelimit import RateLimiter


def _reject_constant(name: str) -> NoReturn:
    raise MessageError(f"message is not valid JSON: {name} is not a JSON value")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise MessageError(
            f"message is not usable: the number {text[:20]} is too large"
        )
    return value


_decoder = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)
_compact = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
_compact_ascii = json.JSONEncoder(separators=(",", ":"))


def encode(value: object) -> str:
    """``value`` as compact JSON text that is always valid UTF-8.

    Like ``JSON.stringify``: non-ASCII characters are written as they are,
    except lone surrogates (``"\\ud800"`` in a client's JSON), which cannot be
    written as UTF-8 and keep their ``\\u`` escapes.
    """
    text = _compact.encode(value)
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return _compact_ascii.encode(value)
    return text


def parse_state(text: str) -> str:
    """The state a text message carries, as compact JSON text.

    Raises MessageError, saying what is wrong, unless the message is a JSON
    object. A message that is already compact (no whitespace at all, as
    ``JSON.stringify`` writes it) is kept as it is, which is valid JSON once
    it has parsed; any other is written out again compactly.
    """
    try:
        state = _decoder.decode(text)
        if not isinstance(state, dict):
            raise MessageError(
                'message must be a JSON object such as {"x": 1, "y": 2},'
                f" not {_json_type(state)}"
            )
        if _has_whitespace(text):
            return encode(state)
        return text
    except json.JSONDecodeError as exc:
        raise MessageError(f"message is not valid JSON: {exc}") from None
    except RecursionError:
        raise MessageError("message is not usable: JSON nested too deeply") from None
    except ValueError as exc:  # e.g. an integer with too many digits
        raise MessageError(f"message is not usable: {exc}") from None


def _has_whitespace(text: str) -> bool:
    # JSON's whitespace: space, tab, newline, carriage return (RFC 8259).
    return " " in text or "\n" in text or "\t" in text or "\r" in text


def _json_type(value: object) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return "null"


def error_reply(reason: str) -> str:
    """The message that tells one client what was wrong with its message."""
    return encode({"error": reason})


# ---------------------------------------------------------------- decisions


@dataclass(frozen=True)
class Update:
    """The message carries the sender's new state (compact JSON text)."""

    state: str


@dataclass(frozen=True)
class Reply:
    """Tell the sender alone what was wrong; its state stays as it was."""

    text: str
    #: For the log: what was wrong.
    reason: str


@dataclass(frozen=True)
class Drop:
    """Ignore the message (the sender is over its rate and has been told)."""


@dataclass(frozen=True)
class Close:
    """End the sender's connection with ``code``."""

    code: int
    reason: str


Decision = Union[Update, Reply, Drop, Close]


class MessageRules:
    """One client's record, and what each of its messages gets.

    Where the tutorial's ``JSON.parse`` would crash the whole server, a bad
    message gets an error reply to its sender alone; a client that keeps
    sending bad messages (``max_bad_messages`` in a row), or that sends
    faster than ``rate_limit`` for too long, is closed with 1008.
    """

    __slots__ = (
        "rate_limit",
        "max_bad_messages",
        "max_state_size",
        "bad_messages",
        "_limiter",
    )

    def __init__(self, options: Options, now: float) -> None:
        self.rate_limit = options.rate_limit
        self.max_bad_messages = options.max_bad_messages
        self.max_state_size = options.max_state_size
        #: Bad messages in a row.
        self.bad_messages = 0
        self._limiter = (
            RateLimiter(options.rate_limit, options.rate_burst, now)
            if options.rate_limit > 0
            else None
        )

    def check(self, message: str | bytes, now: float) -> Decision:
        """What to do with ``message``, received at ``now``."""
        if isinstance(message, bytes):
            return Close(
                CloseReason.UNSUPPORTED_DATA,
                "binary messages are not supported; send JSON text",
            )
        limiter = self._limiter
        if limiter is not None and not limiter.allow(now):
            if limiter.persistent:
                return Close(
                    CloseReason.POLICY_VIOLATION,
                    f"message rate above {self.rate_limit:g} a second for too long",
                )
            if limiter.dropped == 1:
                reason = (
                    f"too many messages: at most {self.rate_limit:g} a second"
                    f" (bursts of {limiter.burst}); messages are dropped"
                    " until you slow down"
                )
                return Reply(error_reply(reason), reason)
            return Drop()
        try:
            state = parse_state(message)
            size = len(state) if state.isascii() else len(state.encode())
            if size > self.max_state_size:
                raise MessageError(
                    f"state is {size} bytes of JSON; at most {self.max_state_size}"
                    " are allowed (--max-state-size); your state is unchanged"
                )
        except MessageError as exc:
            self.bad_messages += 1
            if self.max_bad_messages and self.bad_messages >= self.max_bad_messages:
                return Close(
                    CloseReason.POLICY_VIOLATION,
                    f"{self.bad_messages} bad messages in a row; last: {exc.reason}",
                )
            return Reply(error_reply(exc.reason), exc.reason)
        self.bad_messages = 0
        return Update(state)
