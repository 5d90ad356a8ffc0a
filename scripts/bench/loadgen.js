#!/usr/bin/env node
// Load generator for the wspractice benchmark (driven by scripts/benchmark.py,
// usable on its own against any server that speaks the presence protocol).
//
//   node scripts/bench/loadgen.js SCENARIO --url ws://127.0.0.1:8000 [options]
//
// Scenarios:
//   presence   N users, each sends its state R times a second and reads every
//              snapshot; broadcast latency, lost updates, snapshots/s, bytes/s
//   room       N users of which M move, on full maps or wspractice-delta
//              (changes only); the presence figures by kind of client, what
//              each mover sees of the others, and at the end whether every
//              client holds the server's map (see "room" below)
//   echo       N clients on /echo, each with W messages of B bytes in flight;
//              messages/s and round trip
//   handshake  C loops that open a WebSocket, wait for it, close it, repeat;
//              handshakes/s and handshake time
//   idle       N connections that do nothing; the driver measures server RSS
//
// The output is JSON lines on stdout: {"event": "connected"}, then
// {"event": "measure_start"} and {"event": "measure_end"} (the driver samples
// the server's CPU and memory at those moments), then one {"event": "result"}.
// Human-readable progress goes to stderr.
//
// The generator runs in several processes (--workers) forked from this one;
// each worker owns a slice of the clients. Every clock is monotonic
// (process.hrtime), which is one clock for all processes on the machine, so
// the coordinator can give every worker the same start time.
//
// Broadcast latency, fair to servers that coalesce snapshots: for an update
// with sequence number s sent at time t by client c, the latency is the time
// of the first snapshot received by c whose entry for c carries a sequence
// number >= s, minus t. An update for which no such snapshot arrives before
// the end of the run plus the grace period is lost. Every client sends and
// receives, so every client measures.
//
// To keep up with thousands of snapshots a second, a client never parses a
// snapshot as JSON. Its state is {"s":SEQ,"x":X,"y":Y} and its username is
// unique, so its own entry contains the bytes
//     "username":"u17","state":{"s":
// followed by its last sequence number: one Buffer.indexOf (started near
// where the entry was last time) and a few digits to read. The uuid before
// that entry is checked once, so the harness also sees that every
// connection got its own uuid.

'use strict'

const { fork } = require('child_process')
const { monitorEventLoopDelay } = require('perf_hooks')
const WebSocket = require('ws')

// ------------------------------------------------------------------ helpers

