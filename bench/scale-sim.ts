// One site of the scale simulation (issue 8, docs/scale.md): the real Scheduler of every endpoint
// of a site, driven by a discrete-event network model instead of sockets. What ReleaseFetch does
// (src/swarm/release-fetch.ts) is replayed with its own constants: announce (hello), settle, then
// plan → start the WAN and LAN requests → a blob lands → chunkLanded, the have increment goes to
// the site (batched FLUSH_MS, LAN latency) → plan again, plus the TICK_MS timer that notices stalls.
//
// The network: the site's uplink is one FIFO link (rate, one-way latency) from the datacenter; each
// endpoint serves LAN requests through its own FIFO link (its NIC rate) with the LAN latency. The
// seed side has no limit here: what crosses it is recorded per second, and bench/scale.ts adds the
// sites up to get the seed's peak demand. No CPU cost is modelled (plan, verify and store take no
// time), so these are the swarm's figures, not a loaded machine's (docs/bench-swarm.md).
//
// Failures: an endpoint can leave (its process stops: others notice after `detectMs`, its requests
// die) and come back with what it had stored, or freeze (a suspended laptop, a starved process: it
// announces and serves nothing, its events wait until it thaws) — the cases the takeover rules of
// docs/swarm.md §3 are for. LAN requests time out like BlobClient's (60 s) and are planned again.
import { BLOBS_DEFAULT_REQUEST_TIMEOUT_MS } from '../src/net/constants.js'
import { HaveMap } from '../src/swarm/have-map.js'
import { rendezvousKey } from '../src/swarm/ownership.js'
import { HAVE_REPLAN_MS, LAN_PER_PEER, PLAN_EVERY_MS, SETTLE_MS, TICK_MS, WAN_IN_FLIGHT } from '../src/swarm/release-fetch.js'
import { Scheduler, WAN, type LanRequest } from '../src/swarm/scheduler.js'
import { FLUSH_MS } from '../src/swarm/site.js'

export interface EndpointSpec {
  /** Ownership weight (ownership.ts: wired 100, Wi-Fi 40, unknown 20, battery 0). */
  weight: number
  /** Bytes/s its NIC serves LAN requests at. */
  lanRate: number
  /** When it learns of the release (ms after the release appears). */
  joinMs: number
  /** Leaves at `atMs` (absolute) and comes back `awayMs` later with what it had stored. */
  leave?: { atMs: number, awayMs: number }
  /** Freezes at `atMs` for `forMs`: present to the site, but announces, serves and fetches nothing. */
  freeze?: { atMs: number, forMs: number }
}

export interface SiteSpec {
  name: string
  endpoints: EndpointSpec[]
  /** Datacenter → site rate, bytes/s (the bottleneck of every WAN fetch). */
  uplinkRate: number
  /** One way, ms. */
  uplinkLatencyMs: number
  lanLatencyMs: number
  /** How long the others take to notice that a peer left (its connections close), ms. */
  detectMs?: number
}

export interface Release {
  /** The distinct cids of the chunk table, in order (what have-maps index). */
  cids: readonly string[]
  /** Blob bytes per chunk. */
  sizes: readonly number[]
}

export interface SiteResult {
  site: string
  endpoints: number
  completed: number
  newBytes: number
  /** Blob bytes that crossed the uplink (a request cut mid-way counts the part sent). */
  wanBytes: number
  /** wanBytes ÷ newBytes: 1 is one copy per site. */
  ratio: number
  wanRequests: number
  /** Chunks asked of the seed more than once by this site, and the extra requests. */
  duplicatedChunks: number
  extraWanRequests: number
  /** WAN requests cancelled before their transfer began (a peer joined and took the chunk over). */
  wanCancelled: number
  lanBytes: number
  lanTimeouts: number
  /** WAN responses that took longer than the blobs request timeout (60 s) to complete after the request. */
  wanSlowerThanTimeout: number
  /** Worst request → land time of a WAN fetch, ms. */
  maxWanLatencyMs: number
  /** LAN requests to a peer that did not hold the chunk (must be 0: the scheduler asks holders only). */
  lanMisses: number
  /** Last endpoint done, ms after the release appeared. */
  doneMs: number
  /** Requests and bytes the seed served, per second since the release appeared. */
  seedRequestsPerSecond: number[]
  seedBytesPerSecond: number[]
  events: number
  /** Scheduler.plan() calls, all endpoints together. */
  plans: number
}

