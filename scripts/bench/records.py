"""What one measurement found: a record per scenario, server and size.

Records are dataclasses; ``results.json`` holds them as plain objects with
the same field names (``Record.to_json`` / ``record_from_json``), so an
earlier run's file can be read back by ``--from-results``. Latency
summaries (``latency``, ``rtt``, ``handshake_time``, ``connect_times``) and
the generator's own report (``generator``) stay the JSON objects the load
generator wrote: ``{"count", "mean_ms", "p50_ms", "p90_ms", "p99_ms",
"p999_ms", "max_ms"}`` and ``{"cpu_cores", "workers", "loop_delay_p99_ms",
...}``; docs/benchmarks.md defines them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

#: A JSON object as the load generator wrote it.
JSON = dict[str, Any]

#: A presence run "collapsed" past this share of lost updates; bigger user
#: counts are then skipped for that server (unless --keep-going).
COLLAPSE_LOST_SHARE = 0.05


@dataclass
class Record:
    """The figures every measurement has: the server's side and the
    generator's, and how the run went."""

    scenario: str
    server: str
    params: JSON
    #: ok, errors (some connections failed), lossy (updates lost), failed
    #: (no figures) or skipped (not run).
    status: str = "ok"
    notes: list[str] = field(default_factory=list)
    #: The server process (from /proc), over the measured window.
    server_cpu_cores: float | None = None
    server_cpu_seconds: float | None = None
    server_rss_peak_kb: int | None = None
    server_log_tail: str | None = None
    #: The load generator's report on itself: CPU, workers, event-loop lag.
    generator: JSON | None = None
    generator_seconds: float | None = None
    generator_nice: int | None = None
    #: Its SCHED_RR priority, if it ran as a real-time process.
    generator_realtime: int | None = None
    #: Errors the generator saw, counted by message.
    errors: dict[str, int] = field(default_factory=dict)
    #: The machine's 1-minute load average at the end of the measured window
    #: (on a shared machine: how many others wanted the cores meanwhile).
    window_load: float | None = None
    #: Over the measured window, in cores: time the server's threads and the
    #: generator's were ready to run but waited for a CPU that others held.
    server_cpu_wait: float | None = None
    generator_cpu_wait: float | None = None

    @property
    def usable(self) -> bool:
        """Whether its figures may be compared (not failed, not skipped)."""
        return self.status not in ("failed", "skipped")

    def fail(self, note: str) -> None:
        self.status = "failed"
        self.notes.append(note)

    def flag(self, status: str, note: str) -> None:
        """Add a note; the status becomes ``status`` unless already worse."""
        self.notes.append(note)
        if self.status == "ok":
            self.status = status

    def to_json(self) -> JSON:
        return dataclasses.asdict(self)


@dataclass
class HandshakeRecord(Record):
    handshakes_per_second: float | None = None
    handshake_time: JSON | None = None
    failed: int | None = None


@dataclass
class EchoRecord(Record):
    messages_per_second: float | None = None
    rtt: JSON | None = None


@dataclass
class PresenceRecord(Record):
    """A presence run; the stall scenario's runs are presence runs too."""

    workers: int | None = None
    latency: JSON | None = None
    updates_sent: int | None = None
    updates_measured: int | None = None
    updates_lost: int | None = None
    lost_share: float | None = None
    snapshots_per_second: float | None = None
    bytes_per_second: float | None = None
    server_cpu_us_per_snapshot: float | None = None
    disconnects: int | None = None
    snapshots_without_own_entry: int | None = None
    stale_snapshots: int | None = None
    uuids_distinct: int | None = None
    connected: int | None = None
    connect_failed: int | None = None
    server_rss_start_kb: int | None = None
    server_rss_end_kb: int | None = None
    #: Stall scenario: whether the server let go of the stalled client.
    stalled_client_dropped: bool | None = None
    #: Set when the record is a copy of another run's (the stall baseline).
    reused: str | None = None
    #: A room run (wspractice-delta, the big room): the figures by kind of
    #: client, ``{"full": {...}, "delta": {...}}``, as the generator wrote
    #: them (``latency``, ``others_latency``, ``updates_lost``,
    #: ``others_lost``, ``most_messages``, ``messages``, ``bytes``...).
    room: JSON | None = None
    #: A room run: every client's map against the server's at the end
    #: (``delta_mismatches``, ``delta_unconverged``, ``full_unconverged``...).
    verify: JSON | None = None
    #: A room run: how long the room took to settle before the run
    #: (``{"settled", "waiting", "seconds"}``).
    settle: JSON | None = None

    @property
    def collapsed(self) -> bool:
        """Failed, or lost more than COLLAPSE_LOST_SHARE of its updates."""
        share = self.lost_share
        return self.status == "failed" or (
            share is not None and share > COLLAPSE_LOST_SHARE
        )


@dataclass
class SharedRecord(PresenceRecord):
    """A run of the shared scenario: one room over several processes."""

    processes: int | None = None
    #: The next user's updates as each user sees them (--peer-offset 1).
    peer_latency: JSON | None = None
    peer_updates_measured: int | None = None
    peer_updates_lost: int | None = None
    peer_pairs: int | None = None
    #: Pairs whose two users are on different processes.
    peer_pairs_crossing: int | None = None
    #: redis-server's CPU over the measured window.
    redis_cpu_seconds: float | None = None
    redis_cpu_cores: float | None = None
    #: In the tables' median rows: the lowest and highest p99 of the repeats.
    p99_range: str | None = None
    #: The machine's 1-minute load average when the run started (os.getloadavg):
    #: on a shared machine, what else was running.
    machine_load: float | None = None


@dataclass
class JoinRecord(Record):
    connected: int | None = None
    connect_failed: int | None = None
    connect_all_seconds: float | None = None
    connect_phase_seconds: float | None = None
    connect_times: JSON | None = None
    #: The generator while it connected: its CPU in cores and its loop lag.
    generator_connecting: JSON | None = None


@dataclass
class IdleRecord(Record):
    connected: int | None = None
    connect_failed: int | None = None
    still_open: int | None = None
    connect_all_seconds: float | None = None
    connect_phase_seconds: float | None = None
    generator_connecting: JSON | None = None
    server_rss_before_kb: int | None = None
    server_rss_after_kb: int | None = None
    rss_per_connection_kb: float | None = None


KINDS: dict[str, type[Record]] = {
    "handshake": HandshakeRecord,
    "echo": EchoRecord,
    "presence": PresenceRecord,
    "stall": PresenceRecord,
    "bigroom": PresenceRecord,
    "join": JoinRecord,
    "idle": IdleRecord,
    "shared": SharedRecord,
}


def record_from_json(data: JSON) -> Record:
    """A record read back from results.json (fields it does not know, from
    another version of the benchmark, are dropped)."""
    kind = KINDS.get(data.get("scenario", ""), Record)
    names = {f.name for f in dataclasses.fields(kind)}
    if "machine_load" in data and "machine_load" not in names:
        # Written before window_load had its name (the shared scenario's
        # machine_load, taken when its run starts, is another figure).
        data = {"window_load": data["machine_load"], **data}
    return kind(**{k: v for k, v in data.items() if k in names})


def round_or_none(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)
