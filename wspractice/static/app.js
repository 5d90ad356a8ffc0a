// wspractice demo page: live cursors over one WebSocket.
//
// This is the browser side of the Node tutorial, without React: it opens a
// WebSocket to ws://HOST:PORT/?username=NAME, sends the mouse position as
// {"x": ..., "y": ...} at most every 50 ms (the tutorial's message, unchanged),
// and draws the cursor of every other user from the map of users:
//
//   {"<uuid>": {"username": "Alex", "state": {"x": 412, "y": 230}}, ...}
//
// The tutorial's server sends that whole map after every change. This page
// asks for less, with the subprotocol "wspractice-delta" (RFC 6455 section
// 1.9): the server sends the whole map once, with our own uuid,
//
//   {"you": "<our uuid>", "users": {...the whole map...}}
//
// and after that only what changed, with empty parts left out:
//
//   {"joined": {"<uuid>": {"username": ..., "state": ...}},
//    "updated": {"<uuid>": <new state>}, "left": ["<uuid>"]}
//
// Applying each message in order to our copy of the map gives the server's
// map. Clients that offer no subprotocol (the tutorial's React client,
// Postman) still get the whole map every time, so they and this page can
// share a server. Read the file top to bottom: settings, the connection,
// what we send, what we receive, drawing.
//
// The page is loaded as a module (<script type="module">), so this file runs
// in strict mode after the HTML is parsed.

// ------------------------------------------------------------ settings

// The tutorial throttles sendJsonMessage with lodash's throttle(..., 50):
// at most one message every 50 ms, that is 20 per second.
const THROTTLE_MS = 50;

// Reconnecting: wait 0.5 s after the first failure, then twice as long after
// each failure in a row, up to 10 s. Each wait is shortened by a random part
// (jitter), so that a hundred pages do not all come back at the same moment
// after a server restart.
const BACKOFF_FIRST_MS = 500;
const BACKOFF_MAX_MS = 10_000;

// Cursors glide toward their latest position instead of jumping 20 times a
// second: each animation frame covers most of the remaining distance.
// A smaller number means snappier, a larger one smoother.
const SMOOTHING_MS = 60;

// Names are drawn in white on each user's colour. WCAG 2 level AA asks for
// a contrast ratio of at least 4.5:1 between text and its background, so
// every colour is made dark enough for that (see colourOf below).
const MIN_LABEL_CONTRAST = 4.5;

// The subprotocol this page offers: changes only, after a first whole map.
const DELTA_SUBPROTOCOL = "wspractice-delta";

// The server's rules for a username (see the README): 1 to 64 characters,
// no control characters. Checked here too, so that a bad name gets a clear
// message instead of an endless reconnect loop.
const MAX_USERNAME_LENGTH = 64;

// ------------------------------------------------------------ the page

const statusEl = document.getElementById("status");
const usersEl = document.getElementById("users");
const loginForm = document.getElementById("login");
const usernameInput = document.getElementById("username");
const loginError = document.getElementById("login-error");
const hintEl = document.getElementById("hint");
const cursorsEl = document.getElementById("cursors");
const sessionEl = document.getElementById("session");
const wsUrlEl = document.getElementById("ws-url");
const wsProtocolEl = document.getElementById("ws-protocol");
const myUuidEl = document.getElementById("my-uuid");
const renameButton = document.getElementById("rename");
const leaveButton = document.getElementById("leave");

// Show where the connection stands. data-state is what the CSS (and the
// tests) look at: "idle", "connecting", "open" or "closed".
function setStatus(state, text) {
  statusEl.dataset.state = state;
  statusEl.textContent = text;
  statusEl.classList.remove("has-error");
}

// The server answers a bad message with {"error": "..."} to its sender
// alone. Show it, but stay connected: nothing else changed.
function showServerError(text) {
  statusEl.textContent = `Connected as ${username}. The server says: ${text}`;
  statusEl.classList.add("has-error");
}

// ------------------------------------------------------------ the connection

let username = null; // chosen in the form (or given as ?username=)
let socket = null; // the open (or opening) WebSocket, or null
let users = {}; // our copy of the server's map: uuid -> {username, state}
let myId = null; // our uuid, from the server's first message
let failures = 0; // connection attempts that failed in a row
let reconnectTimer = null;

