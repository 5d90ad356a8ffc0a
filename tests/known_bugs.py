"""Server bugs the fuzzers found and that are not fixed yet: exactly these.

The property tests and the live fuzz tolerate an input only if it trips one
of the bugs below, recognised by its exact signature; anything else still
fails them. Each bug also has a strict xfail test in
``tests/test_found_by_fuzzing.py`` that shows it with one exact input. When
the core is fixed, that test passes, pytest reports it as XPASS(strict) and
fails: remove its xfail mark and the entry here, and the fuzzers then hold
the fixed code to the full rules.
"""

from __future__ import annotations

import json
import math
import urllib.parse
from typing import Any


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"{text} does not fit in a double")
    return value


def strict_json(text: str) -> Any:
    """``json.loads`` as ``JSON.parse`` sees it: no NaN, no Infinity.

    A number literal too large for a double (``1e400``) is refused too: a
    JavaScript client would turn it into ``Infinity``, which JSON cannot
    carry back.
    """
    return json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)


# ------------------------------------------------------------------ bug 1
# check_upgrade() lets ValueError escape for a request target that
# urllib.parse.urlsplit() cannot split (absolute form with a broken IPv6
# host, e.g. ``GET http://[::1/?username=x HTTP/1.1``). The handler logs a
# traceback at ERROR and drops the connection without an HTTP response,
# instead of answering 400.


def target_bug(exc: BaseException, target: str) -> bool:
    if type(exc) is not ValueError:
        return False
    try:
        urllib.parse.urlsplit(target.encode("latin-1").decode("utf-8", "replace"))
    except ValueError:
        return True
    return False


# ------------------------------------------------------------------ bug 2
# check_upgrade() lets ValueError escape for a Sec-WebSocket-Key with a
# non-ASCII character (http.server decodes headers as latin-1, and
# base64.b64decode raises ValueError, not binascii.Error, for non-ASCII
# text). Same symptom on the wire: no response, a traceback in the log.


def key_bug(exc: BaseException, headers: list[tuple[str, str]]) -> bool:
    if type(exc) is not ValueError or "only ASCII" not in str(exc):
        return False
    keys = [v for k, v in headers if k.lower() == "sec-websocket-key"]
    return len(keys) == 1 and not keys[0].strip().isascii()


# ------------------------------------------------------------------ bug 3
# With --compression, accept() lets ValueError escape when a
# permessage-deflate offer has a window-bits parameter that is not an
# integer (``permessage-deflate; client_max_window_bits=abc``): wsproto's
# PerMessageDeflate._parse_params calls int() outside its try. RFC 7692
# section 5 says to decline such an offer; the server drops the connection
# without a response and logs a traceback.


def deflate_params_bug(exc: BaseException) -> bool:
    return type(exc) is ValueError and (
        "invalid literal for int()" in str(exc)
        or "Exceeds the limit" in str(exc)  # int() of a huge digit string
    )


# ------------------------------------------------------------------ bug 4
# parse_state() accepts a number literal too large for a double
# (``{"x": 1e400}``): json turns it into float('inf') and the encoder writes
# ``Infinity``, which is not JSON. The user's entry then makes every
# snapshot unparseable for every client (JSON.parse throws), so one client
# breaks the room for everyone.


def infinity_bug(state: str) -> bool:
    """Whether ``state`` (what parse_state returned) is the Infinity bug."""
    try:
        strict_json(state)
    except ValueError as exc:
        return "Infinity is not JSON" in str(exc)
    return False


#: Log messages of tracebacks the live fuzz may see, and which bug each is.
TRACEBACK_SIGNATURES = {
    "Invalid IPv6 URL": "bug 1 (unsplittable request target)",
    "does not appear to be an IPv4 or IPv6 address": "bug 1",
    "string argument should contain only ASCII characters": "bug 2 (non-ASCII key)",
    "invalid literal for int() with base 10": "bug 3 (deflate parameters)",
}