/** Milliseconds on the machine's monotonic clock (the same in every process). */
function now () {
  const [s, ns] = process.hrtime()
  return s * 1e3 + ns / 1e6
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * A latency histogram with logarithmic buckets 1% wide, from 1 µs up.
 * Histograms from several workers add up (percentiles would not).
 */
class Histogram {
  static BASE = 1.01
  static LOG_BASE = Math.log(Histogram.BASE)
  static SIZE = 2400 // 1.01^2400 µs is about 21 million seconds

  constructor () {
    this.counts = new Float64Array(Histogram.SIZE)
    this.count = 0
    this.sum = 0
    this.min = Infinity
    this.max = 0
  }

  /** Record a value in milliseconds. */
  record (ms) {
    const us = Math.max(ms * 1000, 1)
    const i = Math.min(Histogram.SIZE - 1, Math.floor(Math.log(us) / Histogram.LOG_BASE))
    this.counts[i] += 1
    this.count += 1
    this.sum += ms
    if (ms < this.min) this.min = ms
    if (ms > this.max) this.max = ms
  }

  /** A compact form for IPC: only the buckets in use. */
  toJSON () {
    const buckets = []
    for (let i = 0; i < Histogram.SIZE; i++) {
      if (this.counts[i]) buckets.push([i, this.counts[i]])
    }
    return { buckets, count: this.count, sum: this.sum, min: this.min, max: this.max }
  }

  add (json) {
    for (const [i, n] of json.buckets) this.counts[i] += n
    this.count += json.count
    this.sum += json.sum
    if (json.count) {
      this.min = Math.min(this.min, json.min)
      this.max = Math.max(this.max, json.max)
    }
  }

  /** The p-th percentile in milliseconds (bucket midpoint, within 0.5%). */
  percentile (p) {
    if (!this.count) return null
    const target = Math.max(1, Math.ceil((p / 100) * this.count))
    let seen = 0
    for (let i = 0; i < Histogram.SIZE; i++) {
      seen += this.counts[i]
      if (seen >= target) {
        const mid = Math.pow(Histogram.BASE, i + 0.5) / 1000
        return Math.min(this.max, Math.max(this.min, mid))
      }
    }
    return this.max
  }

  summary () {
    if (!this.count) return { count: 0 }
    const r = (x) => Math.round(x * 1000) / 1000
    return {
      count: this.count,
      mean_ms: r(this.sum / this.count),
      p50_ms: r(this.percentile(50)),
      p90_ms: r(this.percentile(90)),
      p99_ms: r(this.percentile(99)),
      p999_ms: r(this.percentile(99.9)),
      max_ms: r(this.max)
    }
  }
}

/** Count of errors by message, so a thousand identical errors print once. */
class ErrorCounts {
  constructor () { this.counts = {} }
  add (what) {
    const key = String(what).slice(0, 200)
    this.counts[key] = (this.counts[key] || 0) + 1
  }

  total () { return Object.values(this.counts).reduce((a, b) => a + b, 0) }
  merge (counts) {
    for (const [k, n] of Object.entries(counts)) this.counts[k] = (this.counts[k] || 0) + n
  }
}

/** What every client connection is opened with. */
function wsOptions (cfg) {
  return {
    perMessageDeflate: false, // measure the protocol, not zlib
    skipUTF8Validation: true, // the generator trusts the server's UTF-8
    handshakeTimeout: cfg.connectTimeout * 1000,
    maxPayload: 256 * 1024 * 1024
  }
}

/**
 * Open `count` connections, at most `concurrency` at a time.
 * `make(i)` returns a not yet opened WebSocket for client i.
 * Resolves when every attempt has opened or failed; no attempt starts after
 * `deadline` (those not started count as failed).
 */
async function connectAll (count, concurrency, make, stats, deadline) {
  let next = 0
  const started = now()
  const one = () => new Promise((resolve) => {
    const i = next++
    const t = now()
    const ws = make(i)
    let settled = false
    const done = (ok, why) => {
      if (settled) return
      settled = true
      if (ok) {
        stats.connectTimes.record(now() - t)
        stats.connected += 1
        stats.lastOpen = now()
      } else {
        stats.failed += 1
        stats.errors.add(`connect: ${why}`)
      }
      resolve()
    }
    ws.once('open', () => done(true))
    ws.once('error', (err) => done(false, err.message || err.code))
    ws.once('close', (code) => done(false, `closed with ${code} before opening`))
  })
  const lanes = []
  for (let k = 0; k < Math.min(concurrency, count); k++) {
    lanes.push((async () => {
      while (next < count && now() < deadline) await one()
    })())
  }
  await Promise.all(lanes)
  if (next < count) {
    stats.failed += count - next
    stats.errors.counts['connect: not tried, the connect phase ran out of time'] = count - next
  }
  stats.connectSeconds = stats.connected ? (stats.lastOpen - started) / 1000 : null
  stats.phaseSeconds = (now() - started) / 1000
}

function newConnectStats () {
  return {
    connected: 0,
    failed: 0,
    connectTimes: new Histogram(),
    errors: new ErrorCounts(),
    lastOpen: 0,
    connectSeconds: null,
    phaseSeconds: 0
  }
}

// ------------------------------------------------------------------ presence

/** One simulated user of the presence app. */
class PresenceClient {
  constructor (worker, index, cfg) {
    this.worker = worker
    this.index = index // global index, unique across workers
    this.name = `u${index}`
    this.needle = Buffer.from(`"username":"${this.name}","state":{"s":`)
    this.nameOnly = Buffer.from(`"username":"${this.name}"`)
    this.hint = 0 // where the needle was found last time
    this.seq = 0 // last sequence number sent
    this.acked = 0 // highest sequence number seen in a snapshot
    // Send times by sequence number (index 0 unused).
    this.sentAt = new Float64Array(Math.ceil(cfg.rate * (cfg.warmup + cfg.duration)) + 16)
    this.firstMeasured = 0 // sequence numbers [firstMeasured, lastMeasured] count
    this.lastMeasured = -1
    this.uuid = null
    this.open = false
    this.ws = null
    // --peer-offset: another user whose updates this one also times.
    this.peer = null
    this.peerAcked = 0
    this.peerHint = 0
  }

  connect (url) {
    const ws = new WebSocket(`${url}/?username=${this.name}`, wsOptions(this.worker.cfg))
    this.ws = ws
    ws.on('open', () => { this.open = true })
    ws.on('message', (data, isBinary) => this.onMessage(data, isBinary))
    ws.on('error', (err) => this.worker.errors.add(`client: ${err.message || err.code}`))
    ws.on('close', (code) => {
      if (this.open && !this.worker.closing) {
        this.worker.errors.add(`server closed a client with ${code}`)
        this.worker.disconnects += 1
      }
      this.open = false
    })
    return ws
  }

  send (t) {
    if (!this.open || this.seq + 1 >= this.sentAt.length) return false
    const seq = ++this.seq
    this.sentAt[seq] = t
    const x = (this.index * 7 + seq * 13) % 1000
    const y = (this.index * 11 + seq * 17) % 1000
    this.ws.send(`{"s":${seq},"x":${x},"y":${y}}`)
    return true
  }

  onMessage (data, isBinary) {
    const w = this.worker
    const t = now()
    if (t >= w.winStart && t < w.winEnd) {
      w.snapshots += 1
      w.bytes += data.length
    }
    w.snapshotsTotal += 1
    if (isBinary) {
      w.errors.add('binary message from the server')
      return
    }
    if (this.peer !== null) this.onPeer(data, t)
    // Find our own entry: near where it was last time, else anywhere.
    const needle = this.needle
    let p = data.indexOf(needle, this.hint > 4096 ? this.hint - 4096 : 0)
    if (p < 0 && this.hint > 4096) p = data.indexOf(needle)
    if (p < 0) {
      const q = data.indexOf(this.nameOnly)
      if (q >= 0) {
        // Our entry with state {}: a snapshot from before our first update.
        if (this.uuid === null) this.learnUuid(data, q)
        if (this.acked > 0) w.stale += 1
      } else if (data.indexOf('{"error"') === 0) {
        w.errors.add(`error reply: ${data.toString().slice(0, 120)}`)
      } else if (this.acked > 0) {
        // We have seen our own update before, yet our entry is gone.
        w.missingSelf += 1
      }
      return
    }
    this.hint = p
    if (this.uuid === null) this.learnUuid(data, p)
    // Read the digits of our sequence number.
    let i = p + needle.length
    let seq = 0
    for (let c = data[i]; c >= 0x30 && c <= 0x39; c = data[++i]) seq = seq * 10 + (c - 0x30)
    if (seq < this.acked) w.stale += 1 // older than a snapshot we already had
    if (seq <= this.acked) return
    if (seq > this.seq) {
      w.errors.add('a snapshot carries a sequence number that was never sent')
      return
    }
    // Every update up to `seq` is now visible to us (fair to coalescing).
    const hist = w.latency
    for (let s = this.acked + 1; s <= seq; s++) {
      if (s >= this.firstMeasured && s <= this.lastMeasured) hist.record(t - this.sentAt[s])
    }
    this.acked = seq
  }

  /** --peer-offset: time the peer's updates as this client sees them. */
  onPeer (data, t) {
    const peer = this.peer
    const needle = peer.needle
    let p = data.indexOf(needle, this.peerHint > 4096 ? this.peerHint - 4096 : 0)
    if (p < 0 && this.peerHint > 4096) p = data.indexOf(needle)
    if (p < 0) return
    this.peerHint = p
    let i = p + needle.length
    let seq = 0
    for (let c = data[i]; c >= 0x30 && c <= 0x39; c = data[++i]) seq = seq * 10 + (c - 0x30)
    if (seq <= this.peerAcked || seq > peer.seq) return
    const hist = this.worker.peerLatency
    for (let s = this.peerAcked + 1; s <= seq; s++) {
      if (s >= peer.firstMeasured && s <= peer.lastMeasured) hist.record(t - peer.sentAt[s])
    }
    this.peerAcked = seq
  }

  get peerLost () {
    const peer = this.peer
    if (peer === null || peer.lastMeasured < peer.firstMeasured) return 0
    return Math.max(0, peer.lastMeasured - Math.max(this.peerAcked, peer.firstMeasured - 1))
  }

  /** The entry starts with "<uuid>":{ just before "username". */
  learnUuid (data, p) {
    const start = p - 40
    if (start < 0 || data[start] !== 0x22 || data[p - 3] !== 0x22) return
    const uuid = data.toString('latin1', start + 1, p - 3)
    if (/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/.test(uuid)) {
      this.uuid = uuid
    } else {
      this.worker.errors.add(`not a uuid4: ${uuid}`)
    }
  }

  get lost () {
    if (this.lastMeasured < this.firstMeasured) return 0
    return Math.max(0, this.lastMeasured - Math.max(this.acked, this.firstMeasured - 1))
  }
}

class PresenceWorker {
  constructor (cfg, from, to) {
    this.cfg = cfg
    this.clients = []
    for (let i = from; i < to; i++) this.clients.push(new PresenceClient(this, i, cfg))
    // --peer-offset K: client j also times client j + K of this worker.
    const n = this.clients.length
    this.peerCrossing = 0
    if (cfg.peerOffset > 0 && n > 1) {
      this.clients.forEach((c, j) => {
        c.peer = this.clients[(j + cfg.peerOffset) % n]
        if (c.peer.index % cfg.urls.length !== c.index % cfg.urls.length) this.peerCrossing++
      })
    }
    this.peerLatency = new Histogram()
    this.errors = new ErrorCounts()
    this.latency = new Histogram()
    this.sendLag = new Histogram()
    this.snapshots = 0
    this.bytes = 0
    this.snapshotsTotal = 0
    this.missingSelf = 0
    this.stale = 0
    this.disconnects = 0
    this.sent = 0
    this.closing = false
    this.winStart = Infinity
    this.winEnd = -Infinity
  }

  async connect (concurrency, deadline) {
    const stats = newConnectStats()
    const c = this.clients
    // Several --url values: client i connects to the (i mod count)th.
    const urls = this.cfg.urls
    await connectAll(c.length, concurrency, (i) => c[i].connect(urls[c[i].index % urls.length]), stats, deadline)
    this.errors.merge(stats.errors.counts)
    return stats
  }

  /** Send on schedule from t0, measure in the window, then wait for the stragglers. */
  async run (t0) {
    const cfg = this.cfg
    const period = 1000 / cfg.rate
    this.winStart = t0 + cfg.warmup * 1000
    this.winEnd = this.winStart + cfg.duration * 1000
    const order = this.schedule(period).sort((a, b) => a.offset - b.offset)
    if (cfg.rate > 0 && order.length) {
      let k = 0 // which period
      let j = 0 // next client in `order`
      await sleep(Math.max(0, t0 - now()))
      await new Promise((resolve) => {
        const tick = () => {
          const t = now()
          for (;;) {
            const due = t0 + order[j].offset + k * period
            if (due > t) break
            if (due >= this.winEnd) return resolve()
            const c = order[j].c
            if (c.send(t)) {
              this.sent += 1
              if (due >= this.winStart) {
                this.sendLag.record(t - due)
                if (c.firstMeasured === 0) c.firstMeasured = c.seq
                c.lastMeasured = c.seq
              }
            }
            if (++j === order.length) { j = 0; k++ }
          }
          const nextDue = t0 + order[j].offset + k * period
          setTimeout(tick, Math.max(0, nextDue - now()))
        }
        tick()
      })
    } else {
      await sleep(Math.max(0, this.winEnd - now()))
    }
    // Grace: wait for every measured update to show up, or give up.
    const deadline = this.winEnd + cfg.grace * 1000
    while (now() < deadline && this.waiting()) await sleep(20)
  }

  /**
   * The clients that send and when: client i sends at t0 + offset_i + k *
   * period, offsets spread evenly over one period across all users (of
   * every worker).
   */
  schedule (period) {
    return this.clients.map((c) => ({ c, offset: (c.index / this.cfg.users) * period }))
  }

  /** In the grace period: whether some measured update has not shown up yet. */
  waiting () {
    return this.clients.some((c) => c.open && (c.lost > 0 || c.peerLost > 0))
  }

  result () {
    let lost = 0
    let measured = 0
    let peerLost = 0
    let peerMeasured = 0
    let uuids = 0
    const distinct = new Set()
    for (const c of this.clients) {
      lost += c.lost
      if (c.lastMeasured >= c.firstMeasured && c.firstMeasured > 0) {
        measured += c.lastMeasured - c.firstMeasured + 1
      }
      if (c.uuid) { uuids += 1; distinct.add(c.uuid) }
      if (c.peer !== null) {
        peerLost += c.peerLost
        const p = c.peer
        if (p.lastMeasured >= p.firstMeasured && p.firstMeasured > 0) {
          peerMeasured += p.lastMeasured - p.firstMeasured + 1
        }
      }
    }
    return {
      latency: this.latency.toJSON(),
      peer_latency: this.peerLatency.toJSON(),
      peer_updates_measured: peerMeasured,
      peer_updates_lost: peerLost,
      peer_pairs: this.cfg.peerOffset > 0 ? this.clients.length : 0,
      peer_pairs_crossing: this.peerCrossing,
      send_lag: this.sendLag.toJSON(),
      updates_sent: this.sent,
      updates_measured: measured,
      updates_lost: lost,
      snapshots: this.snapshots,
      bytes: this.bytes,
      snapshots_total: this.snapshotsTotal,
      snapshots_without_own_entry: this.missingSelf,
      stale_snapshots: this.stale,
      disconnects: this.disconnects,
      uuids_learned: uuids,
      uuids: [...distinct],
      errors: this.errors.counts
    }
  }

  close () {
    this.closing = true
    for (const c of this.clients) if (c.ws) c.ws.terminate()
  }
}

// ------------------------------------------------------------------ echo

class EchoWorker {
  constructor (cfg, from, to) {
    this.cfg = cfg
    this.count = to - from
    this.sockets = []
    this.errors = new ErrorCounts()
    this.rtt = new Histogram()
    this.messages = 0
    this.bytes = 0
    this.disconnects = 0
    this.closing = false
  }

  async connect (concurrency, deadline) {
    const stats = newConnectStats()
    await connectAll(this.count, concurrency, (i) => {
      const ws = new WebSocket(`${this.cfg.url}/echo`, wsOptions(this.cfg))
      ws.on('error', (err) => this.errors.add(`client: ${err.message || err.code}`))
      this.sockets.push(ws)
      return ws
    }, stats, deadline)
    this.errors.merge(stats.errors.counts)
    return stats
  }

  async run (t0) {
    const cfg = this.cfg
    const winStart = t0 + cfg.warmup * 1000
    const winEnd = winStart + cfg.duration * 1000
    const payload = Buffer.alloc(cfg.size, 'e').toString()
    await sleep(Math.max(0, t0 - now()))
    const loops = this.sockets.filter((ws) => ws.readyState === WebSocket.OPEN).map((ws) =>
      new Promise((resolve) => {
        const inFlight = [] // send times, oldest first
        const sendOne = () => {
          inFlight.push(now())
          ws.send(payload)
        }
        ws.on('message', (data) => {
          const t = now()
          const sentAt = inFlight.shift()
          if (data.length !== cfg.size) this.errors.add(`echo of ${data.length} bytes`)
          if (sentAt >= winStart && sentAt < winEnd) {
            this.rtt.record(t - sentAt)
            this.messages += 1
            this.bytes += data.length
          }
          if (t < winEnd) sendOne()
          else if (!inFlight.length) resolve()
        })
        ws.on('close', (code) => {
          if (!this.closing) {
            this.errors.add(`server closed an echo client with ${code}`)
            this.disconnects += 1
          }
          resolve()
        })
        for (let k = 0; k < cfg.window; k++) sendOne()
        setTimeout(resolve, winEnd - now() + cfg.grace * 1000)
      }))
    await Promise.all(loops)
  }

  result () {
    return {
      rtt: this.rtt.toJSON(),
      messages: this.messages,
      bytes: this.bytes,
      disconnects: this.disconnects,
      errors: this.errors.counts
    }
  }

  close () {
    this.closing = true
    for (const ws of this.sockets) ws.terminate()
  }
}

// ------------------------------------------------------------------ handshake

class HandshakeWorker {
  constructor (cfg, from, to) {
    this.cfg = cfg
    this.loops = to - from
    this.errors = new ErrorCounts()
    this.times = new Histogram()
    this.handshakes = 0
    this.failed = 0
    this.live = new Set()
  }

  async connect () {
    return newConnectStats() // nothing to open in advance
  }

  async run (t0) {
    const cfg = this.cfg
    const winStart = t0 + cfg.warmup * 1000
    const winEnd = winStart + cfg.duration * 1000
    const url = `${cfg.url}${cfg.path}`
    await sleep(Math.max(0, t0 - now()))
    const loop = async () => {
      while (now() < winEnd) {
        await new Promise((resolve) => {
          const t = now()
          const ws = new WebSocket(url, wsOptions(cfg))
          this.live.add(ws)
          let opened = false
          ws.on('open', () => {
            opened = true
            const t1 = now()
            if (t >= winStart && t1 < winEnd) {
              this.times.record(t1 - t)
              this.handshakes += 1
            }
            ws.close(1000)
          })
          ws.on('error', (err) => {
            if (t >= winStart) this.failed += 1
            this.errors.add(`handshake: ${err.message || err.code}`)
          })
          ws.on('close', () => {
            this.live.delete(ws)
            // Do not spin on a server that refuses everything.
            setTimeout(resolve, opened ? 0 : 10)
          })
        })
      }
    }
    const loops = []
    for (let k = 0; k < this.loops; k++) loops.push(loop())
    await Promise.race([Promise.all(loops), sleep(winEnd - now() + cfg.grace * 1000)])
  }

  result () {
    return {
      times: this.times.toJSON(),
      handshakes: this.handshakes,
      failed: this.failed,
      errors: this.errors.counts
    }
  }

  close () {
    for (const ws of this.live) ws.terminate()
  }
}

// ------------------------------------------------------------------ idle

class IdleWorker {
  constructor (cfg, from, to) {
    this.cfg = cfg
    this.count = to - from
    this.sockets = []
    this.errors = new ErrorCounts()
    this.disconnects = 0
    this.closing = false
    this.from = from
  }

  async connect (concurrency, deadline) {
    const stats = newConnectStats()
    const path = this.cfg.path
    await connectAll(this.count, concurrency, (i) => {
      // A presence path gets a unique username per connection.
      const target = path === '/echo' ? path : `${path}${path.includes('?') ? '&' : '?'}username=i${this.from + i}`
      const ws = new WebSocket(`${this.cfg.url}${target}`, wsOptions(this.cfg))
      ws.on('error', (err) => this.errors.add(`client: ${err.message || err.code}`))
      ws.on('close', (code) => {
        // A failed handshake is counted by connectAll, not here.
        if (!this.closing && opened) {
          this.disconnects += 1
          this.errors.add(`server closed an idle client with ${code}`)
        }
      })
      let opened = false
      ws.once('open', () => { opened = true })
      this.sockets.push(ws)
      return ws
    }, stats, deadline)
    this.errors.merge(stats.errors.counts)
    return stats
  }

  async run (t0) {
    const cfg = this.cfg
    await sleep(Math.max(0, t0 + (cfg.warmup + cfg.duration) * 1000 - now()))
  }

  result () {
    const open = this.sockets.filter((ws) => ws.readyState === WebSocket.OPEN).length
    return { still_open: open, disconnects: this.disconnects, errors: this.errors.counts }
  }

  close () {
    this.closing = true
    for (const ws of this.sockets) ws.terminate()
  }
}

// ------------------------------------------------------------------ room: full maps and changes only

// A room of N users of which M move (--movers; the others connect and stay
// idle). Each client speaks either the tutorial's format (the whole map
// after every change) or wspractice-delta (RFC 6455 subprotocol: the map
// once, as {"you": uuid, "users": map}, then per round only
// {"joined": ..., "updated": ..., "left": [...]}); --delta-movers and
// --delta-idle say how many of the movers and of the idle users speak delta,
// spread evenly over the room.
//
// Latency has the presence scenario's definition. A delta client keeps the
// map it is building (it applies every message in order), and an update's
// latency is the time until the first message after which that applied map
// carries the update's sequence number or a later one. Each mover also
// watches up to --watch other movers of its own worker process: the time
// until it sees their updates, and how many of those it never saw.
//
// Before the run, the room settles: the run starts once every delta client's
// map holds every user and every full-map client has received the map of
// all of them (--settle-wait at most), so that the measured window does not
// carry the joins' first messages (settle: how long it took).
//
// At the end, after the grace period, one more client (the observer, on
// full maps, so that it works with any server) joins, sets its state once
// and takes the server's whole map from the first message that carries that
// state. Every delta client must then hold exactly that map once its own map
// carries the observer's state, and every full-map client's last message
// must be that map, byte for byte (map mismatches, and clients that had not
// caught up within --verify-wait seconds).
//
// A round sends the same bytes to every client of a kind, so the delta
// clients of a worker share one book: a number for each uuid and each
// distinct state, and the messages already parsed. A message equal byte for
// byte to one parsed before is not parsed again; the generator's cost then
// grows with what changed, not with the number of clients.

const DELTA_PROTOCOL = 'wspractice-delta'
const UUID4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/
const NO_OPS = []
// {"you":"<36 characters>","users": comes before the map in a welcome.
const WELCOME_HEAD = 54

/**
 * `k` of the indices 0..n-1, spread evenly: whether i is one of them.
 * Exactly k indices are; floor(i * k / n) is i's rank among them.
 */
function picked (i, n, k) {
  return Math.floor(((i + 1) * k) / n) > Math.floor((i * k) / n)
}

/** If the message is {"you":"<uuid>","users":MAP}: [uuid, MAP's bytes]. */
function splitWelcome (data) {
  const n = data.length
  if (n > WELCOME_HEAD + 1 &&
      data.toString('latin1', 0, 8) === '{"you":"' &&
      data.toString('latin1', 44, WELCOME_HEAD) === '","users":' &&
      data[n - 1] === 0x7d) {
    return [data.toString('latin1', 8, 44), data.subarray(WELCOME_HEAD, n - 1)]
  }
  return null
}

// Reading the server's JSON without JSON.parse. A merged delta (a client
// that fell behind) is different for every client, so it must be read once
// per client; JSON.parse and re-encoding every state cost about 0.8 ms for a
// delta of 300 users on this machine, enough to make the generator fall
// behind in turn. These functions walk the bytes of the compact JSON that
// servers write instead, and the book numbers each uuid and each state by
// its exact bytes (a hash, then a byte-for-byte comparison). A message that
// does not have the expected shape is an error ("a bad delta"); the
// server's whole map at the end is also read with JSON.parse, as a check.

const QUOTE = 0x22
const COLON = 0x3a
const COMMA = 0x2c
const OPEN = 0x7b // {
const CLOSE = 0x7d // }
const OPEN_LIST = 0x5b
const CLOSE_LIST = 0x5d
const BACKSLASH = 0x5c
const USERNAME = Buffer.from('{"username":')
const STATE = Buffer.from(',"state":')
const JOINED = Buffer.from('"joined":')
const UPDATED = Buffer.from('"updated":')
const LEFT = Buffer.from('"left":')
const SEQ = Buffer.from('{"s":')

function malformed (b, i, what) {
  const around = b.toString('latin1', Math.max(0, i - 30), Math.min(b.length, i + 30))
  throw new Error(`${what} at byte ${i} of ${b.length}: ...${around}...`)
}

function expect (b, i, byte, what) {
  if (b[i] !== byte) malformed(b, i, `expected ${what}`)
  return i + 1
}

/** Whether b holds `word` at i. */
function at (b, i, word) {
  if (i + word.length > b.length) return false
  for (let k = 0; k < word.length; k++) if (b[i + k] !== word[k]) return false
  return true
}

/** The index after the JSON string that starts at b[i] (a quote). */
function endOfString (b, i) {
  for (i++; i < b.length; i++) {
    const c = b[i]
    if (c === BACKSLASH) i++
    else if (c === QUOTE) return i + 1
  }
  return malformed(b, i, 'an unterminated string')
}

/** The index after the JSON value that starts at b[i]. */
function endOfValue (b, i) {
  const c = b[i]
  if (c === QUOTE) return endOfString(b, i)
  if (c === OPEN || c === OPEN_LIST) {
    let depth = 0
    for (; i < b.length; i++) {
      const d = b[i]
      if (d === QUOTE) i = endOfString(b, i) - 1
      else if (d === OPEN || d === OPEN_LIST) depth++
      else if ((d === CLOSE || d === CLOSE_LIST) && --depth === 0) return i + 1
    }
    return malformed(b, i, 'an unterminated value')
  }
  const start = i
  while (i < b.length && b[i] !== COMMA && b[i] !== CLOSE && b[i] !== CLOSE_LIST) i++
  if (i === start) malformed(b, i, 'a missing value')
  return i
}

/** Numbers for byte strings: the same bytes, the same number. */
class Interner {
  constructor () {
    this.byHash = new Map() // hash -> the first number with that hash
    this.byText = new Map() // latin1 text -> number, for the others
    this.keys = [] // number -> its bytes
    this.added = false // whether the last call gave a new number
  }

  of (b, s, e) {
    let h = 0x811c9dc5 // FNV-1a
    for (let i = s; i < e; i++) h = Math.imul(h ^ b[i], 0x01000193)
    const first = this.byHash.get(h)
    this.added = false
    if (first !== undefined) {
      const key = this.keys[first]
      if (key.length === e - s) {
        let same = true
        for (let k = 0; k < key.length; k++) {
          if (key[k] !== b[s + k]) { same = false; break }
        }
        if (same) return first
      }
    }
    const text = b.toString('latin1', s, e)
    let id = this.byText.get(text)
    if (id !== undefined) return id
    id = this.keys.length
    this.keys.push(Buffer.from(b.subarray(s, e)))
    this.byText.set(text, id)
    if (first === undefined) this.byHash.set(h, id)
    this.added = true
    return id
  }
}

/** What a worker's delta clients share: numbered users and states, messages read. */
class RoomBook {
  constructor () {
    this.userIds = new Interner()
    this.uuids = [] // user number -> uuid
    this.names = [] // user number -> username (once seen in a map or a join)
    this.byName = new Map() // username -> user number (the latest)
    this.stateIds = new Interner()
    this.stateSeqs = [] // state number -> its "s" (0 if it has none)
    this.deltas = new Map() // message length -> { buf, ops }
    this.welcomes = new Map() // map length -> { buf, users }
    this.parsed = 0 // messages read (the others were equal to one read before)
  }

  /** The number of the uuid in b[s, s + 36). */
  userAt (b, s) {
    const id = this.userIds.of(b, s, s + 36)
    if (this.userIds.added) {
      const uuid = b.toString('latin1', s, s + 36)
      if (!UUID4.test(uuid)) malformed(b, s, `not a uuid4 (${uuid})`)
      this.uuids.push(uuid)
      this.names.push(undefined)
    }
    return id
  }

  /** The number of a uuid given as a string. */
  user (uuid) {
    if (typeof uuid !== 'string' || uuid.length !== 36) throw new Error(`not a uuid4: ${uuid}`)
    return this.userAt(Buffer.from(uuid, 'latin1'), 0)
  }

  /** The number of the state in b[s, e). */
  stateAt (b, s, e) {
    const id = this.stateIds.of(b, s, e)
    if (this.stateIds.added) {
      let seq = 0
      if (at(b, s, SEQ)) {
        for (let i = s + SEQ.length, c = b[i]; c >= 0x30 && c <= 0x39; c = b[++i]) seq = seq * 10 + (c - 0x30)
      }
      this.stateSeqs.push(seq)
    }
    return id
  }

  /** The uuid at b[i] (a quote), into `flat`; the index after its closing quote. */
  uuidInto (b, i, flat) {
    const s = expect(b, i, QUOTE, 'a uuid')
    i = expect(b, s + 36, QUOTE, 'the end of a uuid')
    flat.push(this.userAt(b, s))
    return i
  }

  /**
   * A map {"<uuid>":{"username":NAME,"state":STATE},...} at b[i], into
   * `flat` as user, state, user, state...; the index after it.
   */
  mapInto (b, i, flat) {
    i = expect(b, i, OPEN, '{')
    if (b[i] === CLOSE) return i + 1
    for (;;) {
      i = this.uuidInto(b, i, flat)
      const id = flat[flat.length - 1]
      i = expect(b, i, COLON, ':')
      if (!at(b, i, USERNAME)) malformed(b, i, 'expected {"username":')
      const n = i + USERNAME.length
      i = endOfString(b, n)
      if (this.names[id] === undefined) {
        const name = JSON.parse(b.toString('utf8', n, i))
        this.names[id] = name
        this.byName.set(name, id)
      }
      if (!at(b, i, STATE)) malformed(b, i, 'expected ,"state":')
      const s = i + STATE.length
      i = endOfValue(b, s)
      flat.push(this.stateAt(b, s, i))
      i = expect(b, i, CLOSE, 'the end of an entry')
      if (b[i] !== COMMA) return expect(b, i, CLOSE, 'the end of the map')
      i += 1
    }
  }

  /** {"joined":{...},"updated":{...},"left":[...]} (each part at most once). */
  readDelta (b) {
    const ops = { joined: NO_OPS, updated: NO_OPS, left: NO_OPS, bad: null }
    let i = expect(b, 0, OPEN, '{')
    for (;;) {
      if (at(b, i, JOINED) && ops.joined === NO_OPS) {
        ops.joined = []
        i = this.mapInto(b, i + JOINED.length, ops.joined)
        if (!ops.joined.length) malformed(b, i, 'an empty "joined"')
      } else if (at(b, i, UPDATED) && ops.updated === NO_OPS) {
        const flat = (ops.updated = [])
        i = expect(b, i + UPDATED.length, OPEN, '{')
        for (;;) {
          i = this.uuidInto(b, i, flat)
          const s = expect(b, i, COLON, ':')
          i = endOfValue(b, s)
          flat.push(this.stateAt(b, s, i))
          if (b[i] !== COMMA) break
          i += 1
        }
        i = expect(b, i, CLOSE, 'the end of "updated"')
      } else if (at(b, i, LEFT) && ops.left === NO_OPS) {
        const flat = (ops.left = [])
        i = expect(b, i + LEFT.length, OPEN_LIST, '[')
        for (;;) {
          i = this.uuidInto(b, i, flat)
          if (b[i] !== COMMA) break
          i += 1
        }
        i = expect(b, i, CLOSE_LIST, 'the end of "left"')
      } else {
        malformed(b, i, 'expected "joined", "updated" or "left", once each')
      }
      if (b[i] !== COMMA) break
      i += 1
    }
    i = expect(b, i, CLOSE, 'the end of the message')
    if (i !== b.length) malformed(b, i, 'more after the message')
    return ops
  }

  /** A delta message's operations, read once per distinct message. */
  delta (data) {
    const hit = this.deltas.get(data.length)
    if (hit && hit.buf.equals(data)) return hit.ops
    let ops
    this.parsed += 1
    try {
      ops = this.readDelta(data)
    } catch (err) {
      ops = { bad: `a bad delta: ${err.message}` }
    }
    if (this.deltas.size >= 64) this.deltas.clear()
    this.deltas.set(data.length, { buf: data, ops })
    return ops
  }

  /** A welcome: { you, users: [user, state, ...] }; its map read once per round. */
  welcome (data) {
    try {
      const split = splitWelcome(data)
      if (split === null) throw new Error(`not {"you":…,"users":…}: ${data.toString().slice(0, 80)}`)
      const [you, map] = split
      const hit = this.welcomes.get(map.length)
      let users
      if (hit && hit.buf.equals(map)) {
        users = hit.users
      } else {
        this.parsed += 1
        users = []
        if (this.mapInto(map, 0, users) !== map.length) malformed(map, 0, 'more after the map')
        if (this.welcomes.size >= 64) this.welcomes.clear()
        this.welcomes.set(map.length, { buf: map, users })
      }
      return { you: this.user(you), users, bad: null }
    } catch (err) {
      return { bad: `a bad first message: ${err.message}` }
    }
  }
}

/** Record the latencies of `other`'s updates (seen..seq] into `hist`. */
function recordSeen (hist, other, seen, seq, t) {
  const from = Math.max(seen + 1, other.firstMeasured)
  const to = Math.min(seq, other.lastMeasured)
  for (let s = from; s <= to; s++) hist.record(t - other.sentAt[s])
}

/** Updates of the movers it watches that a mover never saw. */
function othersLost (c) {
  let lost = 0
  for (const wd of c.watched) {
    const o = wd.c
    if (o.lastMeasured >= o.firstMeasured && o.firstMeasured > 0) {
      lost += Math.max(0, o.lastMeasured - Math.max(wd.seen, o.firstMeasured - 1))
    }
  }
  return lost
}

/** A client on wspractice-delta: it applies what it is sent to its own map. */
class DeltaClient extends PresenceClient {
  constructor (worker, index, cfg) {
    super(worker, index, cfg)
    this.delta = true
    this.myId = -1
    this.map = null // Int32Array: user number -> state number, -1 if absent
    this.size = 0 // entries in the map
    this.broken = null // the first thing wrong with what it was sent
  }

  connect (url) {
    const ws = new WebSocket(`${url}/?username=${this.name}`, [DELTA_PROTOCOL], wsOptions(this.worker.cfg))
    this.ws = ws
    ws.on('open', () => {
      this.open = true
      if (ws.protocol !== DELTA_PROTOCOL) this.fail(`the server selected "${ws.protocol}"`)
    })
    ws.on('message', (data, isBinary) => this.onMessage(data, isBinary))
    ws.on('error', (err) => this.worker.errors.add(`client: ${err.message || err.code}`))
    ws.on('close', (code) => {
      if (this.open && !this.worker.closing) {
        this.worker.errors.add(`server closed a client with ${code}`)
        this.worker.disconnects += 1
      }
      this.open = false
    })
    return ws
  }

  fail (why) {
    if (this.broken) return
    this.broken = why
    this.worker.delta.broken += 1
    this.worker.errors.add(`delta: ${why}`)
  }

  onMessage (data, isBinary) {
    const w = this.worker
    const t = now()
    if (t >= w.winStart && t < w.winEnd) {
      w.delta.messages += 1
      w.delta.bytes += data.length
      this.windowMessages += 1
    }
    w.delta.messagesTotal += 1
    if (this.broken) return
    if (isBinary) return this.fail('a binary message')
    if (data.length > 9 && data[2] === 0x65 && data.indexOf('{"error"') === 0) {
      w.errors.add(`error reply: ${data.toString().slice(0, 120)}`)
      return
    }
    if (this.map === null) {
      const ops = w.book.welcome(data)
      if (ops.bad) return this.fail(ops.bad)
      this.welcome(ops)
    } else {
      const ops = w.book.delta(data)
      if (ops.bad) return this.fail(ops.bad)
      this.apply(ops)
    }
    if (this.broken) return
    if (this.seq > 0) this.checkOwn(t)
    if (this.watched.length) this.checkOthers(t)
  }

  welcome (ops) {
    const book = this.worker.book
    this.map = new Int32Array(Math.max(book.uuids.length, this.worker.cfg.clients + 64)).fill(-1)
    const u = ops.users
    for (let i = 0; i < u.length; i += 2) this.map[u[i]] = u[i + 1]
    this.size = u.length / 2
    this.myId = ops.you
    this.uuid = book.uuids[ops.you]
    if (this.map[this.myId] === -1) this.fail('the first map lacks the client itself')
    else if (book.names[this.myId] !== this.name) this.fail('"you" names another user')
  }

  apply (ops) {
    const book = this.worker.book
    if (this.map.length < book.uuids.length) {
      const bigger = new Int32Array(2 * book.uuids.length).fill(-1)
      bigger.set(this.map)
      this.map = bigger
    }
    const map = this.map
    const j = ops.joined
    for (let i = 0; i < j.length; i += 2) {
      if (map[j[i]] !== -1) return this.fail('a user joined who was in the map already')
      map[j[i]] = j[i + 1]
      this.size += 1
    }
    const u = ops.updated
    for (let i = 0; i < u.length; i += 2) {
      const old = map[u[i]]
      if (old === -1) return this.fail('an update for a user not in the map')
      if (book.stateSeqs[u[i + 1]] < book.stateSeqs[old]) this.worker.delta.stale += 1
      map[u[i]] = u[i + 1]
    }
    for (const id of ops.left) {
      if (map[id] === -1) return this.fail('a user left who was not in the map')
      if (id === this.myId) return this.fail('the client itself left its map')
      map[id] = -1
      this.size -= 1
    }
  }

  /** Its own updates, as its applied map now carries them. */
  checkOwn (t) {
    const w = this.worker
    const seq = w.book.stateSeqs[this.map[this.myId]]
    if (seq <= this.acked) return
    if (seq > this.seq) {
      w.errors.add('a delta carries a sequence number that was never sent')
      return
    }
    recordSeen(w.delta.latency, this, this.acked, seq, t)
    this.acked = seq
  }

  /** The movers it watches, as its applied map now carries them. */
  checkOthers (t) {
    const book = this.worker.book
    for (const wd of this.watched) {
      if (wd.id < 0) {
        const id = book.byName.get(wd.c.name)
        if (id === undefined) continue
        wd.id = id
      }
      const sid = wd.id < this.map.length ? this.map[wd.id] : -1
      if (sid === -1) continue
      const seq = book.stateSeqs[sid]
      if (seq > wd.seen) {
        recordSeen(this.worker.delta.others, wd.c, wd.seen, seq, t)
        wd.seen = seq
      }
    }
  }

  /** Whether its map is exactly `want` (user number -> state number, `size` entries). */
  holds (want, size) {
    if (this.size !== size) return false
    const map = this.map
    for (let id = 0; id < want.length; id++) {
      if (want[id] !== -1 && (id >= map.length || map[id] !== want[id])) return false
    }
    return true
  }
}

/** A full-map client that moves: the presence client, watching other movers too. */
class FullMover extends PresenceClient {
  onMessage (data, isBinary) {
    const w = this.worker
    const t = now()
    if (t >= w.winStart && t < w.winEnd) this.windowMessages += 1
    this.lastLength = data.length
    super.onMessage(data, isBinary)
    if (isBinary) return
    if (w.verifying) this.last = w.keep(data)
    for (const wd of this.watched) {
      const needle = wd.c.needle
      let p = data.indexOf(needle, wd.hint > 4096 ? wd.hint - 4096 : 0)
      if (p < 0 && wd.hint > 4096) p = data.indexOf(needle)
      if (p < 0) continue
      wd.hint = p
      let i = p + needle.length
      let seq = 0
      for (let c = data[i]; c >= 0x30 && c <= 0x39; c = data[++i]) seq = seq * 10 + (c - 0x30)
      if (seq > wd.seen) {
        recordSeen(w.fullOthers, wd.c, wd.seen, seq, t)
        wd.seen = seq
      }
    }
  }
}

/** A full-map client that stays still: it counts what it receives. */
class FullIdler extends PresenceClient {
  onMessage (data, isBinary) {
    const w = this.worker
    const t = now()
    if (t >= w.winStart && t < w.winEnd) {
      w.snapshots += 1
      w.bytes += data.length
      this.windowMessages += 1
    }
    w.snapshotsTotal += 1
    this.lastLength = data.length
    if (isBinary) w.errors.add('binary message from the server')
    else if (w.verifying) this.last = w.keep(data)
  }
}

class RoomWorker extends PresenceWorker {
  constructor (cfg, from, to) {
    super(cfg, 0, 0)
    const n = cfg.clients
    const movers = cfg.movers < 0 ? n : Math.min(cfg.movers, n)
    this.movers = movers
    this.book = new RoomBook()
    // The full-map clients' figures are the presence worker's own (latency,
    // snapshots, bytes, stale); the delta clients' are these.
    this.delta = {
      latency: new Histogram(),
      others: new Histogram(),
      messages: 0,
      bytes: 0,
      messagesTotal: 0,
      stale: 0,
      broken: 0
    }
    this.fullOthers = new Histogram()
    this.verifying = false
    this.kept = [] // distinct messages kept while verifying
    for (let i = from; i < to; i++) {
      const moves = picked(i, n, movers)
      let delta
      if (moves) {
        delta = picked(Math.floor((i * movers) / n), movers, cfg.deltaMovers)
      } else {
        const rank = i - Math.floor(((i + 1) * movers) / n)
        delta = picked(rank, n - movers, cfg.deltaIdle)
      }
      const Kind = delta ? DeltaClient : moves ? FullMover : FullIdler
      const c = new Kind(this, i, cfg)
      c.delta = delta
      c.moves = moves
      c.rank = Math.floor((i * movers) / n)
      c.windowMessages = 0
      c.watched = []
      c.last = null
      c.lastLength = 0
      this.clients.push(c)
    }
    // Each mover watches the next --watch movers of this worker, round the ring.
    const ring = this.clients.filter((c) => c.moves)
    const watch = Math.min(cfg.watch, ring.length - 1)
    ring.forEach((c, k) => {
      for (let d = 1; d <= watch; d++) {
        c.watched.push({ c: ring[(k + d) % ring.length], seen: 0, hint: 0, id: -1 })
      }
    })
  }

  schedule (period) {
    return this.clients
      .filter((c) => c.moves)
      .map((c) => ({ c, offset: (c.rank / this.movers) * period }))
  }

  waiting () {
    return this.clients.some((c) => c.open && (c.lost > 0 || (c.watched.length && othersLost(c) > 0)))
  }

  async run (t0) {
    await super.run(t0)
    this.verifying = true // From now on full-map clients keep their last message.
  }

  /**
   * Before the run: wait until the room has settled, at most `msg.wait`
   * seconds. Every delta client's map holds all `msg.connected` users, and
   * every full-map client has received the map of all of them (nobody has
   * moved yet, so its length is known: 65 bytes and the username for each
   * user, as servers write the tutorial's format; if some clients could not
   * connect, any message will do).
   */
  async settle (msg) {
    const started = now()
    const n = msg.connected
    let full = -1
    if (n === this.cfg.clients) {
      full = 2 + (n - 1)
      for (let i = 0; i < n; i++) full += 65 + `u${i}`.length
    }
    let waiting = 0
    for (;;) {
      waiting = 0
      for (const c of this.clients) {
        if (!c.open) continue
        if (c.delta ? c.map === null || c.size < n : full < 0 ? !c.lastLength : c.lastLength !== full) waiting += 1
      }
      if (!waiting || now() - started > msg.wait * 1000) break
      await sleep(20)
    }
    return { waiting, seconds: Math.round(now() - started) / 1000 }
  }

  /** The same bytes as a message kept before, or this one (kept if few are). */
  keep (data) {
    for (const b of this.kept) if (b.length === data.length && b.equals(data)) return b
    if (this.kept.length < 16) this.kept.push(data)
    return data
  }

  tally (delta) {
    const t = {
      clients: 0,
      movers: 0,
      updates_measured: 0,
      updates_lost: 0,
      others_measured: 0,
      others_lost: 0,
      most_messages: 0
    }
    for (const c of this.clients) {
      if (c.delta !== delta) continue
      t.clients += 1
      t.most_messages = Math.max(t.most_messages, c.windowMessages)
      if (!c.moves) continue
      t.movers += 1
      if (c.lastMeasured >= c.firstMeasured && c.firstMeasured > 0) {
        t.updates_measured += c.lastMeasured - c.firstMeasured + 1
      }
      t.updates_lost += c.lost
      for (const wd of c.watched) {
        const o = wd.c
        if (o.lastMeasured >= o.firstMeasured && o.firstMeasured > 0) {
          t.others_measured += o.lastMeasured - o.firstMeasured + 1
        }
      }
      t.others_lost += othersLost(c)
    }
    if (delta) t.parsed = this.book.parsed
    const k = delta
      ? this.delta
      : { latency: this.latency, others: this.fullOthers, messages: this.snapshots, bytes: this.bytes, stale: this.stale, broken: 0 }
    return Object.assign(t, {
      latency: k.latency.toJSON(),
      others_latency: k.others.toJSON(),
      messages: k.messages,
      bytes: k.bytes,
      stale: k.stale,
      broken: k.broken
    })
  }

  result () {
    const out = super.result()
    const all = new Histogram()
    all.add(this.latency.toJSON())
    all.add(this.delta.latency.toJSON())
    out.latency = all.toJSON()
    out.snapshots += this.delta.messages
    out.bytes += this.delta.bytes
    out.snapshots_total += this.delta.messagesTotal
    out.stale_snapshots += this.delta.stale
    out.room = { full: this.tally(false), delta: this.tally(true) }
    return out
  }

  /**
   * After the run: the server's map as the observer got it (`msg.users`, its
   * JSON text, and `msg.you`, the observer's uuid). Wait until every client
   * has caught up with the observer's join, at most `msg.wait` seconds, and
   * compare.
   */
  async verify (msg) {
    const book = this.book
    const out = {
      delta_checked: 0,
      delta_mismatches: 0,
      delta_unconverged: 0,
      full_checked: 0,
      full_unconverged: 0,
      closed: 0
    }
    const text = Buffer.from(msg.users)
    const expected = []
    let observer
    let marked // the observer's state
    try {
      if (book.mapInto(text, 0, expected) !== text.length) throw new Error("more after the server's map")
      // The same map read by JSON.parse: the same users.
      const parsed = JSON.parse(msg.users)
      const uuids = Object.keys(parsed)
      if (uuids.length !== expected.length / 2 || uuids.some((u) => !book.userIds.byText.has(u))) {
        throw new Error("JSON.parse and this generator read the server's map differently")
      }
      observer = book.user(msg.you)
      const state = Buffer.from(OBSERVER_STATE)
      marked = book.stateAt(state, 0, state.length)
    } catch (err) {
      out.error = err.message
      return out
    }
    const want = new Int32Array(book.uuids.length).fill(-1)
    for (let i = 0; i < expected.length; i += 2) want[expected[i]] = expected[i + 1]
    const size = expected.length / 2
    const verdicts = new Map() // kept message -> whether it is the server's map
    const pending = new Set(this.clients)
    const deadline = now() + msg.wait * 1000
    for (;;) {
      for (const c of pending) {
        if (!c.open) {
          out.closed += 1
          pending.delete(c)
        } else if (c.delta) {
          if (!c.broken && (c.map === null || observer >= c.map.length || c.map[observer] !== marked)) continue
          pending.delete(c)
          out.delta_checked += 1
          if (c.broken || !c.holds(want, size)) {
            out.delta_mismatches += 1
            if (!c.broken) this.errors.add(`delta: after the observer joined, a map of ${c.size} entries against the server's ${size}, or other states`)
          }
        } else if (c.last !== null) {
          if (!verdicts.has(c.last)) verdicts.set(c.last, c.last.equals(text))
          if (verdicts.get(c.last)) {
            pending.delete(c)
            out.full_checked += 1
          }
        }
      }
      if (!pending.size || now() > deadline) break
      await sleep(20)
    }
    for (const c of pending) {
      if (c.delta) {
        out.delta_checked += 1
        out.delta_unconverged += 1
      } else {
        out.full_checked += 1
        out.full_unconverged += 1
      }
    }
    this.verifying = false
    this.kept = []
    return out
  }
}

const OBSERVER_STATE = '{"observer":true}'
const OBSERVER_ENTRY = `"username":"observer","state":${OBSERVER_STATE}}`

/**
 * The observer: one more client, on full maps, that sets its state once; the
 * first message that carries that state is the server's whole map. Resolves
 * { ws, you, users } (users: the map's JSON text, the same bytes every
 * full-map client gets from that round on) or { error }.
 */
function observe (cfg) {
  return new Promise((resolve) => {
    const ws = new WebSocket(`${cfg.url}/?username=observer`, wsOptions(cfg))
    let settled = false
    const finish = (r) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      if (r.error) ws.terminate()
      resolve(r)
    }
    const timer = setTimeout(
      () => finish({ error: 'the observer got no first message in time' }),
      (cfg.connectTimeout + cfg.verifyWait) * 1000
    )
    ws.once('open', () => ws.send(OBSERVER_STATE))
    ws.on('message', (data) => {
      const p = data.indexOf(OBSERVER_ENTRY)
      if (p < 0) return // Its join, before its state.
      if (p < 40 || data[p - 40] !== 0x22 || data[p - 3] !== 0x22) {
        finish({ error: `the observer's entry: ${data.toString().slice(0, 100)}` })
      } else {
        finish({ ws, you: data.toString('latin1', p - 39, p - 3), users: data.toString() })
      }
    })
    ws.once('error', (err) => finish({ error: `observer: ${err.message || err.code}` }))
    ws.once('close', (code) => finish({ error: `the observer was closed with ${code}` }))
  })
}