interface Req {
  ep: Ep
  index: number
  from: string
  src: Ep | undefined
  srcEpoch: number
  sentAt: number
  start: number
  finish: number
  /** When it died (cancelled, its requester left): -1 while alive; the bytes it moved stop there. */
  deadAt: number
  landed: boolean
}

interface Ep {
  id: string
  spec: EndpointSpec
  present: boolean
  epoch: number
  frozen: boolean
  deferred: Array<() => void>
  sched: Scheduler | undefined
  stored: HaveMap
  /** Peers whose hello I have, by the epoch it came from: my scheduler's members. */
  known: Map<Ep, number>
  running: Map<string, Req>
  pendingInc: number[]
  flushQueued: boolean
  planQueued: boolean
  haveKickQueued: boolean
  started: boolean
  upBusyUntil: number
  doneAt: number
}

/** A binary heap of events by (time, insertion order): same-time events run in the order they were posted. */
class Events {
  private readonly t: number[] = []
  private readonly seq: number[] = []
  private readonly fn: Array<() => void> = []
  private n = 0
  get size (): number { return this.t.length }
  private less (a: number, b: number): boolean {
    return this.t[a]! < this.t[b]! || (this.t[a] === this.t[b] && this.seq[a]! < this.seq[b]!)
  }

  private swap (a: number, b: number): void {
    [this.t[a], this.t[b]] = [this.t[b]!, this.t[a]!]
    ;[this.seq[a], this.seq[b]] = [this.seq[b]!, this.seq[a]!]
    ;[this.fn[a], this.fn[b]] = [this.fn[b]!, this.fn[a]!]
  }

  push (t: number, fn: () => void): void {
    let i = this.t.length
    this.t.push(t); this.seq.push(this.n++); this.fn.push(fn)
    while (i > 0) {
      const p = (i - 1) >> 1
      if (!this.less(i, p)) break
      this.swap(i, p); i = p
    }
  }

  pop (): { t: number, fn: () => void } {
    const top = { t: this.t[0]!, fn: this.fn[0]! }
    const last = this.t.length - 1
    this.swap(0, last)
    this.t.pop(); this.seq.pop(); this.fn.pop()
    let i = 0
    for (;;) {
      const l = 2 * i + 1
      const r = l + 1
      let m = i
      if (l < last && this.less(l, m)) m = l
      if (r < last && this.less(r, m)) m = r
      if (m === i) break
      this.swap(i, m); i = m
    }
    return top
  }
}

/** Rendezvous keys shared by every scheduler of the site (they are pure; computing them once per peer per chunk, not per scheduler). */
function sharedKeys (): (peer: string, cid: string) => number {
  const byPeer = new Map<string, Map<string, number>>()
  return (peer, cid) => {
    let m = byPeer.get(peer)
    if (m === undefined) { m = new Map(); byPeer.set(peer, m) }
    let k = m.get(cid)
    if (k === undefined) { k = rendezvousKey(peer, cid); m.set(cid, k) }
    return k
  }
}

