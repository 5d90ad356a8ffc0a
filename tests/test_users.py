"""Unit tests for the users map (no I/O)."""

from __future__ import annotations

import json

import pytest

from wspractice.users import Users


def test_a_new_user_has_an_empty_state() -> None:
    presence = Users()
    presence.join("u1", "Alex")
    assert json.loads(presence.snapshot()) == {"u1": {"username": "Alex", "state": {}}}


def test_snapshot_has_the_tutorials_shape_in_join_order() -> None:
    presence = Users()
    presence.join("u1", "Alex")
    presence.join("u2", "Bob")
    presence.update("u1", '{"x":412,"y":230}')
    assert presence.snapshot() == (
        '{"u1":{"username":"Alex","state":{"x":412,"y":230}},'
        '"u2":{"username":"Bob","state":{}}}'
    )


def test_update_replaces_the_whole_state() -> None:
    presence = Users()
    presence.join("u1", "Alex")
    presence.update("u1", '{"x":1,"y":2}')
    presence.update("u1", '{"color":"red"}')
    assert json.loads(presence.snapshot())["u1"]["state"] == {"color": "red"}


def test_leave_removes_the_user() -> None:
    presence = Users()
    presence.join("u1", "Alex")
    presence.join("u2", "Bob")
    assert presence.leave("u1") is not None
    assert presence.leave("u1") is None
    assert list(json.loads(presence.snapshot())) == ["u2"]
    assert len(presence) == 1


def test_usernames_are_json_escaped() -> None:
    presence = Users()
    presence.join("u1", 'Al"ex\\ <b>')
    assert json.loads(presence.snapshot())["u1"]["username"] == 'Al"ex\\ <b>'


def test_changed_says_whether_a_snapshot_would_differ() -> None:
    presence = Users()
    assert not presence.changed
    presence.join("u1", "Alex")
    assert presence.changed
    presence.snapshot()
    assert not presence.changed
    presence.update("u1", '{"x":1}')
    assert presence.changed
    presence.snapshot()
    presence.leave("u1")
    assert presence.changed


def test_joining_twice_with_one_uuid_is_an_error() -> None:
    presence = Users()
    presence.join("u1", "Alex")
    with pytest.raises(KeyError):
        presence.join("u1", "Alex")
