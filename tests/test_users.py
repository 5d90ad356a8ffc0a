"""The users map (no I/O): examples, then a state machine of joins, moves
and leaves in any order whose snapshots must always be the model, in JSON."""

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


# ---------------------------------------------------------------- properties


class PresenceSnapshots(RuleBasedStateMachine):
    """Joins, moves and leaves in any order: the snapshot is the model, in JSON."""

    users = Bundle("users")

    def __init__(self) -> None:
        super().__init__()
        self.presence = Users()
        self.model: dict[str, dict[str, Any]] = {}
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
        assert not self.presence.changed
        assert self.presence.snapshot() == first

    @invariant()
    def snapshot_is_valid_json_equal_to_the_model(self) -> None:
        changed = self.presence.changed
        text = self.presence.snapshot()
        text.encode("utf-8")
        value = strict_json(text)
        assert value == self.model
        assert list(value) == list(self.model)  # Join order.
        assert text == encode(self.model)  # Compact, like JSON.stringify.
        assert len(self.presence) == len(self.model)
        self.presence.changed = changed  # Observing must not hide a change.


PresenceSnapshots.TestCase.settings = settings(
    max_examples=max(10, EXAMPLES // 2),
    deadline=None,
    stateful_step_count=30,
    suppress_health_check=[HealthCheck.too_slow],
)
test_presence_snapshots_are_always_the_model_as_json = PresenceSnapshots.TestCase
