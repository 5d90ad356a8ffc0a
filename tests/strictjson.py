"""JSON as a browser's ``JSON.parse`` reads it, for the fuzzers' oracles."""

from __future__ import annotations

import json
import math
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
