"""Unit tests for the users map (no I/O)."""

from __future__ import annotations

import json

import pytest

from wspractice.users import Users


def test_a_new_user_has_an_empty_state() -> None:
    users = Users()
    users.join("u1", "Alex")
    assert json.loads(users.snapshot()) == {"u1": {"username": "Alex", "state": {}}}


def test_snapshot_has_the_tutorials_shape_in_join_order() -> None:
    users = Users()
    users.join("u1", "Alex")
    users.join("u2", "Bob")
    users.update("u1", '{"x":412,"y":230}')
    assert users.snapshot() == (
        '{"u1":{"username":"Alex","state":{"x":412,"y":230}},'
        '"u2":{"username":"Bob","state":{}}}'
    )


def test_update_replaces_the_whole_state() -> None:
    users = Users()
    users.join("u1", "Alex")
    users.update("u1", '{"x":1,"y":2}')
    users.update("u1", '{"color":"red"}')
    assert json.loads(users.snapshot())["u1"]["state"] == {"color": "red"}


def test_leave_removes_the_user() -> None:
    users = Users()
    users.join("u1", "Alex")
    users.join("u2", "Bob")
    assert users.leave("u1") is not None
    assert users.leave("u1") is None
    assert list(json.loads(users.snapshot())) == ["u2"]
    assert len(users) == 1


def test_usernames_are_json_escaped() -> None:
    users = Users()
    users.join("u1", 'Al"ex\\ <b>')
    assert json.loads(users.snapshot())["u1"]["username"] == 'Al"ex\\ <b>'


def test_changed_says_whether_anything_changed_since_the_last_round() -> None:
    users = Users()
    assert not users.changed
    users.join("u1", "Alex")
    assert users.changed
    users.take_changes()
    assert not users.changed
    users.update("u1", '{"x":1}')
    assert users.changed
    users.take_changes()
    users.leave("u1")
    assert users.changed


def test_changes_hold_each_user_once_with_the_newest_state() -> None:
    users = Users()
    users.join("u1", "Alex")
    users.take_changes()
    users.update("u1", '{"x":1}')
    users.update("u1", '{"x":2}')
    users.join("u2", "Bob")
    users.update("u2", '{"y":1}')
    changes = users.take_changes()
    assert json.loads(changes.encode()) == {
        "joined": {"u2": {"username": "Bob", "state": {"y": 1}}},
        "updated": {"u1": {"x": 2}},
    }
    assert not users.take_changes()


def test_a_leave_cancels_a_pending_join_or_update() -> None:
    users = Users()
    users.join("u1", "Alex")
    users.take_changes()
    users.update("u1", '{"x":1}')
    users.join("u2", "Bob")
    users.leave("u1")
    users.leave("u2")  # Joined and left within one round: nobody hears of it.
    assert json.loads(users.take_changes().encode()) == {"left": ["u1"]}


def test_a_change_taken_is_frozen_at_that_moment() -> None:
    users = Users()
    users.join("u1", "Alex")
    changes = users.take_changes()
    users.update("u1", '{"x":9}')
    assert json.loads(changes.encode()) == {
        "joined": {"u1": {"username": "Alex", "state": {}}}
    }


def test_merged_changes_apply_like_both_in_order() -> None:
    users = Users()
    users.join("u1", "Alex")
    users.join("u2", "Bob")
    first = users.take_changes()
    users.update("u1", '{"x":1}')
    users.update("u2", '{"y":1}')
    users.join("u3", "Cy")
    second = users.take_changes()
    users.leave("u2")
    users.update("u3", '{"z":1}')
    third = users.take_changes()
    merged = first.merged(second).merged(third)
    assert json.loads(merged.encode()) == {
        "joined": {
            "u1": {"username": "Alex", "state": {"x": 1}},
            "u3": {"username": "Cy", "state": {"z": 1}},
        }
    }
    assert json.loads(second.merged(third).encode()) == {
        "joined": {"u3": {"username": "Cy", "state": {"z": 1}}},
        "updated": {"u1": {"x": 1}},
        "left": ["u2"],
    }


def test_joining_twice_with_one_uuid_is_an_error() -> None:
    users = Users()
    users.join("u1", "Alex")
    with pytest.raises(KeyError):
        users.join("u1", "Alex")
