"""Hypothesis settings and strategies that several test files share.

``WSPRACTICE_FUZZ_EXAMPLES`` (default 100) sets the examples per property;
``WSPRACTICE_FUZZ_EXAMPLES=5000 pytest tests/test_handshake.py`` searches
longer.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("WSPRACTICE_FUZZ_EXAMPLES", "100"))

#: The settings of every property test.
fuzz = settings(
    max_examples=EXAMPLES,
    deadline=None,  # A shared CI machine: never a timing assertion.
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

#: What http.server can hand over as a header value: latin-1 without CR/LF.
latin1 = st.characters(min_codepoint=0, max_codepoint=255, exclude_characters="\r\n")

json_leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(codec="utf-8"))
)
#: Any JSON value that JSON.parse would give back unchanged.
json_values = st.recursive(
    json_leaves,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