/** Simulates one release reaching one site; deterministic for a given spec. */
export function simulateSite (site: SiteSpec, release: Release): SiteResult {
  const { cids, sizes } = release
  const n = cids.length
  const lanL = site.lanLatencyMs
  const wanL = site.uplinkLatencyMs
  const detectMs = site.detectMs ?? Math.max(lanL, 1)
  const key = sharedKeys()
  const q = new Events()
  let now = 0
  let events = 0
  let plans = 0
  const at = (t: number, fn: () => void): void => { q.push(Math.max(t, now), fn) }

  const eps: Ep[] = site.endpoints.map((spec, k) => ({
    id: `${site.name}-e${k}`,
    spec,
    present: false,
    epoch: 0,
    frozen: false,
    deferred: [],
    sched: undefined,
    stored: new HaveMap(n),
    known: new Map(),
    running: new Map(),
    pendingInc: [],
    flushQueued: false,
    planQueued: false,
    haveKickQueued: false,
    started: false,
    upBusyUntil: 0,
    doneAt: -1
  }))
  const byId = new Map(eps.map(e => [e.id, e]))
  let uplinkBusyUntil = 0
  const wanReqs: Req[] = []
  const wanAsked = new Uint16Array(n)
  const seedReq: number[] = []
  const seedBytes: number[] = []
  let lanBytes = 0
  let lanTimeouts = 0
  let lanMisses = 0

  /** Runs `fn` as endpoint `e` in epoch `epoch`: dropped once it left, deferred while frozen. */
  const as = (e: Ep, epoch: number, fn: () => void): void => {
    if (!e.present || e.epoch !== epoch) return
    if (e.frozen) { e.deferred.push(fn); return }
    fn()
  }
  const post = (t: number, e: Ep, fn: () => void): void => {
    const epoch = e.epoch
    at(t, () => { as(e, epoch, fn) })
  }

  const kill = (r: Req): void => {
    if (r.deadAt >= 0 || r.landed) return
    r.deadAt = now
    r.ep.running.delete(`${r.index}:${r.from}`)
  }

  const wake = (e: Ep): void => {
    if (!e.started || e.planQueued || e.doneAt >= 0) return
    e.planQueued = true
    // ReleaseFetch: plan once per turn of events, and at most every PLAN_EVERY_MS while busy.
    post(now + (e.running.size > WAN_IN_FLIGHT / 2 ? PLAN_EVERY_MS : 0), e, () => { plan(e) })
  }

  // ReleaseFetch.onHave: site news replans at most every HAVE_REPLAN_MS.
  const wakeSoon = (e: Ep): void => {
    if (e.haveKickQueued) return
    e.haveKickQueued = true
    post(now + HAVE_REPLAN_MS, e, () => { e.haveKickQueued = false; wake(e) })
  }

  const hello = (from: Ep, to: Ep): void => {
    const snapshot = from.stored.clone()
    const epoch = from.epoch
    post(now + lanL, to, () => {
      if (!from.present || from.epoch !== epoch) return
      if (to.doneAt < 0) {
        // ReleaseFetch.onHave cancels the WAN requests the newcomer takes over
        // (those whose transfer has not begun: the uplink is a FIFO, `start` is when a blob's bytes begin)
        const queued = (i: number): boolean => { const r = to.running.get(`${i}:${WAN}`); return r === undefined || r.start > now }
        for (const c of to.sched!.peerJoined(from.id, from.spec.weight, snapshot, undefined, queued)) {
          const r = to.running.get(`${c.index}:${c.peer}`)
          if (r !== undefined) kill(r)
        }
      }
      if (to.known.get(from) !== epoch) {
        to.known.set(from, epoch)
        hello(to, from) // a new member: it gets my map too
      }
      wakeSoon(to)
    })
  }

  const flush = (e: Ep): void => {
    e.flushQueued = false
    const batch = e.pendingInc
    e.pendingInc = []
    for (const [peer, epoch] of e.known) {
      if (!peer.present || peer.epoch !== epoch) continue
      post(now + lanL, peer, () => {
        if (peer.known.get(e) !== e.epoch || peer.doneAt >= 0) return
        peer.sched!.peerHave(e.id, batch)
        wakeSoon(peer)
      })
    }
  }

  const land = (r: Req): void => {
    const e = r.ep
    if (r.deadAt >= 0 || r.landed) return
    if (r.src !== undefined && (!r.src.present || r.src.epoch !== r.srcEpoch)) return // the source left: peerLeft replans it
    r.landed = true
    e.running.delete(`${r.index}:${r.from}`)
    if (r.from !== WAN) lanBytes += sizes[r.index]!
    if (e.doneAt >= 0) return
    for (const c of e.sched!.chunkLanded(r.index, r.from)) {
      const other = e.running.get(`${c.index}:${c.peer}`)
      if (other !== undefined) kill(other)
    }
    if (e.stored.set(r.index)) {
      e.pendingInc.push(r.index)
      if (!e.flushQueued) { e.flushQueued = true; post(now + FLUSH_MS, e, () => { flush(e) }) }
    }
    if (e.sched!.done) {
      e.doneAt = now
      for (const other of e.running.values()) kill(other)
    }
    wake(e)
  }

  const startWan = (e: Ep, index: number): void => {
    const size = sizes[index]!
    const arrive = now + wanL
    const sec = Math.floor(arrive / 1000)
    seedReq[sec] = (seedReq[sec] ?? 0) + 1
    const start = Math.max(arrive + wanL, uplinkBusyUntil)
    const finish = start + size / site.uplinkRate * 1000
    uplinkBusyUntil = finish
    const s2 = Math.floor(start / 1000)
    seedBytes[s2] = (seedBytes[s2] ?? 0) + size
    const r: Req = { ep: e, index, from: WAN, src: undefined, srcEpoch: 0, sentAt: now, start, finish, deadAt: -1, landed: false }
    wanReqs.push(r)
    e.running.set(`${index}:${WAN}`, r)
    post(finish, e, () => { land(r) })
  }

  const startLan = (e: Ep, req: LanRequest): void => {
    const src = byId.get(req.peer)!
    const r: Req = { ep: e, index: req.index, from: req.peer, src, srcEpoch: src.epoch, sentAt: now, start: -1, finish: -1, deadAt: -1, landed: false }
    e.running.set(`${req.index}:${req.peer}`, r)
    // The holder reads the request when it can (later if frozen), then sends through its NIC.
    post(now + lanL, src, () => {
      if (r.deadAt >= 0) return
      if (!src.stored.has(req.index)) { lanMisses++; return }
      const size = sizes[req.index]!
      r.start = Math.max(now, src.upBusyUntil)
      r.finish = r.start + size / src.spec.lanRate * 1000
      src.upBusyUntil = r.finish
      post(r.finish + lanL, e, () => { land(r) })
    })
    post(now + BLOBS_DEFAULT_REQUEST_TIMEOUT_MS, e, () => {
      if (r.landed || r.deadAt >= 0) return
      kill(r)
      lanTimeouts++
      if (e.doneAt < 0) { e.sched!.requestFailed(r.index, r.from); wake(e) }
    })
  }

  const plan = (e: Ep): void => {
    e.planQueued = false
    if (e.doneAt >= 0) return
    plans++
    const p = e.sched!.plan()
    for (const i of p.wan) startWan(e, i)
    for (const r of p.lan) startLan(e, r)
  }

  const tick = (e: Ep, epoch: number): void => {
    if (!e.present || e.epoch !== epoch || e.doneAt >= 0) return
    if (!e.frozen) wake(e) // a frozen process does not tick: no backlog of ticks when it thaws
    at(now + TICK_MS, () => { tick(e, epoch) })
  }

  const join = (e: Ep): void => {
    e.present = true
    e.epoch++
    e.frozen = false
    e.deferred = []
    e.known = new Map()
    e.running = new Map()
    e.pendingInc = []
    e.flushQueued = false
    e.planQueued = false
    e.haveKickQueued = false
    e.started = false
    e.upBusyUntil = now
    e.sched = new Scheduler({
      self: e.id,
      weight: e.spec.weight,
      cids,
      have: e.stored,
      now: () => now,
      wanInFlight: WAN_IN_FLIGHT,
      perPeerInFlight: LAN_PER_PEER,
      rendezvousKey: key
    })
    const others = eps.filter(o => o !== e && o.present)
    for (const o of others) hello(e, o)
    if (e.sched.done) { e.doneAt = Math.max(e.doneAt, now); return }
    const begin = (): void => {
      e.started = true
      wake(e)
      tick(e, e.epoch)
    }
    if (others.length > 0) post(now + SETTLE_MS, e, begin)
    else begin()
  }

  const leave = (e: Ep, awayMs: number): void => {
    if (!e.present) return
    const epoch = e.epoch
    e.present = false
    for (const r of [...e.running.values()]) kill(r)
    e.sched = undefined
    for (const o of eps) {
      if (o === e || !o.present) continue
      post(now + detectMs, o, () => {
        if (o.known.get(e) !== epoch) return
        o.known.delete(e)
        if (o.doneAt >= 0) return
        for (const d of o.sched!.peerLeft(e.id)) {
          const r = o.running.get(`${d.index}:${d.peer}`)
          if (r !== undefined) kill(r)
        }
        wake(o)
      })
    }
    if (Number.isFinite(awayMs)) at(now + awayMs, () => { join(e) })
  }

  const freeze = (e: Ep, forMs: number): void => {
    if (!e.present || e.frozen) return
    const epoch = e.epoch
    e.frozen = true
    at(now + forMs, () => {
      if (!e.present || e.epoch !== epoch) return
      e.frozen = false
      const todo = e.deferred
      e.deferred = []
      for (const fn of todo) fn()
      wake(e)
    })
  }

  for (const e of eps) {
    at(e.spec.joinMs, () => { join(e) })
    const l = e.spec.leave
    if (l !== undefined) at(l.atMs, () => { if (e.doneAt < 0) leave(e, l.awayMs) })
    const f = e.spec.freeze
    if (f !== undefined) at(f.atMs, () => { if (e.doneAt < 0) freeze(e, f.forMs) })
  }
  while (q.size > 0) {
    const ev = q.pop()
    now = ev.t
    events++
    ev.fn()
  }

  let wanBytes = 0
  let maxWanLatencyMs = 0
  let wanSlowerThanTimeout = 0
  let wanCancelled = 0
  for (const r of wanReqs) {
    // a request cancelled before its transfer began cost the seed a request, not a byte
    if (r.deadAt >= 0 && r.deadAt <= r.start) wanCancelled++
    else wanAsked[r.index]!++
    const size = sizes[r.index]!
    const end = r.deadAt >= 0 ? Math.min(r.deadAt, r.finish) : r.finish
    wanBytes += r.finish > r.start ? size * Math.min(1, Math.max(0, (end - r.start) / (r.finish - r.start))) : size
    maxWanLatencyMs = Math.max(maxWanLatencyMs, r.finish - r.sentAt)
    if (r.finish - r.sentAt > BLOBS_DEFAULT_REQUEST_TIMEOUT_MS) wanSlowerThanTimeout++
  }
  let duplicatedChunks = 0
  let extraWanRequests = 0
  for (let i = 0; i < n; i++) {
    if (wanAsked[i]! > 1) { duplicatedChunks++; extraWanRequests += wanAsked[i]! - 1 }
  }
  const newBytes = sizes.reduce((a, b) => a + b, 0)
  const done = eps.filter(e => e.doneAt >= 0)
  return {
    site: site.name,
    endpoints: eps.length,
    completed: done.length,
    newBytes,
    wanBytes,
    ratio: wanBytes / newBytes,
    wanRequests: wanReqs.length,
    duplicatedChunks,
    extraWanRequests,
    wanCancelled,
    lanBytes,
    lanTimeouts,
    wanSlowerThanTimeout,
    maxWanLatencyMs,
    lanMisses,
    doneMs: Math.max(0, ...done.map(e => e.doneAt)),
    seedRequestsPerSecond: Array.from(seedReq, v => v ?? 0),
    seedBytesPerSecond: Array.from(seedBytes, v => v ?? 0),
    events,
    plans
  }
}
