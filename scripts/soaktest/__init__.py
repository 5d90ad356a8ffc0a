"""Soak wspractice: thousands of hostile connections while measured clients move.

    python scripts/soak.py                          # 60 s, as written up
    python scripts/soak.py --duration 300 --connect-rate 80
    python scripts/soak.py --duration 5 -- --compression --max-message-size 8192

It starts the server as a subprocess (``python -m wspractice --port 0`` with
the arguments after ``--``), then for ``--duration`` seconds:

* ``--walkers`` well-behaved clients (the websockets library) each send their
  state ``--rate`` times a second, with a sequence number in it, and check
  every snapshot they receive: valid JSON of the tutorial's shape, nobody's
  sequence number ever going back, and in the end every walker's last update
  seen by every walker (a lost update is one that no later snapshot shows);
* hostile clients connect at ``--connect-rate`` a second, each of one kind:
  normal presence and echo sessions, abrupt resets (SO_LINGER 0), half-open
  ones (handshake, then silence), stalled readers (a tiny SO_RCVBUF, never
  read), oversize messages, garbage instead of HTTP, garbage frames, bad
  JSON, deeply nested JSON, binary messages, invalid UTF-8, message floods,
  refused handshakes, slowloris heads, bulky states (over --max-state-size:
  an error reply each, and 1008 after --max-bad-messages in a row) and
  crowds from one address (more connections than
  --max-connections-per-address: 429 with Retry-After beyond it). Each
  records what it saw: a close code, an HTTP status, a reset.

Every client connects from a source address of its own in 127.0.0.0/8 (Linux
routes all of it to loopback): each hostile client one of 127.1.0.0/16, each
crowd one of 127.2.0.0/16, each walker one of 127.3.0.0/16. So the server's
per-address limit refuses a crowd beyond it, and nobody else.

Then it closes its hostile connections, waits for the server to settle and
compares the server's threads, file descriptors and RSS (from /proc/PID)
with the baseline taken before the first hostile connection, and stops the
server with SIGTERM (the walkers must get 1001, the exit status must be 0).

Unless given after ``--``, the server runs with shorter timeouts than its
defaults, so that hostile connections cycle through them within the run:
``--handshake-timeout 2 --send-timeout 2 --close-timeout 1
--ping-interval 5 --ping-timeout 5``, and ``--max-connections-per-address 16``
(a crowd is 20 connections from one address). The report goes to stdout, progress
to stderr. Exit status: 0 if every check passed, 1 if one failed, 2 if the
server did not start.

The package: ``cli`` (the options, the server's start), ``run`` (the phases),
``walkers``, ``hostile`` (the kinds of hostile client and what each may see),
``rawclient`` (a raw connection over asyncio, on ``scripts/rawframes.py``),
``server`` (the server process and its log, run by ``scripts/serverproc.py``),
``watch`` (progress, this script's lag, the server's peak) and ``report`` (the
report and its checks).
"""