/** Before a room run: wait until every worker's clients hold the whole room. */
async function settleRoom (cfg, children, connected) {
  for (const child of children) child.send({ type: 'settle', connected, wait: cfg.settleWait })
  const answers = await gather(children, 'settled', (cfg.settleWait + 30) * 1000)
  const waiting = answers.reduce((a, m) => a + m.result.waiting, 0)
  return {
    settled: waiting === 0,
    waiting,
    seconds: Math.max(...answers.map((m) => m.result.seconds))
  }
}

/** After a room run: the observer joins, every worker compares its clients' maps. */
async function verifyRoom (cfg, children) {
  const seen = await observe(cfg)
  if (seen.error) return { verify: { error: seen.error } }
  try {
    for (const child of children) {
      child.send({ type: 'verify', you: seen.you, users: seen.users, wait: cfg.verifyWait })
    }
    const answers = await gather(children, 'verified', (cfg.verifyWait + 30) * 1000)
    const verify = { server_map_entries: Object.keys(JSON.parse(seen.users)).length }
    for (const a of answers) {
      for (const [k, v] of Object.entries(a.result)) {
        if (typeof v === 'number') verify[k] = (verify[k] || 0) + v
        else if (v) verify.error = v
      }
    }
    return { verify }
  } finally {
    seen.ws.terminate()
  }
}

