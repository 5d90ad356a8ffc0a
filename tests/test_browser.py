"""The demo page in a real browser: headless Chromium driven by Playwright.

Chromium comes from Debian (``apt-get install chromium``, which
``scripts/test.sh`` does), never from ``playwright install``. Each test opens
one browser context per user, so users share nothing but the server.

Set ``WSPRACTICE_SCREENSHOTS=1`` to also write ``docs/images/demo.png``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from .clients import join, recv_until, users_named
from .conftest import TIMEOUT, RunningServer

playwright_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = os.environ.get("WSPRACTICE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 900, "height": 600}
MS = TIMEOUT * 1000  # Playwright counts in milliseconds.
HOSTILE = "<img src=x onerror=alert(1)>"
DOCS_IMAGES = Path(__file__).resolve().parent.parent / "docs" / "images"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        message = f"{CHROMIUM} is missing: bash scripts/test.sh installs it"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@dataclass
class User:
    """One browser context with the demo page open in it."""

    page: Any
    #: Console errors and uncaught exceptions of the page.
    errors: list[str] = field(default_factory=list)
    #: Alerts, confirms and prompts the page opened.
    dialogs: list[str] = field(default_factory=list)
    #: Every URL the page requested.
    requests: list[str] = field(default_factory=list)

    def wait_connected(self) -> None:
        self.page.wait_for_selector("#status[data-state=open]", timeout=MS)

    def cursor(self, name: str) -> Any:
        return self.page.locator(".cursor", has_text=name)

    def cursor_at(self, name: str) -> tuple[float, float]:
        """Where ``name``'s cursor tip is drawn (the box starts 2 px before)."""
        box = self.cursor(name).locator("svg").bounding_box(timeout=MS)
        assert box is not None
        return box["x"] + 2, box["y"] + 2

    def wait_cursor_at(self, name: str, x: float, y: float) -> None:
        deadline = time.monotonic() + TIMEOUT
        while self.cursor_at(name) != (x, y):
            assert time.monotonic() < deadline, (name, self.cursor_at(name), (x, y))
            self.page.wait_for_timeout(20)


@pytest.fixture
def open_page(browser: Any) -> Iterator[Callable[..., User]]:
    """Open the demo page in a fresh context; check it for errors after."""
    contexts: list[Any] = []
    users: list[tuple[User, bool]] = []

    def open_page(
        url: str,
        *,
        expect_errors: bool = False,
        init_script: str | None = None,
        fake_clock: bool = False,
    ) -> User:
        context = browser.new_context(viewport=VIEWPORT)
        context.set_default_timeout(MS)
        if init_script is not None:
            context.add_init_script(init_script)
        contexts.append(context)
        page = context.new_page()
        if fake_clock:  # Timers and animation frames under the test's control.
            page.clock.install()
        user = User(page)
        users.append((user, expect_errors))
        page.on(
            "console",
            lambda msg: msg.type == "error" and user.errors.append(msg.text),
        )
        page.on("pageerror", lambda exc: user.errors.append(str(exc)))
        page.on("request", lambda request: user.requests.append(request.url))

        def on_dialog(dialog: Any) -> None:
            user.dialogs.append(dialog.message)
            dialog.dismiss()

        page.on("dialog", on_dialog)
        page.goto(url)
        return user

    yield open_page
    for context in contexts:
        context.close()
    for user, expect_errors in users:
        assert user.dialogs == []
        if not expect_errors:
            assert user.errors == []


def page_url(server: RunningServer, query: str = "") -> str:
    return f"http://127.0.0.1:{server.port}/{query}"


def alice_sees_bob_at(
    server: RunningServer, open_page: Callable[..., User], x: int, y: int
) -> tuple[User, User]:
    """Alice and Bob connected, and Bob's cursor moved to (x, y) on Alice's page."""
    alice = open_page(page_url(server, "?username=Alice"))
    bob = open_page(page_url(server, "?username=Bob"))
    alice.wait_connected()
    bob.wait_connected()
    bob.page.mouse.move(x, y)
    alice.wait_cursor_at("Bob", x, y)
    return alice, bob


# ---------------------------------------------------------------- presence


