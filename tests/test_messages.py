"""The presence app's wire format and message rules (no I/O).

Examples state each rule with its exact reason; the property tests
(hypothesis) state it for every text; :class:`MessageRules` is driven with a
fake clock. What a client sees of them on the wire is in test_presence.py.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wspractice.config import Options
from wspractice.errors import MessageError
from wspractice.messages import (
    Close,
    Drop,
    MessageRules,
    Reply,
    Update,
    encode,
    error_reply,
    parse_state,
)

from .strategies import fuzz, json_values
from .strictjson import strict_json


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


def test_a_number_too_large_for_a_double_is_a_bad_message() -> None:
    # Bug 4 (found by fuzzing): 1e400 was stored as Infinity, which made
    # every snapshot invalid JSON for every client (see test_presence.py).
    with pytest.raises(MessageError) as info:
        parse_state('{"x": 1e400}')
    assert info.value.reason == "message is not usable: the number 1e400 is too large"


def test_error_reply_is_a_json_object_with_the_reason() -> None:
    assert json.loads(error_reply("bad")) == {"error": "bad"}


def test_encode_matches_json_stringify() -> None:
    assert encode({"a": [1, 2.5, None, True], "b": "é"}) == (
        '{"a":[1,2.5,null,true],"b":"é"}'
    )


# ---------------------------------------------------------------- MessageRules


def rules(**changes: object) -> MessageRules:
    """A client's rules: no rate limit and 3 bad messages unless changed."""
    options = Options(rate_limit=0, rate_burst=3, max_bad_messages=3)
    return MessageRules(options.replace(**changes), now=0.0)


def test_a_json_object_is_an_update_with_the_compact_state() -> None:
    assert rules().check('{"x": 1, "y": 2}', 0.0) == Update('{"x":1,"y":2}')


def test_a_state_over_max_state_size_is_a_bad_message() -> None:
    record = rules(max_state_size=16)
    assert record.check('{"x":1234567890}', 0.0) == Update('{"x":1234567890}')
    decision = record.check('{"x": 12345678901}', 0.0)  # 17 bytes, compact.
    assert isinstance(decision, Reply)
    assert decision.reason == (
        "state is 17 bytes of JSON; at most 16 are allowed (--max-state-size);"
        " your state is unchanged"
    )
    assert record.bad_messages == 1


def test_the_state_size_counts_utf8_bytes() -> None:
    record = rules(max_state_size=16)
    assert isinstance(
        record.check('{"s":"ééééé"}', 0.0), Reply
    )  # 13 characters, 18 bytes
    assert isinstance(record.check('{"s":"eeeee"}', 0.0), Update)


def test_a_binary_message_closes_with_1003() -> None:
    assert rules().check(b'{"x": 1}', 0.0) == Close(
        1003, "binary messages are not supported; send JSON text"
    )


def test_a_bad_message_gets_a_reply_with_the_reason() -> None:
    decision = rules().check("[1]", 0.0)
    assert isinstance(decision, Reply)
    assert decision.reason.startswith("message must be a JSON object")
    assert json.loads(decision.text) == {"error": decision.reason}


def test_bad_messages_in_a_row_close_with_1008_and_a_good_one_resets_them() -> None:
    record = rules(max_bad_messages=3)
    assert [type(record.check("oops", 0.0)) for _ in range(2)] == [Reply, Reply]
    assert isinstance(record.check("{}", 0.0), Update)  # The count starts again.
    assert [type(record.check("oops", 0.0)) for _ in range(2)] == [Reply, Reply]
    decision = record.check("oops", 0.0)
    assert isinstance(decision, Close)
    assert decision.code == 1008
    assert decision.reason.startswith("3 bad messages in a row; last: ")


def test_zero_bad_messages_allowed_means_never_closed_for_them() -> None:
    record = rules(max_bad_messages=0)
    assert all(isinstance(record.check("oops", 0.0), Reply) for _ in range(100))


def test_over_the_rate_one_reply_then_drops_until_a_burst_is_dropped() -> None:
    record = rules(rate_limit=5, rate_burst=3)
    decisions = [record.check("{}", 0.0) for _ in range(6)]
    reason = (
        "too many messages: at most 5 a second (bursts of 3);"
        " messages are dropped until you slow down"
    )
    assert decisions == [
        *[Update("{}")] * 3,
        Reply(error_reply(reason), reason),  # Told once,
        Drop(),  # then dropped in silence,
        Close(1008, "message rate above 5 a second for too long"),  # 3 dropped.
    ]