/** The room's figures by kind of client, summed over the workers. */
function mergeRoom (done) {
  const room = {}
  for (const kind of ['full', 'delta']) {
    const parts = done.map((d) => d.result.room[kind])
    const latency = new Histogram()
    const others = new Histogram()
    const merged = {}
    for (const p of parts) {
      latency.add(p.latency)
      others.add(p.others_latency)
      for (const [k, v] of Object.entries(p)) {
        if (typeof v !== 'number') continue
        merged[k] = k === 'most_messages' ? Math.max(merged[k] || 0, v) : (merged[k] || 0) + v
      }
    }
    merged.latency = latency.summary()
    merged.others_latency = others.summary()
    room[kind] = merged
  }
  return room
}

const WORKERS = {
  presence: PresenceWorker,
  echo: EchoWorker,
  handshake: HandshakeWorker,
  idle: IdleWorker,
  room: RoomWorker
}

/** What runs after a scenario's run, before its workers close (see room). */
const FINISH = {
  room: verifyRoom
}

/** What runs between the connections and the run (see room). */
const SETTLE = {
  room: settleRoom
}

// ------------------------------------------------------------------ worker process

// Event-loop delay: a timer every LOOP_RESOLUTION_MS records how long it
// really took; the part beyond LOOP_RESOLUTION_MS is the delay.
const LOOP_RESOLUTION_MS = 5
const lateBy = (ns) => Math.max(0, ns / 1e6 - LOOP_RESOLUTION_MS)