// The page talks to the server it came from: same host and port, and
// wss:// when the page itself came over https://.
function socketUrl(name) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/?username=${encodeURIComponent(name)}`;
}

function connect() {
  reconnectTimer = null;
  setStatus("connecting", `Connecting as ${username}…`);
  // The second argument lists the subprotocols we speak, sent as the
  // Sec-WebSocket-Protocol header; the server picks one (or none) in its
  // 101, and ws.protocol says which once the socket is open.
  const ws = new WebSocket(socketUrl(username), [DELTA_SUBPROTOCOL]);
  socket = ws;
  forgetUsers();

  ws.addEventListener("open", () => {
    failures = 0;
    setStatus("open", `Connected as ${username}`);
    wsProtocolEl.textContent = ws.protocol || "none (the whole map every time)";
    // After a reconnect, tell the others where our cursor is right away.
    if (position !== null) {
      scheduleSend();
    }
  });

  // Every message is the whole map, a change to it, or an error reply.
  ws.addEventListener("message", (event) => {
    if (socket === ws) {
      handleMessage(ws, event.data);
    }
  });

  // "close" always follows "error", so it is the one place to clean up.
  ws.addEventListener("close", (event) => {
    if (socket !== ws) {
      return;
    }
    socket = null;
    forgetUsers();
    scheduleReconnect(event);
  });
}

function scheduleReconnect(event) {
  failures += 1;
  const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** (failures - 1));
  const delay = ceiling / 2 + (Math.random() * ceiling) / 2;
  // 1006 means "no close frame": the server is down, unreachable, or it
  // refused the handshake (browsers do not show us the HTTP status).
  const why =
    event.code === 1006
      ? "no connection"
      : `closed with ${event.code}${event.reason ? ": " + event.reason : ""}`;
  setStatus("closed", `Disconnected (${why}). Reconnecting in ${(delay / 1000).toFixed(1)} s…`);
  reconnectTimer = setTimeout(connect, delay);
}

// ------------------------------------------------------------ what we send

let position = null; // the latest mouse position, {x, y}
let lastSentAt = -Infinity; // performance.now() of our last message
let sendTimer = null; // a send is scheduled

// Like the tutorial, send clientX and clientY: pixels from the top left
// corner of the window.
window.addEventListener("pointermove", (event) => {
  position = { x: Math.round(event.clientX), y: Math.round(event.clientY) };
  scheduleSend();
});

// A throttle with a trailing send: the first move goes out at once, and
// moves within the next 50 ms are folded into one message sent when the
// 50 ms are over, so the last position is never lost.
function scheduleSend() {
  if (sendTimer !== null) {
    return;
  }
  const wait = Math.max(0, lastSentAt + THROTTLE_MS - performance.now());
  sendTimer = setTimeout(sendPosition, wait);
}

function sendPosition() {
  sendTimer = null;
  if (socket === null || socket.readyState !== WebSocket.OPEN || position === null) {
    return; // "open" sends the position once we are connected again
  }
  socket.send(JSON.stringify(position));
  lastSentAt = performance.now();
}

// ------------------------------------------------------------ what we receive

function handleMessage(ws, text) {
  let message;
  try {
    message = JSON.parse(text);
  } catch {
    showServerError("(a message that is not JSON)");
    return;
  }
  // An error reply has one key, "error", whose value is a string. It goes to
  // us alone, at once, so it may even come before the first map.
  if (
    message !== null &&
    typeof message.error === "string" &&
    Object.keys(message).length === 1
  ) {
    showServerError(message.error);
    return;
  }
  if (ws.protocol === DELTA_SUBPROTOCOL) {
    applyChanges(message);
  } else {
    // No subprotocol: the tutorial's format, the whole map every time. It
    // has no room for our uuid, so we cannot tell ourselves apart and draw
    // every user, as the tutorial's React client does.
    users = message;
  }
  renderUserList(users);
  updateCursors(users);
}

// The wspractice-delta subprotocol, applied to our copy of the map.
function applyChanges(message) {
  if (typeof message.you === "string") {
    // The first message: who we are, and everyone (us included).
    myId = message.you;
    myUuidEl.textContent = myId;
    users = message.users;
    return;
  }
  // Then one message per change (or several changes merged): newcomers in
  // the order they joined, the newest state of whoever moved, who left.
  for (const [id, user] of Object.entries(message.joined ?? {})) {
    users[id] = user;
  }
  for (const [id, state] of Object.entries(message.updated ?? {})) {
    users[id].state = state;
  }
  for (const id of message.left ?? []) {
    delete users[id];
  }
}

// Not connected: nobody to show, and we will get a new uuid next time.
function forgetUsers() {
  users = {};
  myId = null;
  myUuidEl.textContent = "…";
  wsProtocolEl.textContent = "…";
  removeAllCursors();
  renderUserList(users);
}

// ------------------------------------------------------------ drawing

// A colour per user, from their uuid: the same user has the same colour on
// every screen, and it does not change when they move. The hue comes from
// the uuid; the shade is hsl(hue 70% 42%), darkened one step at a time
// until white text on it has a contrast of at least 4.5:1. Blues, purples
// and reds pass as they are; yellows, greens and cyans, which look lighter
// at the same lightness, come out darker.
const colours = new Map(); // hue -> "rgb(r g b)", worked out once per hue

function colourOf(uuid) {
  const hue = parseInt(uuid.replaceAll("-", "").slice(0, 8), 16) % 360;
  let colour = colours.get(hue);
  if (colour === undefined) {
    let lightness = 0.42;
    let rgb = hslToRgb(hue, 0.7, lightness);
    while (contrastRatio(rgb, [255, 255, 255]) < MIN_LABEL_CONTRAST) {
      lightness -= 0.01;
      rgb = hslToRgb(hue, 0.7, lightness);
    }
    colour = `rgb(${rgb.join(" ")})`;
    colours.set(hue, colour);
  }
  return colour;
}

// CSS's hsl() in sRGB, rounded to what the screen shows: [r, g, b], 0-255.
// (The formula is the one in the CSS Color specification.)
function hslToRgb(hue, saturation, lightness) {
  const a = saturation * Math.min(lightness, 1 - lightness);
  const channel = (n) => {
    const k = (n + hue / 30) % 12;
    return Math.round(255 * (lightness - a * Math.max(-1, Math.min(k - 3, 9 - k, 1))));
  };
  return [channel(0), channel(8), channel(4)];
}

// WCAG 2's contrast ratio of two sRGB colours: from 1 (the same) to 21
// (black on white), through each colour's relative luminance.
function contrastRatio(first, second) {
  const luminance = (rgb) => {
    const [r, g, b] = rgb.map((value) => {
      const c = value / 255;
      return c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const [light, dark] = [luminance(first), luminance(second)].sort((x, y) => y - x);
  return (light + 0.05) / (dark + 0.05);
}

// The users online, in the order they joined. textContent, never innerHTML:
// a username is text typed by a stranger and must never become markup.
function renderUserList(users) {
  const items = Object.entries(users).map(([id, user]) => {
    const li = document.createElement("li");
    li.style.setProperty("--colour", colourOf(id));
    const dot = document.createElement("span");
    dot.className = "dot";
    const name = document.createElement("span");
    name.textContent = user.username;
    li.append(dot, name);
    if (id === myId) {
      const you = document.createElement("span");
      you.className = "you";
      you.textContent = "(you)";
      li.append(you);
    }
    return li;
  });
  usersEl.replaceChildren(...items);
}

// uuid -> { el, x, y, targetX, targetY }
const cursors = new Map();

function updateCursors(users) {
  for (const [id, user] of Object.entries(users)) {
    const { x, y } = user.state;
    // A new user's state is {} until their first move: nothing to draw yet.
    if (id === myId || !Number.isFinite(x) || !Number.isFinite(y)) {
      removeCursor(id);
      continue;
    }
    let cursor = cursors.get(id);
    if (cursor === undefined) {
      cursor = { el: createCursor(id, user.username), x, y, targetX: x, targetY: y };
      cursors.set(id, cursor);
      cursorsEl.append(cursor.el);
      place(cursor);
    }
    cursor.targetX = x;
    cursor.targetY = y;
    // Where the cursor is heading, for the curious (and the tests): compare
    // it in the developer tools with where the cursor is drawn.
    cursor.el.dataset.x = x;
    cursor.el.dataset.y = y;
  }
  // Users missing from the map have left: remove their cursors.
  for (const id of cursors.keys()) {
    if (!Object.hasOwn(users, id)) {
      removeCursor(id);
    }
  }
}

// <div class="cursor" data-uuid="..."><svg>arrow</svg><span class="label">name</span></div>
function createCursor(id, name) {
  const el = document.createElement("div");
  el.className = "cursor";
  el.dataset.uuid = id;
  el.style.setProperty("--colour", colourOf(id));

  const svgNs = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(svgNs, "svg");
  svg.setAttribute("viewBox", "0 0 20 24");
  const arrow = document.createElementNS(svgNs, "path");
  arrow.setAttribute("d", "M2 2 L2 20 L7 15.5 L10.5 22.5 L13.5 21 L10 14 L16.5 14 Z");
  svg.append(arrow);

  const label = document.createElement("span");
  label.className = "label";
  label.textContent = name; // text, never HTML
  el.append(svg, label);
  return el;
}

function removeCursor(id) {
  const cursor = cursors.get(id);
  if (cursor !== undefined) {
    cursor.el.remove();
    cursors.delete(id);
  }
}

function removeAllCursors() {
  for (const id of [...cursors.keys()]) {
    removeCursor(id);
  }
}

function place(cursor) {
  // The arrow's tip is 2 px into its box: shift it onto the exact point.
  cursor.el.style.transform = `translate(${cursor.x - 2}px, ${cursor.y - 2}px)`;
}

// The animation loop: once per screen refresh, move every cursor part of the
// way to its target. The fraction depends on the time since the last frame,
// so the motion looks the same at 30 or 144 frames per second.
let lastFrame = performance.now();
function animate(now) {
  const fraction = 1 - Math.exp(-(now - lastFrame) / SMOOTHING_MS);
  lastFrame = now;
  for (const cursor of cursors.values()) {
    const dx = cursor.targetX - cursor.x;
    const dy = cursor.targetY - cursor.y;
    if (Math.abs(dx) < 0.5 && Math.abs(dy) < 0.5) {
      if (dx === 0 && dy === 0) {
        continue;
      }
      cursor.x = cursor.targetX; // close enough: land exactly
      cursor.y = cursor.targetY;
    } else {
      cursor.x += dx * fraction;
      cursor.y += dy * fraction;
    }
    place(cursor);
  }
  requestAnimationFrame(animate);
}
requestAnimationFrame(animate);

// ------------------------------------------------------------ joining

// A username the server will accept, or a message saying what is wrong.
function checkUsername(name) {
  const length = [...name].length; // characters, not UTF-16 units
  if (length === 0) {
    return "Please enter a username.";
  }
  if (length > MAX_USERNAME_LENGTH) {
    return `A username has at most ${MAX_USERNAME_LENGTH} characters.`;
  }
  if (/\p{Cc}/u.test(name)) {
    return "A username cannot contain control characters.";
  }
  return null;
}

function join(name) {
  const problem = checkUsername(name);
  if (problem !== null) {
    loginError.textContent = problem;
    loginError.hidden = false;
    return;
  }
  username = name;
  try {
    localStorage.setItem("wspractice.username", name);
  } catch {
    // Storage may be disabled; the name is only a convenience.
  }
  loginForm.hidden = true;
  loginError.hidden = true;
  hintEl.hidden = false;
  // The URL this page opens its WebSocket to, for you to try elsewhere
  // (Postman, python -m wspractice.client) or to find in the developer tools.
  wsUrlEl.textContent = socketUrl(name);
  sessionEl.hidden = false;
  connect();
}

// Leaving closes the WebSocket with 1000 (normal closure): the server
// removes our user and sends everyone a map without us. The server knows a
// user by the name in the URL the connection was opened with, and the
// tutorial's wire format has no message to rename one, so changing name is
// leaving and joining again: a new connection, a new user, a new uuid.
function leave(statusText) {
  const ws = socket;
  socket = null; // the "close" listener ignores a socket that is not current
  clearTimeout(reconnectTimer);
  reconnectTimer = null;
  clearTimeout(sendTimer);
  sendTimer = null;
  failures = 0;
  if (ws !== null) {
    ws.close(1000, "left the page");
  }
  const name = username;
  username = null;
  forgetUsers();
  setStatus("idle", statusText);
  sessionEl.hidden = true;
  hintEl.hidden = true;
  loginForm.hidden = false;
  usernameInput.value = name ?? "";
  // Forget ?username=NAME, so that reloading the page does not join again.
  if (new URLSearchParams(location.search).has("username")) {
    history.replaceState(null, "", location.pathname);
  }
}

leaveButton.addEventListener("click", () => {
  leave("You left");
  usernameInput.focus();
});

renameButton.addEventListener("click", () => {
  leave("Pick a new name");
  usernameInput.focus();
  usernameInput.select();
});

loginForm.addEventListener("submit", (event) => {
  event.preventDefault(); // we connect from here; no page load
  join(usernameInput.value.trim());
});

// http://HOST:PORT/?username=Alex joins at once, like the WebSocket URL.
const given = new URLSearchParams(location.search).get("username");
if (given !== null) {
  join(given);
} else {
  try {
    usernameInput.value = localStorage.getItem("wspractice.username") ?? "";
  } catch {
    // No storage: start with an empty field.
  }
  usernameInput.focus();
}

// For the curious, in the browser's developer console:
//   wspractice.send("hello")     sends any text (try it: an error reply)
//   wspractice.socket            the WebSocket object (.protocol: the subprotocol)
//   wspractice.me                our uuid, once the server has said it
//   wspractice.users             our copy of the map of users
//   wspractice.colourOf(uuid)    the colour that user is drawn in
window.wspractice = {
  colourOf,
  send(text) {
    if (socket === null || socket.readyState !== WebSocket.OPEN) {
      throw new Error("not connected");
    }
    socket.send(text);
  },
  get socket() {
    return socket;
  },
  get me() {
    return myId;
  },
  get users() {
    return users;
  },
};