def test_tokens_come_back_and_the_client_may_move_again() -> None:
    record = rules(rate_limit=5, rate_burst=3)
    for _ in range(4):
        record.check("{}", 0.0)
    assert record.check('{"x": 1}', 0.4) == Update('{"x":1}')  # 2 tokens back.


def test_no_rate_limit_when_it_is_zero() -> None:
    record = rules(rate_limit=0)
    assert all(isinstance(record.check("{}", 0.0), Update) for _ in range(1000))


# ---------------------------------------------------------------- properties


@st.composite
def json_texts(draw: st.DrawFn) -> str:
    """JSON text of any value, in any legal layout."""
    value = draw(json_values)
    layout = draw(
        st.sampled_from(
            [
                {},
                {"indent": 2},
                {"separators": (",", ":")},
                {"ensure_ascii": False},
                {"separators": (" , ", " : "), "indent": "\t"},
            ]
        )
    )
    text = json.dumps(value, **layout)
    return draw(st.sampled_from(["", " ", "\n", "\t\r\n "])) + text


@st.composite
def damaged_json(draw: st.DrawFn) -> str:
    """JSON text that was cut short, had a character changed, or got a tail."""
    text = draw(json_texts())
    how = draw(st.sampled_from(["cut", "change", "tail", "edge"]))
    if how == "cut":
        return text[: draw(st.integers(0, len(text)))]
    if how == "change" and text:
        i = draw(st.integers(0, len(text) - 1))
        return text[:i] + draw(st.characters(codec="utf-8")) + text[i + 1 :]
    if how == "tail":
        return text + draw(st.text(max_size=5))
    return draw(
        st.sampled_from(
            [
                '{"x": NaN}',
                '{"x": -Infinity}',
                '{"x": 1e400}',
                '{"x": -1e999}',
                '{"x": 1.7976931348623157e308}',
                '{"x": 1' + "0" * 5000 + "}",
                '{"s": "\\ud800"}',
                '{"\\udfff": 1}',
                '{"a": 1, "a": 2}',
                '{"a": ' * 2000 + "1" + "}" * 2000,
                "\ufeff{}",
                "{}\x00",
            ]
        )
    )


def check_parse_state(text: str) -> None:
    """The message rule: a JSON object comes back compact, else MessageError."""
    try:
        state = parse_state(text)
    except MessageError as exc:
        assert isinstance(exc.reason, str) and exc.reason.strip()
        json.loads(error_reply(exc.reason))  # The reply itself is JSON.
        try:
            value = strict_json(text)
        except (ValueError, RecursionError):
            return  # Not JSON, or not usable: refused, rightly.
        assert not isinstance(value, dict), (text, exc.reason)
        return
    assert isinstance(state, str)
    state.encode("utf-8")  # Always sendable in a text frame.
    value = strict_json(state)
    assert isinstance(value, dict)
    assert value == strict_json(text)
    # Compact: the message as it came if it had no whitespace at all,
    # else written out again without any.
    assert state == (text if not any(c in text for c in " \t\n\r") else encode(value))
    assert parse_state(state) == state  # Stable.


@fuzz
@given(json_texts())
def test_json_text_parses_iff_it_is_an_object_and_round_trips(text: str) -> None:
    check_parse_state(text)


@fuzz
@given(damaged_json())
def test_damaged_json_is_refused_with_a_reason_or_round_trips(text: str) -> None:
    check_parse_state(text)


@fuzz
@given(st.text(max_size=200))
def test_any_text_is_a_state_or_a_message_error(text: str) -> None:
    check_parse_state(text)


@fuzz
@given(st.dictionaries(st.text(max_size=10), json_values, max_size=6))
def test_every_json_object_is_accepted_with_its_content_unchanged(
    state: dict[str, Any],
) -> None:
    text = json.dumps(state)
    result = parse_state(text)
    assert strict_json(result) == state
    assert result == json.dumps(state, separators=(",", ":"), ensure_ascii=False)