/**
 * Serve the coordinator's messages. `port` is this process (a forked worker)
 * or an in-process stand-in for it (one worker: no fork, faster to start).
 */
function workerMain (port) {
  let worker = null
  let cpuStart = null
  let loopDelay = null
  port.on('message', async (msg) => {
    try {
      if (msg.type === 'config') {
        worker = new WORKERS[msg.cfg.scenario](msg.cfg, msg.from, msg.to)
        // Our CPU and event-loop delay while connecting: a join is a big run too.
        const cpu0 = process.cpuUsage()
        const delay = monitorEventLoopDelay({ resolution: LOOP_RESOLUTION_MS })
        delay.enable()
        const stats = await worker.connect(msg.concurrency, msg.deadline)
        delay.disable()
        const cpu = process.cpuUsage(cpu0)
        port.send({
          type: 'connected',
          connected: stats.connected,
          failed: stats.failed,
          connect_seconds: stats.connectSeconds,
          phase_seconds: stats.phaseSeconds,
          connect_times: stats.connectTimes.toJSON(),
          cpu_seconds: (cpu.user + cpu.system) / 1e6,
          loop_delay_p99_ms: lateBy(delay.percentile(99)),
          loop_delay_max_ms: lateBy(delay.max)
        })
      } else if (msg.type === 'start') {
        const cfg = worker.cfg
        const winStart = msg.t0 + cfg.warmup * 1000
        const winEnd = winStart + cfg.duration * 1000
        // Our own CPU and event-loop delay, over the measurement window.
        let cpuEnd = null
        let wallStart = null
        let wallEnd = null
        setTimeout(() => {
          cpuStart = process.cpuUsage()
          wallStart = now()
          loopDelay = monitorEventLoopDelay({ resolution: LOOP_RESOLUTION_MS })
          loopDelay.enable()
        }, Math.max(0, winStart - now()))
        setTimeout(() => {
          cpuEnd = process.cpuUsage(cpuStart)
          wallEnd = now()
          if (loopDelay) loopDelay.disable()
        }, Math.max(0, winEnd - now()))
        await worker.run(msg.t0)
        if (cpuEnd === null && cpuStart !== null) {
          cpuEnd = process.cpuUsage(cpuStart)
          wallEnd = now()
          loopDelay.disable()
        }
        const cpu = cpuEnd ? (cpuEnd.user + cpuEnd.system) / 1e6 : null
        const wall = wallEnd && wallStart ? (wallEnd - wallStart) / 1000 : null
        port.send({
          type: 'done',
          result: worker.result(),
          cpu_seconds: cpu,
          wall_seconds: wall,
          loop_delay_p99_ms: loopDelay ? lateBy(loopDelay.percentile(99)) : null,
          loop_delay_max_ms: loopDelay ? lateBy(loopDelay.max) : null
        })
      } else if (msg.type === 'settle') {
        port.send({ type: 'settled', result: await worker.settle(msg) })
      } else if (msg.type === 'verify') {
        port.send({ type: 'verified', result: await worker.verify(msg) })
      } else if (msg.type === 'close') {
        if (worker) worker.close()
        port.exit()
      }
    } catch (err) {
      port.send({ type: 'fatal', message: String(err && err.stack ? err.stack : err) })
    }
  })
}

