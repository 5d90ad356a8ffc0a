"""Unit tests of a room shared by several processes, without Redis (no I/O).

Processes are :class:`SharedUsers` mirrors joined by an in-memory bus that
behaves like Redis for them: every message published reaches every other
process, in the order its sender published them, and each sender's users
hash holds what its messages said.
"""

from __future__ import annotations

import json
import random
from collections import deque
from dataclasses import dataclass, field

import pytest

from wspractice.shared_users import (
    SEQ_FIELD,
    BadMessage,
    Batch,
    Entry,
    Kind,
    Message,
    RemoteRoom,
    SharedUsers,
    Verdict,
    decode_message,
    decode_users_hash,
    encode_entry,
)

NODE_A = "aaaaaaaaaaaa"
NODE_B = "bbbbbbbbbbbb"
U1 = "11111111-1111-4111-8111-111111111111"
U2 = "22222222-2222-4222-8222-222222222222"
U3 = "33333333-3333-4333-8333-333333333333"
ORDER_1 = f"1700000000000.000000.{NODE_B}"
ORDER_2 = f"1700000000001.000000.{NODE_B}"


def entry(name: str, state: str = "{}", order: str = ORDER_1) -> Entry:
    return Entry(name, order, state)


# ------------------------------------------------------------ messages


def test_a_message_survives_encoding_with_states_byte_for_byte() -> None:
    batch = Batch(
        joined={U1: entry("Alex", '{"x":1e5,"n":"é"}')},
        updated={U2: '{"y":1.50}'},
        left=[U3],
    )
    message = Message(NODE_B, 7, Kind.CHANGES, batch)
    decoded = decode_message(message.encode().encode("utf-8"))
    assert decoded == message
    assert decoded.batch.joined[U1].state == '{"x":1e5,"n":"é"}'


@pytest.mark.parametrize(
    "body, reason",
    [
        ("nope", "not JSON"),
        ("[1]", "not a JSON object"),
        ('{"v":2,"node":"bbbbbbbbbbbb","seq":1,"kind":"changes"}', "version"),
        ('{"v":1,"node":"BB","seq":1,"kind":"changes"}', "bad process id"),
        ('{"v":1,"node":"bbbbbbbbbbbb","seq":0,"kind":"changes"}', "sequence"),
        ('{"v":1,"node":"bbbbbbbbbbbb","seq":true,"kind":"changes"}', "sequence"),
        ('{"v":1,"node":"bbbbbbbbbbbb","seq":1,"kind":"hello"}', "unknown kind"),
        (
            '{"v":1,"node":"bbbbbbbbbbbb","seq":1,"kind":"changes",'
            '"updated":[["not-a-uuid","{}"]]}',
            "bad uuid",
        ),
        (
            '{"v":1,"node":"bbbbbbbbbbbb","seq":1,"kind":"changes",'
            f'"updated":[["{U1}","[1,2]"]]}}',
            "bad state",
        ),
        (
            '{"v":1,"node":"bbbbbbbbbbbb","seq":1,"kind":"changes",'
            f'"updated":[["{U1}","{{\\"x\\":NaN}}"]]}}',
            "bad state",
        ),
        (
            '{"v":1,"node":"bbbbbbbbbbbb","seq":1,"kind":"changes",'
            f'"updated":[["{U1}",{{"x":1}}]]}}',
            "not a string of JSON",
        ),
        (
            '{"v":1,"node":"bbbbbbbbbbbb","seq":1,"kind":"changes",'
            f'"joined":[["{U1}","Al\\u0000ex","{ORDER_1}","{{}}"]]}}',
            "bad username",
        ),
        (
            '{"v":1,"node":"bbbbbbbbbbbb","seq":1,"kind":"changes",'
            f'"joined":[["{U1}","Alex","99","{{}}"]]}}',
            "bad order key",
        ),
    ],
)
def test_a_message_that_wspractice_did_not_write_is_refused_whole(
    body: str, reason: str
) -> None:
    with pytest.raises(BadMessage, match=reason):
        decode_message(body)


def test_a_state_with_whitespace_arrives_compacted() -> None:
    body = (
        '{"v":1,"node":"bbbbbbbbbbbb","seq":1,"kind":"changes",'
        f'"updated":[["{U1}","{{ \\"x\\": 1 }}"]]}}'
    )
    assert decode_message(body).batch.updated == {U1: '{"x":1}'}


def test_a_users_hash_gives_its_sequence_number_and_users() -> None:
    fields = {
        U1.encode(): encode_entry(entry("Alex", '{"x":1}')).encode(),
        SEQ_FIELD.encode(): b"12",
    }
    assert decode_users_hash(fields) == (12, {U1: entry("Alex", '{"x":1}')})
    with pytest.raises(BadMessage, match="no sequence number"):
        decode_users_hash({U1: encode_entry(entry("Alex"))})
    with pytest.raises(BadMessage, match="bad state"):
        decode_users_hash({SEQ_FIELD: "1", U1: '["Alex","' + ORDER_1 + '","7"]'})


