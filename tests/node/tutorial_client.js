// The tutorial's stack on the client side: Node's `ws` library talks to
// wspractice the way the tutorial's React client does.
//
//   node tutorial_client.js ws://127.0.0.1:PORT?username=Node
//
// It sends {"x": 412, "y": 230}, then "hello" (not JSON), and prints one
// JSON line per event: {"snapshot": ...}, {"error": ...}, {"close": [code, reason]}.
"use strict";

const { WebSocket } = require("ws");

const ws = new WebSocket(process.argv[2]);
const print = (value) => process.stdout.write(JSON.stringify(value) + "\n");
let moved = false;

ws.on("open", () => ws.send(JSON.stringify({ x: 412, y: 230 })));

ws.on("message", (data, isBinary) => {
  const message = JSON.parse(data.toString());
  if (isBinary) {
    throw new Error("the server sent a binary message");
  }
  if (typeof message.error === "string") {
    print({ error: message.error });
    ws.close(1000, "done");
    return;
  }
  const states = Object.values(message).map((user) => user.state);
  if (!moved && states.some((state) => state.x === 412 && state.y === 230)) {
    moved = true;
    print({ snapshot: message });
    ws.send("hello");
  }
});

ws.on("close", (code, reason) => print({ close: [code, reason.toString()] }));
ws.on("error", (error) => {
  print({ failed: error.message });
  process.exitCode = 1;
});