/** The worker side of a forked worker process. */
function forkedPort () {
  process.on('disconnect', () => process.exit(0))
  return {
    on: (event, fn) => process.on(event, fn),
    send: (msg) => process.send(msg),
    exit: () => setTimeout(() => process.exit(0), 50)
  }
}

/**
 * A worker in the coordinator's own process: two linked emitters that look
 * like a ChildProcess to the coordinator and like `process` to the worker.
 */
function inProcessWorker () {
  const { EventEmitter } = require('events')
  const child = new EventEmitter()
  const port = new EventEmitter()
  const deliver = (target, msg) => setImmediate(() => target.emit('message', msg))
  child.send = (msg) => deliver(port, msg)
  child.kill = () => {}
  port.send = (msg) => deliver(child, msg)
  port.exit = () => setImmediate(() => child.emit('exit', 0))
  workerMain(port)
  return child
}

// ------------------------------------------------------------------ coordinator

const HELP = `usage: node loadgen.js SCENARIO --url ws://HOST:PORT [options]

SCENARIO is presence, room, echo, handshake or idle.

options (defaults in brackets):
  --url URL               server base URL, without a path [ws://127.0.0.1:8000];
                          several, comma-separated: presence client i connects
                          to the (i mod count)th (one room over several processes)
  --clients N             users (presence), clients (echo), loops (handshake)
                          or connections (idle) [10]
  --rate HZ               presence: updates per second per user [20]
  --size BYTES            echo: message size [64]
  --window N              echo: messages in flight per client [1]
  --path PATH             handshake and idle: the URL path [/echo]
  --warmup SECONDS        run before measuring [2]
  --duration SECONDS      how long to measure [10]
  --movers N              room: how many of the users move (-1: all) [-1]
  --delta-movers N        room: how many movers speak wspractice-delta [0]
  --delta-idle N          room: how many idle users speak wspractice-delta [0]
  --watch N               room: other movers each mover watches [20]
  --verify-wait SECONDS   room: how long clients may take to catch up with
                          the observer's join at the end [30]
  --settle-wait SECONDS   room: before the run, how long to wait for every
                          client to hold the whole room [120]
  --grace SECONDS         after the run, wait this long for late snapshots [5]
  --workers N             generator processes [1]
  --concurrency N         connections opened at once [100]
  --connect-timeout S     per-connection handshake timeout [10]
  --connect-deadline S    start no connection after this many seconds [60]
  --peer-offset K         presence: each user also times the updates of the user
                          K places after it (in its worker), as seen by it:
                          peer_latency, peer_updates_lost [0: off]

Output: JSON lines on stdout, ending with {"event": "result", ...}.`