# ------------------------------------------------------------ batches


def test_a_batch_merges_like_the_changes_of_a_round() -> None:
    batch = Batch(joined={U1: entry("Alex")}, updated={U2: '{"a":1}'})
    batch.merge(Batch(updated={U1: '{"x":2}', U2: '{"a":2}'}, left=[U3]))
    batch.merge(Batch(joined={U3: entry("Cleo")}))
    assert batch.joined == {U1: entry("Alex", '{"x":2}'), U3: entry("Cleo")}
    assert batch.updated == {U2: '{"a":2}'}
    assert batch.left == [U3]
    batch.merge(Batch(left=[U1, U2]))
    assert set(batch.joined) == {U3} and batch.updated == {}
    assert batch.left == [U3, U2]  # U1 joined and left within the batch


# ------------------------------------------------------------ the remote room


def full(node: str, seq: int, **users: Entry) -> Message:
    return Message(node, seq, Kind.FULL, Batch(joined=dict(users)))


def test_remote_room_applies_messages_in_sequence_and_ignores_stale_ones() -> None:
    room = RemoteRoom(NODE_A)
    assert room.receive(full(NODE_B, 1, **{U1: entry("Alex")})) is Verdict.APPLIED
    assert room.take() == [(U1, entry("Alex"))]
    update = Message(NODE_B, 2, Kind.CHANGES, Batch(updated={U1: '{"x":1}'}))
    assert room.receive(update) is Verdict.APPLIED
    assert room.receive(update) is Verdict.STALE
    assert room.take() == [(U1, entry("Alex", '{"x":1}'))]
    assert room.take() == []
    bye = Message(NODE_B, 3, Kind.BYE)
    assert room.receive(bye) is Verdict.APPLIED
    assert room.take() == [(U1, None)]
    assert room.nodes() == [] and len(room) == 0


def test_remote_room_asks_for_a_resync_after_a_gap_or_an_unknown_process() -> None:
    room = RemoteRoom(NODE_A)
    joined = Message(NODE_B, 5, Kind.CHANGES, Batch(joined={U1: entry("Alex")}))
    assert room.receive(joined) is Verdict.RESYNC
    assert room.take() == []  # Nothing applied from an unknown process.
    assert room.replace(NODE_B, 5, {U1: entry("Alex")})
    gap = Message(NODE_B, 7, Kind.CHANGES, Batch(joined={U2: entry("Bob")}))
    assert room.receive(gap) is Verdict.RESYNC
    assert sorted(room.take()) == sorted([(U1, entry("Alex")), (U2, entry("Bob"))])
    # A read older than what was received is ignored; a newer one replaces.
    assert not room.replace(NODE_B, 6, {})
    assert room.replace(NODE_B, 8, {U2: entry("Bob", '{"y":1}')})
    assert sorted(room.take()) == [(U1, None), (U2, entry("Bob", '{"y":1}'))]


def test_remote_room_ignores_its_own_messages_and_a_second_claim_on_a_uuid() -> None:
    room = RemoteRoom(NODE_A)
    assert room.receive(full(NODE_A, 1, **{U1: entry("Me")})) is Verdict.OWN
    room.receive(full(NODE_B, 1, **{U1: entry("Alex")}))
    room.receive(full("cccccccccccc", 1, **{U1: entry("Impostor")}))
    assert dict(room.take()) == {U1: entry("Alex")}
    assert room.drop("cccccccccccc")
    assert room.take() == [] and len(room) == 1  # Still Alex's.


# ------------------------------------------------------------ the mirror


def test_local_changes_are_published_once_per_round_and_remote_ones_never() -> None:
    published: list[Batch] = []
    room = RemoteRoom(NODE_A)
    users = SharedUsers(NODE_A, room, published.append, clock=lambda: 1700000000.0)
    users.join(U1, "Alex")
    users.update(U1, '{"x":1}')
    users.update(U1, '{"x":2}')
    room.receive(full(NODE_B, 1, **{U2: entry("Bob")}))
    changes = users.take_changes()
    assert json.loads(changes.encode()) == {
        "joined": {
            U1: {"username": "Alex", "state": {"x": 2}},
            U2: {"username": "Bob", "state": {}},
        }
    }
    assert published == [
        Batch(joined={U1: Entry("Alex", f"1700000000000.000000.{NODE_A}", '{"x":2}')})
    ]
    assert not users.take_changes()
    assert users.leave(U2) is None  # Only Bob's process removes Bob.
    assert len(published) == 1 and len(users) == 2


def test_the_room_is_in_order_key_order_whoever_joined_first_here() -> None:
    room = RemoteRoom(NODE_A)
    users = SharedUsers(NODE_A, room, lambda batch: None, clock=lambda: 1700000000.0)
    users.join(U1, "Alex")  # 1700000000000.000000.aaaa...
    room.receive(
        full(
            NODE_B,
            1,
            **{
                U2: entry("Bob", order=f"1699999999999.000000.{NODE_B}"),
                U3: entry("Cleo", order=f"1700000000000.000000.{NODE_B}"),
            },
        )
    )
    users.take_changes()
    assert [u["username"] for u in json.loads(users.snapshot()).values()] == [
        "Bob",
        "Alex",
        "Cleo",
    ]


