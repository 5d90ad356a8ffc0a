"""Unit tests for the presence app's wire format (no I/O)."""

from __future__ import annotations

import json

import pytest

from wspractice.errors import MessageError
from wspractice.messages import encode, error_reply, parse_state


def test_state_is_re_encoded_compactly() -> None:
    assert parse_state('{"x": 120, "y": 340}') == '{"x":120,"y":340}'


def test_non_ascii_is_kept_as_text() -> None:
    assert parse_state('{"label": "caf\\u00e9 王"}') == '{"label":"café 王"}'


def test_lone_surrogates_stay_escaped_so_the_output_is_valid_utf8() -> None:
    text = parse_state('{"s": "\\ud800"}')
    assert text == '{"s":"\\ud800"}'
    text.encode("utf-8")


@pytest.mark.parametrize(
    ("message", "fragment"),
    [
        ("hello", "message is not valid JSON: Expecting value"),
        ('{"x": 1', "message is not valid JSON"),
        ("[1, 2]", "must be a JSON object such as"),
        ('"text"', "not a string"),
        ("42", "not a number"),
        ("true", "not a boolean"),
        ("null", "not null"),
        ('{"x": NaN}', "NaN is not a JSON value"),
        ('{"x": Infinity}', "Infinity is not a JSON value"),
        ("[" * 100_000, "nested too deeply"),
        ('{"x": ' + "9" * 5000 + "}", "message is not usable"),
    ],
)
def test_bad_messages_say_what_is_wrong(message: str, fragment: str) -> None:
    with pytest.raises(MessageError) as info:
        parse_state(message)
    assert fragment in info.value.reason


def test_error_reply_is_a_json_object_with_the_reason() -> None:
    assert json.loads(error_reply("bad")) == {"error": "bad"}


def test_encode_matches_json_stringify() -> None:
    assert encode({"a": [1, 2.5, None, True], "b": "é"}) == (
        '{"a":[1,2.5,null,true],"b":"é"}'
    )