function parseArgs (argv) {
  const cfg = {
    scenario: argv[0],
    url: 'ws://127.0.0.1:8000',
    clients: 10,
    rate: 20,
    size: 64,
    window: 1,
    path: '/echo',
    warmup: 2,
    duration: 10,
    grace: 5,
    workers: 1,
    concurrency: 100,
    connectTimeout: 10,
    connectDeadline: 60,
    peerOffset: 0,
    movers: -1,
    deltaMovers: 0,
    deltaIdle: 0,
    watch: 20,
    verifyWait: 30,
    settleWait: 120
  }
  const names = {
    '--url': 'url',
    '--clients': 'clients',
    '--rate': 'rate',
    '--size': 'size',
    '--window': 'window',
    '--path': 'path',
    '--warmup': 'warmup',
    '--duration': 'duration',
    '--grace': 'grace',
    '--workers': 'workers',
    '--concurrency': 'concurrency',
    '--connect-timeout': 'connectTimeout',
    '--connect-deadline': 'connectDeadline',
    '--peer-offset': 'peerOffset',
    '--movers': 'movers',
    '--delta-movers': 'deltaMovers',
    '--delta-idle': 'deltaIdle',
    '--watch': 'watch',
    '--verify-wait': 'verifyWait',
    '--settle-wait': 'settleWait'
  }
  for (let i = 1; i < argv.length; i += 2) {
    const key = names[argv[i]]
    if (!key || i + 1 >= argv.length) throw new Error(`unknown or incomplete option ${argv[i]}`)
    const value = argv[i + 1]
    cfg[key] = typeof cfg[key] === 'number' ? Number(value) : value
    if (Number.isNaN(cfg[key])) throw new Error(`${argv[i]} needs a number, got ${value}`)
  }
  if (!WORKERS[cfg.scenario]) throw new Error(`unknown scenario ${cfg.scenario}`)
  cfg.urls = cfg.url.split(',').map((u) => u.replace(/\/+$/, ''))
  cfg.url = cfg.urls[0]
  cfg.users = cfg.clients
  cfg.workers = Math.max(1, Math.min(cfg.workers, cfg.clients))
  return cfg
}

