"""Benchmark wspractice side by side with peer servers that speak its protocol.

    python scripts/benchmark.py --quick      # a smoke test, under a minute
    python scripts/benchmark.py              # the full run (15 to 20 minutes)

Set up once, from the repository's root (the benchmark installs nothing):

    pip install -e . --group bench && npm ci --prefix scripts/bench

Every server is started fresh for every measurement, on a free port, and
driven by the Node load generator ``scripts/bench/loadgen.js`` (the ``ws``
package, several processes if needed). The driver reads each server's CPU
time and memory from ``/proc``; the generator reports its own CPU and event
loop delay, so a run shows whether the generator was the limit.

Servers (``--servers``): ``wspractice`` (this checkout, ``python -m
wspractice``, or every ``--variant``), ``tutorial`` (the Node tutorial: http
+ ws + uuid), ``websockets`` (the websockets library's threaded server),
``simple-websocket`` (behind Werkzeug's WSGI server) and
``websocket-server``. The peers live in ``scripts/bench/peers/``.

Variants (``--variant``, repeatable): wspractice from any checkout, with its
own arguments and environment, each a row of its own in every table, e.g.
this checkout against the commit before a change, or a mechanism switched
off for an ablation:

    --variant new --variant 'base root=/tmp/wsp-base'
    --variant on --variant 'off env=WSPRACTICE_ABLATE=gate'

Scenarios (``--scenarios``), each printed as a table with each server's
figures and their ratio to the reference (``÷ ref``: the server's figure
divided by the reference's; ``--reference``, by default the first variant):

  handshake  loops that open and close WebSockets: handshakes/s
  echo       clients on /echo with one message in flight: messages/s, RTT
  presence   N users sending their state R times a second: broadcast latency
             p50/p99, lost updates, snapshots/s and bytes/s delivered,
             server CPU per delivered snapshot (one run per --users value)
  join       N users connecting at once, C at a time: all accepted? how long?
  stall      one client that stops reading among N users: the others' p99
             with and without it, and the server's memory
  idle       N idle connections: server RSS per connection, all accepted?
  bigroom    (only when named) N connections of which a few move, with every
             client on full maps, on wspractice-delta, or half of each: what
             each kind of mover sees of its own and the others' moves, whether
             every client ends with the server's map, what a round costs

``--protocols full,delta`` also runs the presence scenario with every client
on the wspractice-delta subprotocol (changes only), in a table of its own
beside the full-map runs.

Results go to ``--output`` (default ``artifacts/bench-DATE``): results.json,
results.md (the tables), p99_latency_vs_users.png and, when wspractice-delta
ran, p99_full_vs_delta.png. See docs/benchmarks.md for the definitions.

The package: ``cli`` (options, the run), ``servers`` (variants, peers,
targets), ``needs`` (what must be installed), ``measure`` and ``generator``
(one measurement: a server started fresh, the load generator run against
it), ``stalled`` (a client that never reads), ``scenarios/`` (one module per
scenario: its runs and its table), ``records`` (the figures, as
dataclasses), ``table``, ``summary``, ``plot`` and ``report`` (the output),
``machine`` (versions and commits). The server process itself is run by
``scripts/serverproc.py`` and sampled by ``scripts/procstat.py``.
"""