def test_second_user_sees_first_users_cursor_move_smoothly(
    server: RunningServer, open_page: Callable[..., User]
) -> None:
    alice = open_page(page_url(server), fake_clock=True)
    alice.page.fill("#username", "Alice")
    alice.page.click("button[type=submit]")
    alice.wait_connected()
    assert alice.page.text_content("#status") == "Connected as Alice"
    bob = open_page(page_url(server, "?username=Bob"))
    bob.wait_connected()

    bob.page.mouse.move(300, 200)
    alice.wait_cursor_at("Bob", 300, 200)
    assert alice.cursor("Bob").locator(".label").text_content() == "Bob"

    # Stop Alice's clock, let Bob jump 300 px right in one mouse event, then
    # step Alice's clock one 16 ms animation frame at a time.
    alice.page.clock.pause_at(int(time.time() * 1000) + 1000)
    bob.page.mouse.move(600, 200)
    deadline = time.monotonic() + TIMEOUT
    while alice.cursor("Bob").get_attribute("data-x") != "600":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    samples = []
    for _ in range(40):
        alice.page.clock.run_for(16)
        samples.append(alice.cursor_at("Bob")[0])
    # It glided: a few frames on the way, each one closer, never past the
    # target, and there in the end.
    assert 300 < samples[0] < samples[1] < samples[2] < 600, samples
    assert samples == sorted(samples) and samples[-1] == 600, samples
    assert len([x for x in samples if x < 590]) >= 5, samples

    # And the other way round: Bob sees Alice, not himself.
    alice.page.clock.resume()
    alice.page.mouse.move(100, 150)
    bob.wait_cursor_at("Alice", 100, 150)
    assert bob.page.locator(".cursor").count() == 1
    assert alice.page.locator(".cursor").count() == 1


def test_hostile_username_is_shown_as_text(
    server: RunningServer, open_page: Callable[..., User]
) -> None:
    alice = open_page(page_url(server, "?username=Alice"))
    alice.wait_connected()
    mallory = open_page(page_url(server))
    mallory.page.fill("#username", HOSTILE)
    mallory.page.click("button[type=submit]")
    mallory.wait_connected()
    mallory.page.mouse.move(250, 250)

    alice.wait_cursor_at(HOSTILE, 250, 250)
    label = alice.cursor(HOSTILE).locator(".label")
    assert label.text_content() == HOSTILE
    assert label.evaluate("el => el.children.length") == 0
    assert alice.page.locator("#users li", has_text=HOSTILE).count() == 1
    assert mallory.page.text_content("#status") == f"Connected as {HOSTILE}"
    for user in (alice, mallory):
        assert user.page.locator("img").count() == 0
        assert not any(url.endswith("/x") for url in user.requests), user.requests
    # The fixture checks that no dialog opened on either page.


def test_leaving_removes_the_cursor_and_the_name(
    server: RunningServer, open_page: Callable[..., User]
) -> None:
    alice, bob = alice_sees_bob_at(server, open_page, 120, 340)
    assert alice.page.locator("#users li").all_text_contents() == [
        "Alice(you)",
        "Bob",
    ]

    bob.page.context.close()

    alice.cursor("Bob").wait_for(state="detached", timeout=MS)
    alice.page.wait_for_function(
        "document.querySelectorAll('#users li').length === 1", timeout=MS
    )
    assert alice.page.locator("#users li").all_text_contents() == ["Alice(you)"]


# Runs in the page before its own script: timestamps every WebSocket send
# with the page's clock, and counts the pointer events the page receives.
RECORD_SENDS = """
window.sendTimes = [];
window.moves = 0;
const send = WebSocket.prototype.send;
WebSocket.prototype.send = function (data) {
    window.sendTimes.push(performance.now());
    return send.call(this, data);
};
addEventListener("pointermove", () => { window.moves += 1; });
"""