def test_order_keys_follow_every_key_seen_whatever_the_clock_says() -> None:
    now = [1700000000.0]
    room = RemoteRoom(NODE_A)
    users = SharedUsers(NODE_A, room, lambda batch: None, clock=lambda: now[0])
    first = users.next_order()
    # A process whose clock is an hour ahead: whoever joins here next is
    # ordered after its users.
    ahead = f"1700003600000.000004.{NODE_B}"
    room.receive(full(NODE_B, 1, **{U2: entry("Bob", order=ahead)}))
    users.take_changes()
    users.join(U1, "Alex")
    assert first < ahead < users.order(U1)
    now[0] -= 10  # The wall clock goes back: keys still grow.
    assert users.next_order() > users.order(U1)


# ------------------------------------------------------------ several processes


@dataclass
class Process:
    """One wspractice process on the in-memory bus."""

    node: str
    users: SharedUsers
    #: sender -> messages not yet delivered to this process, in order.
    inbox: dict[str, deque[Message]] = field(default_factory=dict)


class Bus:
    """Redis, as the processes see it: a channel and one users hash each."""

    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed)
        self.processes: dict[str, Process] = {}
        self.hashes: dict[str, tuple[int, dict[str, Entry]]] = {}
        self.seqs: dict[str, int] = {}

    def start(self, node: str, skew: float = 0.0) -> Process:
        clock = self.random.random
        room = RemoteRoom(node)
        users = SharedUsers(
            node,
            room,
            lambda batch: self.publish(node, batch),
            clock=lambda: 1700000000 + skew + clock(),
        )
        process = Process(node, users)
        for other in self.processes.values():  # Subscribe, then read.
            other.inbox[node] = deque()
            process.inbox[other.node] = deque()
        for sender, (seq, users_of) in self.hashes.items():
            room.replace(sender, seq, dict(users_of))
        self.processes[node] = process
        self.announce(node)
        return process

    def announce(self, node: str) -> None:
        """A process's first message: every user it has (none yet)."""
        seq = self.seqs[node] = self.seqs.get(node, 0) + 1
        self.hashes[node] = (seq, {})
        for other in self.processes.values():
            if other.node != node:
                other.inbox[node].append(Message(node, seq, Kind.FULL))

    def publish(self, node: str, batch: Batch) -> None:
        seq = self.seqs[node] = self.seqs.get(node, 0) + 1
        _, users_of = self.hashes.get(node, (0, {}))
        batch.apply_to(users_of)
        self.hashes[node] = (seq, users_of)
        message = Message(node, seq, Kind.CHANGES, batch)
        for other in self.processes.values():
            if other.node != node:
                other.inbox[node].append(decode_message(message.encode()))

    def deliver_one(self) -> bool:
        queues = [
            (process, queue)
            for process in self.processes.values()
            for queue in process.inbox.values()
            if queue
        ]
        if not queues:
            return False
        process, queue = self.random.choice(queues)
        verdict = process.users.remote.receive(queue.popleft())
        assert verdict is Verdict.APPLIED
        return True

    def settle(self) -> None:
        for _ in range(3):
            for process in self.processes.values():
                process.users.take_changes()
            while self.deliver_one():
                pass


@pytest.mark.parametrize("seed", range(20))
def test_every_process_converges_to_one_room_in_one_order(seed: int) -> None:
    bus = Bus(seed)
    rnd = bus.random
    nodes = [f"{n:012x}" for n in (0xA1, 0xB2, 0xC3)]
    # Clocks up to two seconds apart.
    for node in nodes[:2]:
        bus.start(node, skew=rnd.uniform(-2, 2))
    mine: dict[str, list[str]] = {node: [] for node in nodes}
    serial = 0
    for step in range(300):
        if step == 150:
            bus.start(nodes[2], skew=rnd.uniform(-2, 2))  # Started later.
        process = rnd.choice(list(bus.processes.values()))
        action = rnd.random()
        local = mine[process.node]
        if action < 0.2 or not local:
            serial += 1
            uuid = f"{serial:08x}-0000-4000-8000-{int(process.node, 16):012x}"
            process.users.join(uuid, f"user{serial}")
            local.append(uuid)
        elif action < 0.3:
            process.users.leave(local.pop(rnd.randrange(len(local))))
        elif action < 0.8:
            process.users.update(rnd.choice(local), f'{{"n":{step}}}')
        elif action < 0.9:
            process.users.take_changes()
        else:
            for _ in range(rnd.randrange(10)):
                bus.deliver_one()
    bus.settle()
    snapshots = {node: p.users.snapshot() for node, p in bus.processes.items()}
    first = snapshots[nodes[0]]
    assert all(text == first for text in snapshots.values()), snapshots
    assert set(json.loads(first)) == {u for local in mine.values() for u in local}
