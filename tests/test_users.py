"""The users map (no I/O): examples, then a state machine of joins, moves
and leaves in any order whose snapshots, and the rounds of changes a client
applies, must always be the model, in JSON."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    rule,
)

from wspractice.messages import encode, parse_state
from wspractice.users import Users

from .strategies import EXAMPLES, json_values
from .strictjson import strict_json


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


# ---------------------------------------------------------------- properties


class PresenceSnapshots(RuleBasedStateMachine):
    """Joins, moves and leaves in any order: the snapshot is the model, in JSON."""

    users = Bundle("users")

    def __init__(self) -> None:
        super().__init__()
        self.presence = Users()
        self.model: dict[str, dict[str, Any]] = {}
        #: What a client applying every round's changes has.
        self.view: dict[str, dict[str, Any]] = {}
        self.counter = 0

    @rule(target=users, username=st.text(max_size=70))
    def join(self, username: str) -> str:
        self.counter += 1
        uuid = f"user-{self.counter}"
        self.presence.join(uuid, username)
        self.model[uuid] = {"username": username, "state": {}}
        assert self.presence.changed
        return uuid

    @rule(
        uuid=users,
        state=st.dictionaries(st.text(max_size=6), json_values, max_size=4),
    )
    def move(self, uuid: str, state: dict[str, Any]) -> None:
        if uuid not in self.model:
            return
        self.presence.update(uuid, parse_state(json.dumps(state)))
        self.model[uuid]["state"] = state
        assert self.presence.changed

    @rule(uuid=consumes(users))
    def leave(self, uuid: str) -> None:
        user = self.presence.leave(uuid)
        assert (user is not None) == (uuid in self.model)
        self.model.pop(uuid, None)

    @rule()
    def snapshot_twice(self) -> None:
        first = self.presence.snapshot()
        assert self.presence.snapshot() == first

    @rule()
    def round(self) -> None:
        """A client that applies each round's changes sees the model."""
        changes = strict_json(self.presence.take_changes().encode())
        for uuid, user in changes.get("joined", {}).items():
            self.view[uuid] = user
        for uuid, state in changes.get("updated", {}).items():
            self.view[uuid]["state"] = state
        for uuid in changes.get("left", []):
            del self.view[uuid]
        assert self.view == self.model
        assert list(self.view) == list(self.model)  # Join order.
        assert not self.presence.changed

    @invariant()
    def snapshot_is_valid_json_equal_to_the_model(self) -> None:
        text = self.presence.snapshot()
        text.encode("utf-8")
        value = strict_json(text)
        assert value == self.model
        assert list(value) == list(self.model)  # Join order.
        assert text == encode(self.model)  # Compact, like JSON.stringify.
        assert len(self.presence) == len(self.model)


PresenceSnapshots.TestCase.settings = settings(
    max_examples=max(10, EXAMPLES // 2),
    deadline=None,
    stateful_step_count=30,
    suppress_health_check=[HealthCheck.too_slow],
)
test_presence_snapshots_are_always_the_model_as_json = PresenceSnapshots.TestCase