def test_sending_is_throttled_to_about_20_messages_a_second(
    server: RunningServer, open_page: Callable[..., User]
) -> None:
    sent: list[tuple[float, str]] = []

    def on_websocket(ws: Any) -> None:
        ws.on("framesent", lambda payload: sent.append((time.monotonic(), payload)))

    alice = open_page(page_url(server), init_script=RECORD_SENDS)
    alice.page.on("websocket", on_websocket)
    alice.page.fill("#username", "Alice")
    alice.page.click("button[type=submit]")
    alice.wait_connected()
    moves_before = alice.page.evaluate("window.moves")

    start = time.monotonic()
    x = 0
    while time.monotonic() - start < 2.0:
        x = (x + 7) % 800
        alice.page.mouse.move(50 + x, 300)
    end = time.monotonic()
    alice.page.wait_for_timeout(200)  # Let the last trailing send arrive.

    # Counted as Playwright saw the frames leave the page, over the interval.
    during = [payload for t, payload in sent if start <= t <= end]
    rate = len(during) / (end - start)
    assert 5 <= rate <= 25, (rate, len(during), end - start)
    # The page received more moves than it sent messages: it dropped some.
    moves = alice.page.evaluate("window.moves") - moves_before
    assert moves > len(during), (moves, len(during))
    # By the page's own clock, no two sends are closer than the 50 ms throttle
    # (less a few ms of timer slack), however fast the machine is.
    times = alice.page.evaluate("window.sendTimes")
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert len(gaps) >= 10 and min(gaps) >= 45, gaps
    # Every message is the tutorial's {"x": ..., "y": ...} and nothing else.
    for payload in during:
        state = json.loads(payload)
        assert sorted(state) == ["x", "y"]
        assert state["y"] == 300
    # The trailing send delivers the very last position.
    assert json.loads(sent[-1][1]) == {"x": 50 + x, "y": 300}


def test_two_users_with_the_same_name_each_see_only_the_other(
    server: RunningServer, open_page: Callable[..., User]
) -> None:
    first = open_page(page_url(server, "?username=Sam"))
    first.wait_connected()
    second = open_page(page_url(server, "?username=Sam"))
    second.wait_connected()
    first.page.mouse.move(100, 100)
    second.page.mouse.move(500, 400)
    first.wait_cursor_at("Sam", 500, 400)
    second.wait_cursor_at("Sam", 100, 100)
    for user in (first, second):
        assert user.page.locator(".cursor").count() == 1
        names = user.page.locator("#users li").all_text_contents()
        assert sorted(names) == ["Sam", "Sam(you)"]
    first_id = first.page.evaluate("wspractice.me")
    second_id = second.page.evaluate("wspractice.me")
    assert len({first_id, second_id}) == 2 and None not in (first_id, second_id)
    assert first.page.get_attribute(".cursor", "data-uuid") == second_id
    assert second.page.get_attribute(".cursor", "data-uuid") == first_id


# ---------------------------------------------------------------- changes only

UUID = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
)


def test_page_negotiates_the_delta_subprotocol_and_shows_its_uuid(
    server: RunningServer, open_page: Callable[..., User]
) -> None:
    alice = open_page(page_url(server, "?username=Alice"))
    alice.wait_connected()
    assert alice.page.evaluate("wspractice.socket.protocol") == "wspractice-delta"
    assert alice.page.text_content("#ws-protocol") == "wspractice-delta"
    alice.page.wait_for_function("wspractice.me !== null", timeout=MS)
    uuid = alice.page.evaluate("wspractice.me")
    assert UUID.fullmatch(uuid), uuid
    assert alice.page.text_content("#my-uuid") == uuid
    # The server agrees: it offered and selected the subprotocol for the user
    # with that uuid.
    with server.server.presence.lock:
        connection = server.server.presence.connections[uuid]
    assert connection.request.subprotocols == ("wspractice-delta",)
    assert connection.subprotocol == "wspractice-delta"
    assert alice.page.locator("#users li").all_text_contents() == ["Alice(you)"]