function emit (event) {
  process.stdout.write(JSON.stringify(event) + '\n')
}

function say (text) {
  process.stderr.write(`loadgen: ${text}\n`)
}

/** Wait for one message of `type` from every worker (or a fatal one). */
function gather (children, type, timeoutMs) {
  return Promise.all(children.map((child) => new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no "${type}" from a worker in ${timeoutMs / 1000} s`)), timeoutMs)
    const onMessage = (msg) => {
      if (msg.type === type || msg.type === 'fatal') {
        clearTimeout(timer)
        child.off('message', onMessage)
        if (msg.type === 'fatal') reject(new Error(`worker failed: ${msg.message}`))
        else resolve(msg)
      }
    }
    child.on('message', onMessage)
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`a worker exited with ${code}`))
    })
  })))
}

async function coordinatorMain (argv) {
  if (!argv.length || argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(HELP + '\n')
    return 0
  }
  const cfg = parseArgs(argv)
  const children = []
  if (cfg.workers === 1) {
    children.push(inProcessWorker())
  } else {
    for (let w = 0; w < cfg.workers; w++) {
      children.push(fork(__filename, ['--worker'], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] }))
    }
  }
  const killAll = () => { for (const c of children) c.kill('SIGKILL') }
  process.on('SIGTERM', () => { killAll(); process.exit(143) })
  try {
    // Split the clients and the connect concurrency between the workers.
    const per = Math.floor(cfg.clients / cfg.workers)
    const extra = cfg.clients % cfg.workers
    let from = 0
    const t = now()
    say(`${cfg.scenario}: opening ${cfg.scenario === 'handshake' ? 0 : cfg.clients} connection(s) to ${cfg.url} with ${cfg.workers} worker(s)`)
    children.forEach((child, w) => {
      const count = per + (w < extra ? 1 : 0)
      child.send({
        type: 'config',
        cfg,
        from,
        to: from + count,
        concurrency: Math.max(1, Math.round(cfg.concurrency / cfg.workers)),
        deadline: t + cfg.connectDeadline * 1000
      })
      from += count
    })
    const connectBudget = (cfg.connectDeadline + cfg.connectTimeout + 15) * 1000
    const connected = await gather(children, 'connected', connectBudget)
    const connectTimes = new Histogram()
    for (const c of connected) connectTimes.add(c.connect_times)
    const connectedSum = connected.reduce((a, c) => a + c.connected, 0)
    const failed = connected.reduce((a, c) => a + c.failed, 0)
    const connectSeconds = connectedSum ? Math.max(...connected.map((c) => c.connect_seconds || 0)) : null
    const connectEvent = {
      event: 'connected',
      connected: connectedSum,
      failed,
      seconds: Math.round((now() - t)) / 1000,
      // Until the last connection opened, and until every attempt settled.
      connect_all_seconds: connectSeconds,
      connect_phase_seconds: Math.max(...connected.map((c) => c.phase_seconds || 0)),
      connect_times: connectTimes.summary(),
      // The generator while connecting (in cores over the connect phase).
      generator: {
        workers: connected.length,
        cpu_seconds: Math.round(connected.reduce((a, c) => a + c.cpu_seconds, 0) * 1000) / 1000,
        loop_delay_p99_ms: Math.max(...connected.map((c) => c.loop_delay_p99_ms || 0)),
        loop_delay_max_ms: Math.max(...connected.map((c) => c.loop_delay_max_ms || 0))
      }
    }
    emit(connectEvent)
    say(`${connectedSum} connected, ${failed} failed, in ${connectEvent.seconds} s`)
    const settle = SETTLE[cfg.scenario]
    const settled = settle ? await settle(cfg, children, connectedSum) : null
    if (settled) say(`settled: ${JSON.stringify(settled)}`)

    // Everyone starts at the same moment; the window is [t0 + warmup, + duration].
    const t0 = now() + 50
    for (const child of children) child.send({ type: 'start', t0 })
    const winStart = t0 + cfg.warmup * 1000
    const winEnd = winStart + cfg.duration * 1000
    // The driver samples the server on these two events; they come in
    // order and before the result, however late a timer fires.
    let marks = 0
    const mark = (upTo) => {
      if (marks < 1 && upTo >= 1) emit({ event: 'measure_start' })
      if (marks < 2 && upTo >= 2) emit({ event: 'measure_end' })
      marks = Math.max(marks, upTo)
    }
    const startTimer = setTimeout(() => mark(1), Math.max(0, winStart - now()))
    const endTimer = setTimeout(() => mark(2), Math.max(0, winEnd - now()))
    const budget = (cfg.warmup + cfg.duration + cfg.grace + 30) * 1000
    const done = await gather(children, 'done', budget)
    clearTimeout(startTimer)
    clearTimeout(endTimer)
    mark(2)
    const finish = FINISH[cfg.scenario]
    const more = finish ? await finish(cfg, children) : {}
    for (const child of children) child.send({ type: 'close' })

    const result = mergeResults(cfg, done)
    Object.assign(result, more)
    if (settled) result.settle = settled
    result.connect = connectEvent
    emit({ event: 'result', ...result })
    await Promise.race([
      Promise.all(children.map((c) => new Promise((resolve) => c.once('exit', resolve)))),
      sleep(3000)
    ])
    killAll()
    return 0
  } catch (err) {
    emit({ event: 'error', message: err.message })
    say(err.message)
    killAll()
    return 1
  }
}

function mergeResults (cfg, done) {
  const errors = new ErrorCounts()
  const sum = (key) => done.reduce((a, d) => a + (d.result[key] || 0), 0)
  const hist = (key) => {
    const h = new Histogram()
    for (const d of done) h.add(d.result[key])
    return h
  }
  for (const d of done) errors.merge(d.result.errors)
  const cpus = done.map((d) => d.cpu_seconds).filter((x) => x !== null)
  const walls = done.map((d) => d.wall_seconds).filter((x) => x !== null)
  const wall = walls.length ? Math.max(...walls) : cfg.duration
  const round = (x, digits = 3) => x === null ? null : Math.round(x * 10 ** digits) / 10 ** digits
  const out = {
    scenario: cfg.scenario,
    config: cfg,
    window_seconds: round(wall),
    generator: {
      workers: done.length,
      cpu_seconds: round(cpus.reduce((a, b) => a + b, 0)),
      // In cores: 1.0 is one core busy for the whole window.
      cpu_cores: round(cpus.reduce((a, b) => a + b, 0) / wall),
      busiest_worker_cpu: round(Math.max(...cpus, 0) / wall),
      loop_delay_p99_ms: round(Math.max(...done.map((d) => d.loop_delay_p99_ms || 0))),
      loop_delay_max_ms: round(Math.max(...done.map((d) => d.loop_delay_max_ms || 0)))
    },
    errors: errors.counts,
    error_count: errors.total()
  }
  if (cfg.scenario === 'presence' || cfg.scenario === 'room') {
    const uuids = new Set()
    let learned = 0
    for (const d of done) {
      for (const u of d.result.uuids) uuids.add(u)
      learned += d.result.uuids_learned
    }
    const sendLag = hist('send_lag')
    Object.assign(out, {
      latency: hist('latency').summary(),
      updates_sent: sum('updates_sent'),
      updates_measured: sum('updates_measured'),
      updates_lost: sum('updates_lost'),
      snapshots: sum('snapshots'),
      snapshots_per_second: round(sum('snapshots') / wall, 1),
      bytes_per_second: Math.round(sum('bytes') / wall),
      snapshots_total: sum('snapshots_total'),
      snapshots_without_own_entry: sum('snapshots_without_own_entry'),
      stale_snapshots: sum('stale_snapshots'),
      disconnects: sum('disconnects'),
      uuids_learned: learned,
      uuids_distinct: uuids.size
    })
    if (cfg.peerOffset > 0) {
      Object.assign(out, {
        peer_latency: hist('peer_latency').summary(),
        peer_updates_measured: sum('peer_updates_measured'),
        peer_updates_lost: sum('peer_updates_lost'),
        peer_pairs: sum('peer_pairs'),
        peer_pairs_crossing: sum('peer_pairs_crossing')
      })
    }
    out.generator.send_lag = sendLag.summary()
    if (cfg.scenario === 'room') out.room = mergeRoom(done)
  } else if (cfg.scenario === 'echo') {
    Object.assign(out, {
      rtt: hist('rtt').summary(),
      messages: sum('messages'),
      messages_per_second: round(sum('messages') / wall, 1),
      bytes_per_second: Math.round(sum('bytes') / wall),
      disconnects: sum('disconnects')
    })
  } else if (cfg.scenario === 'handshake') {
    Object.assign(out, {
      handshake_time: hist('times').summary(),
      handshakes: sum('handshakes'),
      handshakes_per_second: round(sum('handshakes') / wall, 1),
      failed: sum('failed')
    })
  } else if (cfg.scenario === 'idle') {
    Object.assign(out, {
      still_open: sum('still_open'),
      disconnects: sum('disconnects')
    })
  }
  return out
}

if (process.argv[2] === '--worker') {
  workerMain(forkedPort())
} else {
  coordinatorMain(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err) => {
      process.stderr.write(`loadgen: ${err.stack || err}\n`)
      process.exit(2)
    }
  )
}