def wait_same_map(user: User, server: RunningServer) -> dict[str, Any]:
    """Wait until the page's copy of the map is the server's, order included."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        with server.server.presence.lock:
            wanted = server.server.presence.users.snapshot()
        mine = user.page.evaluate("JSON.stringify(wspractice.users)")
        if json.loads(mine) == json.loads(wanted) and list(json.loads(mine)) == list(
            json.loads(wanted)
        ):
            return json.loads(mine)  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, (mine, wanted)
        user.page.wait_for_timeout(20)


def test_delta_pages_and_a_tutorial_client_see_each_others_moves_joins_and_leaves(
    server: RunningServer, open_page: Callable[..., User]
) -> None:
    alice = open_page(page_url(server, "?username=Alice"))
    alice.wait_connected()
    # Carol speaks the tutorial's format: no subprotocol, the whole map.
    with join(server.url("/?username=Carol")) as carol:
        assert carol.subprotocol is None
        recv_until(carol, lambda s: "Carol" in users_named(s))
        alice.page.locator("#users li", has_text="Carol").wait_for(timeout=MS)

        bob = open_page(page_url(server, "?username=Bob"))
        bob.wait_connected()
        recv_until(carol, lambda s: "Bob" in users_named(s))
        for user in (alice, bob):
            user.page.wait_for_function(
                "[...document.querySelectorAll('#users li')]"
                ".map(li => li.textContent.replace('(you)', '')).join()"
                " === 'Alice,Carol,Bob'",
                timeout=MS,
            )

        # Moves, seen by the other page and by the tutorial-format client.
        bob.page.mouse.move(300, 200)
        alice.wait_cursor_at("Bob", 300, 200)
        recv_until(carol, lambda s: users_named(s)["Bob"] == {"x": 300, "y": 200})
        alice.page.mouse.move(120, 340)
        bob.wait_cursor_at("Alice", 120, 340)
        recv_until(carol, lambda s: users_named(s)["Alice"] == {"x": 120, "y": 340})
        carol.send(json.dumps({"x": 500, "y": 400}))
        alice.wait_cursor_at("Carol", 500, 400)
        bob.wait_cursor_at("Carol", 500, 400)
        for user in (alice, bob):
            wait_same_map(user, server)

        # Bob leaves: gone for Alice and for Carol.
        bob.page.click("#leave")
        alice.cursor("Bob").wait_for(state="detached", timeout=MS)
        snapshot = recv_until(carol, lambda s: "Bob" not in users_named(s))
        assert sorted(users_named(snapshot)) == ["Alice", "Carol"]
        assert list(wait_same_map(alice, server)) == list(snapshot)

    # Carol leaves: Alice is alone again.
    alice.cursor("Carol").wait_for(state="detached", timeout=MS)
    alice.page.wait_for_function(
        "document.querySelectorAll('#users li').length === 1", timeout=MS
    )
    assert alice.page.locator("#users li").all_text_contents() == ["Alice(you)"]
    final = wait_same_map(alice, server)
    assert list(final) == [alice.page.evaluate("wspractice.me")]
    assert final[alice.page.evaluate("wspractice.me")] == {
        "username": "Alice",
        "state": {"x": 120, "y": 340},
    }


# ---------------------------------------------------------------- leave, rename


def test_leave_removes_the_cursor_from_the_other_page_for_good(
    server: RunningServer, open_page: Callable[..., User]
) -> None:
    alice = open_page(page_url(server, "?username=Alice"))
    alice.wait_connected()
    sockets: list[str] = []
    bob = open_page(page_url(server), fake_clock=True)
    bob.page.on("websocket", lambda ws: sockets.append(ws.url))
    bob.page.fill("#username", "Bob")
    bob.page.click("button[type=submit]")
    bob.wait_connected()
    bob.page.mouse.move(200, 150)
    alice.wait_cursor_at("Bob", 200, 150)

    bob.page.click("#leave")

    alice.cursor("Bob").wait_for(state="detached", timeout=MS)
    alice.page.wait_for_function(
        "document.querySelectorAll('#users li').length === 1", timeout=MS
    )
    assert alice.page.locator("#users li").all_text_contents() == ["Alice(you)"]
    # Bob's page is back at the form with his name in it, and stays there:
    # 20 s on its clock is more than any reconnection delay.
    bob.page.clock.run_for(20_000)
    assert bob.page.is_visible("#login") and not bob.page.is_visible("#session")
    assert bob.page.input_value("#username") == "Bob"
    assert bob.page.get_attribute("#status", "data-state") == "idle"
    assert bob.page.text_content("#status") == "You left"
    assert bob.page.locator("#users li").count() == 0
    assert len(sockets) == 1, sockets
    with join(server.url("/?username=Watcher")) as watcher:
        snapshot = recv_until(watcher, lambda s: "Watcher" in users_named(s))
    assert sorted(users_named(snapshot)) == ["Alice", "Watcher"]


def test_changing_name_shows_the_new_name_to_the_other_page(
    server: RunningServer, open_page: Callable[..., User]
) -> None:
    alice, bob = alice_sees_bob_at(server, open_page, 300, 250)
    old_id = bob.page.evaluate("wspractice.me")

    bob.page.click("#rename")
    assert bob.page.input_value("#username") == "Bob"
    bob.page.fill("#username", "Robert")
    bob.page.click("button[type=submit]")
    bob.wait_connected()
    assert bob.page.text_content("#status") == "Connected as Robert"

    bob.page.mouse.move(450, 200)
    alice.wait_cursor_at("Robert", 450, 200)
    assert alice.cursor("Bob").count() == 0
    assert alice.page.locator(".cursor").count() == 1
    alice.page.wait_for_function(
        "[...document.querySelectorAll('#users li')].map(li => li.textContent)"
        ".join() === 'Alice(you),Robert'",
        timeout=MS,
    )
    # A new name is a new connection: a new user with a new uuid.
    new_id = alice.page.get_attribute(".cursor", "data-uuid")
    assert new_id not in (None, old_id)
    assert bob.page.text_content("#ws-url") == (
        f"ws://127.0.0.1:{server.port}/?username=Robert"
    )


# ---------------------------------------------------------------- URL and hints


def test_page_shows_the_websocket_url_it_uses_and_the_developer_tools(
    server: RunningServer, open_page: Callable[..., User]
) -> None:
    sockets: list[str] = []
    user = open_page(page_url(server))
    user.page.on("websocket", lambda ws: sockets.append(ws.url))
    assert not user.page.is_visible("#session")
    user.page.fill("#username", "Ada Lovelace")
    user.page.click("button[type=submit]")
    user.wait_connected()

    url = f"ws://127.0.0.1:{server.port}/?username=Ada%20Lovelace"
    assert user.page.text_content("#ws-url") == url
    assert sockets == [url]
    hint = " ".join(user.page.text_content("#session .devtools").split())
    assert hint == (
        "To watch every message, open the developer tools (F12), choose the"
        " Network tab, select this WebSocket and open its messages."
    )


# The page's own colour function, then every hue's label drawn as the page
# draws it: [hue, label text colour, label background colour] for each.
LABEL_COLOURS = """() => {
    const layer = document.getElementById("cursors");
    const rows = [];
    for (let hue = 0; hue < 360; hue++) {
        const uuid = hue.toString(16).padStart(8, "0") + "-0000-4000-8000-000000000000";
        const el = document.createElement("div");
        el.className = "cursor";
        el.style.setProperty("--colour", wspractice.colourOf(uuid));
        const label = document.createElement("span");
        label.className = "label";
        label.textContent = "Ada";
        el.append(label);
        layer.append(el);
        const style = getComputedStyle(label);
        rows.push([hue, style.color, style.backgroundColor]);
        el.remove();
    }
    return rows;
}"""


def rgb(css: str) -> tuple[int, int, int]:
    """``rgb(1, 2, 3)`` (as getComputedStyle serializes a colour) as a tuple."""
    assert css.startswith("rgb(") and css.endswith(")"), css
    r, g, b = (int(part) for part in css[4:-1].split(","))
    return r, g, b


def contrast(first: tuple[int, int, int], second: tuple[int, int, int]) -> float:
    """WCAG 2's contrast ratio, from the relative luminance of each colour."""

    def luminance(colour: tuple[int, int, int]) -> float:
        r, g, b = (
            c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4
            for c in (value / 255 for value in colour)
        )
        return 0.2126 * r + 0.7152 * g + 0.0722 * b

    light, dark = sorted((luminance(first), luminance(second)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def test_contrast_formula_matches_wcag_examples() -> None:
    assert contrast((0, 0, 0), (255, 255, 255)) == pytest.approx(21)
    assert contrast((255, 255, 255), (255, 255, 255)) == pytest.approx(1)
    # The old label colour at hue 60, hsl(60 70% 42%): far below AA.
    assert contrast((255, 255, 255), (182, 182, 32)) == pytest.approx(2.16, abs=0.01)


def test_every_name_label_meets_wcag_aa_contrast(
    server: RunningServer, open_page: Callable[..., User]
) -> None:
    user = open_page(page_url(server))
    rows = user.page.evaluate(LABEL_COLOURS)
    assert [hue for hue, _, _ in rows] == list(range(360))
    ratios = {
        hue: contrast(rgb(text), rgb(background)) for hue, text, background in rows
    }
    worst = min(ratios, key=ratios.__getitem__)
    assert ratios[worst] >= 4.5, (worst, rows[worst])
    # Each hue still has a colour of its own.
    assert len({background for _, _, background in rows}) > 300


# ---------------------------------------------------------------- status


def test_error_reply_shows_in_the_status_line_and_changes_nothing(
    server: RunningServer, open_page: Callable[..., User]
) -> None:
    alice, bob = alice_sees_bob_at(server, open_page, 400, 300)

    alice.page.evaluate("wspractice.send('hello')")

    status = alice.page.locator("#status.has-error")
    status.wait_for(timeout=MS)
    assert status.text_content() == (
        "Connected as Alice. The server says: message is not valid JSON:"
        " Expecting value: line 1 column 1 (char 0)"
    )
    assert alice.page.get_attribute("#status", "data-state") == "open"
    assert alice.page.locator("#users li").all_text_contents() == [
        "Alice(you)",
        "Bob",
    ]
    assert alice.cursor_at("Bob") == (400, 300)


def test_invalid_username_is_refused_before_connecting(
    server: RunningServer, open_page: Callable[..., User]
) -> None:
    sockets: list[str] = []
    user = open_page(page_url(server))
    user.page.on("websocket", lambda ws: sockets.append(ws.url))
    user.page.goto(page_url(server, "?username=" + "x" * 65))
    error = user.page.locator("#login-error")
    error.wait_for(timeout=MS)
    assert error.text_content() == "A username has at most 64 characters."
    assert user.page.is_visible("#login")
    assert sockets == []


def test_page_reconnects_after_a_server_restart(
    start_server: Callable[..., RunningServer], open_page: Callable[..., User]
) -> None:
    first = start_server()
    port = first.port
    alice = open_page(page_url(first, "?username=Alice"), expect_errors=True)
    alice.wait_connected()
    alice.page.mouse.move(222, 111)
    with join(first.url("/?username=Watcher")) as watcher:
        recv_until(
            watcher, lambda s: users_named(s).get("Alice") == {"x": 222, "y": 111}
        )

    first.stop()
    alice.page.wait_for_selector("#status[data-state=closed]", timeout=MS)
    assert alice.page.text_content("#status").startswith(
        "Disconnected (closed with 1001: server shutting down). Reconnecting in"
    )
    assert alice.page.locator("#users li").count() == 0

    second = start_server(port=port)
    alice.page.wait_for_selector("#status[data-state=open]", timeout=3 * MS)
    # Back with a new uuid, and the last position is sent again at once.
    with join(second.url("/?username=Watcher")) as watcher:
        snapshot = recv_until(
            watcher, lambda s: users_named(s).get("Alice") == {"x": 222, "y": 111}
        )
    assert sorted(users_named(snapshot)) == ["Alice", "Watcher"]
    # While the server was down, the page said so; those errors are expected.
    assert all("WebSocket" in error for error in alice.errors), alice.errors


# ---------------------------------------------------------------- docs


def test_demo_page_with_three_users(
    server: RunningServer, open_page: Callable[..., User]
) -> None:
    """Three users and you. Writes docs/images/demo.png when asked to."""
    others = {"Ada": (180, 160), "Grace": (520, 240), "Linus": (330, 420)}
    with contextlib.ExitStack() as stack:
        for name, (x, y) in others.items():
            ws = stack.enter_context(join(server.url(f"/?username={name}")))
            ws.send(json.dumps({"x": x, "y": y}))
        you = open_page(page_url(server, "?username=You"))
        you.wait_connected()
        you.page.mouse.move(700, 500)
        for name, (x, y) in others.items():
            you.wait_cursor_at(name, x, y)
        assert you.page.locator("#users li").all_text_contents() == [
            "Ada",
            "Grace",
            "Linus",
            "You(you)",
        ]
        if os.environ.get("WSPRACTICE_SCREENSHOTS") == "1":
            DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
            you.page.screenshot(path=str(DOCS_IMAGES / "demo.png"))
