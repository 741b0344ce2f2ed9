// Fetching one release's blobs with the site (DESIGN §6): the Scheduler decides, this module does.
// It feeds the scheduler what the site says (hellos, have increments, peers leaving), performs the
// plan — WAN requests to the seeds and origins (./wan-sources.ts) through the token bucket, LAN requests to site peers —, checks
// every blob against its cid (BlobClient), stores it, tells the site, and scores peers whose blobs
// fail. A peer's lie costs a retry elsewhere, never a wrong byte.
//
// Have-maps are over the release's *distinct* cids in order of first appearance in the chunk
// table (docs/protocol.md §6.7): every peer derives the same list from the same manifest.
import type { PeerId } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import type { ChunkTable } from '../core/chunk-table.js'
import type { ChunkRef } from '../core/manifest.js'
import type { BlobClient } from '../net/blobs.js'
import { BlobVerifyError, NetTimeoutError, PeerProtocolError } from '../net/errors.js'
import type { BlobStorage } from '../store/blob-store.js'
import { HaveMap } from './have-map.js'
import type { PeerScores } from './peer-scores.js'
import { Scheduler, siteWanShare, WAN, type LanRequest } from './scheduler.js'
import type { Site, SiteMember } from './site.js'
import type { TokenBucket } from './token-bucket.js'
import type { WanSourceKind, WanSources } from './wan-sources.js'

/** After announcing interest, how long to listen for the site's hellos before fetching from the WAN. */
export const SETTLE_MS = 1_000
/**
 * WAN requests in flight (the bucket meters bytes, not requests). A blob holds its slot from the
 * request until it is stored: ~40 ms on a busy endpoint, so by Little's law 64 slots capped a
 * loopback download at ~25 MiB/s (docs/bench-daemon.md); 512 slots of ~16 KiB blobs are ~8 MiB in
 * flight, enough for a long fat VPN link too. The blobs client queues what the seed's HELLO does
 * not allow in flight at once, and receives only within its credit window.
 */
export const WAN_IN_FLIGHT = 512
/**
 * WAN requests are made in runs of at most this many blobs: one abort controller, one promise and
 * one caller frame per run through the WAN sources and the blobs client, rather than per blob
 * (docs/bench-daemon.md, session 11). Each blob of a run still lands, and frees its slot, alone.
 */
export const WAN_BATCH = 32
/**
 * WAN requests in flight follow what the WAN delivers: about WAN_AHEAD_MS of it (the blobs
 * landed over the last WAN_RATE_WINDOW_MS), at least WAN_MIN_IN_FLIGHT, at most WAN_IN_FLIGHT.
 * 512 requests (~9 MB) were 1.5 s of a whole 50 Mbit/s uplink and ~15 s of one endpoint's share
 * of it at 10 endpoints: a peer joining then found all of it asked already, and requests waited
 * in the seed's queue long enough to look stalled. On loopback 512 are ~0.15 s.
 */
export const WAN_MIN_IN_FLIGHT = 64
export const WAN_AHEAD_MS = 1_000
export const WAN_RATE_WINDOW_MS = 2_000
/** LAN requests in flight per site peer. */
export const LAN_PER_PEER = 16
/** The loop's timer: re-divides the WAN share and notices stalls. */
export const TICK_MS = 500
/** Full hellos to the site every RESYNC_TICKS × TICK_MS while fetching. */
const RESYNC_TICKS = 6
/** While the pipeline is well filled, plan at most this often. */
export const PLAN_EVERY_MS = 15
/**
 * Site news (hellos, have increments) replans at most this often. Every peer flushes increments
 * every FLUSH_MS, so a site of N peers sends 10·N a second, and plan() costs O(chunks × N): planning
 * on each one made a peer of a 200-peer site plan ~450 times a second (bench/scale.ts, docs/scale.md).
 */
export const HAVE_REPLAN_MS = 50
/**
 * A WAN request that fails is planned again after a pause (WAN_RETRY_MS doubling, at most
 * WAN_RETRY_MAX_MS); the WAN counts as down only after failures with no blob from it for
 * WAN_DOWN_MS. Failing the whole fetch at the first error (a request timing out, a stream reset
 * by a loaded seed) made the endpoint leave the race for the rest of the pass: its site peers took
 * its chunks over after their stall timeout and fetched them again (v1 at 10 endpoints per site:
 * 1.88 × the release from the seed, docs/bench-swarm.md).
 */
export const WAN_RETRY_MS = 250
export const WAN_RETRY_MAX_MS = 2_000
export const WAN_DOWN_MS = 10_000

export interface FetchProgress { blobs: number, blobsTotal: number, bytes: number, bytesTotal: number }

export interface ReleaseFetchOptions {
  self: PeerId
  /** Manifest id of the release. */
  release: string
  /** The release's *distinct* chunks (ChunkTable.distinct), the index space of have-maps. */
  chunks: ChunkTable
  store: BlobStorage
  client: BlobClient
  site: Site | undefined
  /** Seeds and origins, with failover; each attempt takes its bytes from `bucket`. */
  wan: WanSources
  /** The WAN budget shared with `wan`: its rate follows the site's share. */
  bucket: TokenBucket
  /** The site's WAN budget (bytes/s, 0 = unlimited), shared among the peers fetching from the WAN. */
  wanRate: number
  /**
   * WAN failures with no blob from the WAN for this long mean it is down (default WAN_DOWN_MS);
   * 0 when no seed or origin answered the pass's head poll: the first failure then ends the WAN part.
   */
  wanGraceMs?: number
  weight: number
  scores: PeerScores
  /** Stop starting requests (aborted at stop/pause); `hard` cuts requests in flight. */
  soft: AbortSignal
  hard: AbortSignal
  progress: FetchProgress
  /** A verified blob landed; `from` is 'seed', 'origin' or the LAN peer's id. Awaited only when it returns a promise. */
  onBlob: (from: WanSourceKind | string, bytes: number) => Promise<void> | undefined
  /** A peer sent a blob that failed its cid, or broke the protocol (more bytes than the blob's size…). */
  onBadBlob?: (peer: string, banned: boolean, err: Error) => void
  /** A request to a peer timed out: it trickled, or sent nothing. */
  onSlow?: (peer: string, banned: boolean, err: Error) => void
  /** My have-map for this release, shared with the site (kept current by this module). */
  have: HaveMap
  /**
   * What I want of the table (default: all of it). With delta blobs an endpoint wants the deltas
   * it can rebuild from plus the full blobs of the rest, not the full blobs the deltas replace.
   */
  want?: HaveMap
  /**
   * A blob was stored, before it counts as landed: the endpoint rebuilds the chunks of a delta
   * here (held()) or, when that fails, wants their full blobs (want()), so the fetch cannot end
   * in between. Awaited only when it returns a promise (most blobs are not deltas).
   */
  onStored?: (index: number, blob: Uint8Array) => Promise<void> | undefined
  log?: (msg: string, fields?: Record<string, unknown>) => void
}

/** WAN requests started together (WAN_BATCH): `dropped` holds the positions a join cancelled unsent. */
interface WanRun { ctl: AbortController, indices: number[], dropped: Set<number> | undefined }

/** The `from` of chunks produced here (rebuilt from a delta), not fetched. */
const LOCAL = 'local'

/** The distinct cids of a chunk table in order of first appearance, with their sizes. */
export function distinctChunks (chunks: readonly ChunkRef[]): ChunkRef[] {
  return [...new Map(chunks.map(c => [c.cid, c])).values()]
}

export class ReleaseFetch {
  private readonly scheduler: Scheduler
  private readonly table: ChunkTable
  private readonly running = new Map<string, AbortController>() // LAN requests: `${index}:${peer}`
  /** Runs of WAN requests not yet over; cancelled together (the WAN is down, stopping). */
  private readonly wanRuns = new Set<AbortController>()
  /** WAN requests not yet sent, by chunk index: the ones a joining peer's hello may drop. */
  private readonly wanQueued = new Map<number, { run: WanRun, j: number }>()
  /** Requests started and not yet settled (landed, failed or cancelled), LAN and WAN. */
  private inFlight = 0
  private drained: (() => void) | undefined
  private wake: (() => void) | undefined
  private haveKick: NodeJS.Timeout | undefined
  /**
   * Set when a WAN fetch failed on every source (the seed is away): no WAN request starts after
   * it, but the LAN keeps going, and the fetch fails with this error only once nothing more can
   * come from the site. Failing at once cut the site's exchange at the first WAN error, so with
   * the seed down the peers of a site never finished from each other what they could.
   */
  private wanDown: Error | undefined
  /**
   * Storing or counting a fetched blob failed (disk full): fatal to this fetch. Taken for a failed
   * request, the chunk was planned again at once, so a full disk fetched the same blob from a site
   * peer in a loop (and from the WAN it would pass for the seed being away).
   */
  private localFailure: Error | undefined
  /** Last blob from the WAN (or the start); WAN failures in a row since; no WAN request before `wanHoldUntil`. */
  private wanOkAt = Date.now()
  private wanFailures = 0
  private wanHoldUntil = 0
  private wanHoldTimer: NodeJS.Timeout | undefined
  /** WAN requests sent to the seed: a join does not cancel those (their bytes may be on the way). */
  private readonly wanSent = new Set<number>()
  /** WAN blobs landed so far, and (time, that count) samples over the last window: the in-flight limit's rate. */
  private wanLanded = 0
  private readonly wanSamples: Array<{ t: number, n: number }> = []

  constructor (private readonly o: ReleaseFetchOptions) {
    this.table = o.chunks
    this.scheduler = new Scheduler({
      self: o.self.toString(),
      weight: o.weight,
      cids: this.table,
      have: o.have,
      ...(o.want !== undefined ? { want: o.want } : {}),
      isBanned: (p) => o.scores.isBanned(p),
      wanInFlight: WAN_IN_FLIGHT,
      perPeerInFlight: LAN_PER_PEER
    })
    this.scheduler.setWanLimit(WAN_MIN_IN_FLIGHT)
  }

  // The blobs the WAN delivered over the last window, in requests' worth of WAN_AHEAD_MS.
  // (O(1) per call: a handful of samples, not a timestamp per blob — an array of those shifted
  // per landing cost more CPU than the rest of the receive path on loopback)
  // `sample`: on the tick (a few samples a window); the landings between ticks only read them.
  private adaptWanLimit (sample: boolean): void {
    const now = Date.now()
    const s = this.wanSamples
    if (sample || s.length === 0) s.push({ t: now, n: this.wanLanded })
    while (s.length > 2 && s[1]!.t <= now - WAN_RATE_WINDOW_MS) s.shift()
    const oldest = s[0]!
    const landed = this.wanLanded - oldest.n
    // blobs per ms over the window (or since the first sample, when younger), times the lead
    const span = Math.max(TICK_MS, now - oldest.t)
    this.scheduler.setWanLimit(Math.max(WAN_MIN_IN_FLIGHT, Math.ceil(landed / span * WAN_AHEAD_MS)))
  }

  /** Fetching from the WAN right now (counts in the site's wanRate share). */
  get fetchingWan (): boolean {
    return this.scheduler.fetchingWan
  }

  /** A site member's hello or increment (wired by the endpoint from Site events). */
  onHave (m: SiteMember, indices: number[] | 'all'): void {
    try {
      if (indices === 'all') {
        const bits = m.haves.get(this.o.release)
        const want = m.wants.get(this.o.release)
        if (bits !== undefined) {
          const have = HaveMap.decode(bits, this.table.length)
          this.cancel(this.scheduler.peerJoined(m.id, m.weight, have, want !== undefined ? HaveMap.decode(want, this.table.length) : undefined, i => !this.wanSent.has(i)))
        }
      } else {
        this.scheduler.peerHave(m.id, indices)
      }
    } catch (err) {
      this.o.log?.('ignored a malformed have-map', { peer: m.id, err })
    }
    this.haveKick ??= setTimeout(() => { this.haveKick = undefined; this.kick() }, HAVE_REPLAN_MS)
  }

  /** My want-map when I want only part of the table (said in my hellos), else undefined. */
  get wantBits (): Uint8Array | undefined {
    const w = this.scheduler.wantMap
    return w.complete ? undefined : w.encode()
  }

  /** I want these chunks too (their delta did not rebuild); the site hears of it at once. */
  want (indices: number[]): void {
    this.scheduler.want(indices)
    void this.o.site?.rehello()
    this.kick()
  }

  /** These chunks are now stored here without a fetch (rebuilt from a delta): mine, and the site's to ask for. */
  held (indices: number[]): void {
    for (const i of indices) {
      this.cancel(this.scheduler.chunkLanded(i, LOCAL))
      if (this.o.have.set(i)) this.o.site?.have(this.o.release, i)
    }
    this.kick()
  }

  onLeave (m: SiteMember): void {
    this.cancel(this.scheduler.peerLeft(m.id))
    this.kick()
  }

  private kick (): void {
    const w = this.wake
    this.wake = undefined
    w?.()
  }

  private cancel (reqs: LanRequest[]): void {
    for (const r of reqs) {
      if (r.peer !== WAN) { this.running.get(`${r.index}:${r.peer}`)?.abort(); continue }
      // only WAN requests not yet sent are dropped (peerJoined's `cancellable`): skipped when their
      // turn comes (their bytes went out of the bucket with their run: the share is under-used by them once)
      const q = this.wanQueued.get(r.index)
      if (q !== undefined) (q.run.dropped ??= new Set()).add(q.j)
    }
  }

  /** Resolves when every chunk is held; throws when stopped, or when the WAN failed and the site has nothing more to give. */
  async run (): Promise<void> {
    const site = this.o.site
    for (const m of site?.members.values() ?? []) if (m.haves.has(this.o.release)) this.onHave(m, 'all')
    if (site !== undefined && site.members.size > 0) {
      await site.rehello()
      // let the others' hellos for this release arrive, so we agree on who owns what
      await new Promise(resolve => setTimeout(resolve, SETTLE_MS))
    }
    // One listener for the hard stop rather than an AbortSignal.any per request (a per-blob cost).
    const cutAll = (): void => { for (const c of this.controllers()) c.abort(this.o.hard.reason) }
    this.o.hard.addEventListener('abort', cutAll)
    this.wanSamples.push({ t: Date.now(), n: this.wanLanded })
    let ticks = 0
    const tick = setInterval(() => {
      this.shareWan()
      this.adaptWanLimit(true)
      // A lost increment (a busy peer, a hello that crossed ours) would leave someone waiting for
      // a chunk we hold until the stall timeout; a periodic full hello resynchronises everyone.
      if (++ticks % RESYNC_TICKS === 0) void site?.rehello()
      this.kick()
    }, TICK_MS)
    try {
      while (!this.scheduler.done) {
        if (this.localFailure !== undefined) throw this.localFailure
        if (this.o.soft.aborted) throw this.o.soft.reason instanceof Error ? this.o.soft.reason : new Error('stopped')
        const plan = this.scheduler.plan()
        if (this.wanDown !== undefined || Date.now() < this.wanHoldUntil) {
          // the WAN is down, or paused after a failure (planned again once the pause is over)
          for (const index of plan.wan) this.scheduler.requestFailed(index, WAN)
          if (this.wanDown !== undefined && plan.lan.length === 0 && this.inFlight === 0) throw this.wanDown
        } else {
          for (let k = 0; k < plan.wan.length; k += WAN_BATCH) this.startWan(plan.wan.slice(k, k + WAN_BATCH))
        }
        for (const r of plan.lan) this.startLan(r.index, r.peer)
        if (this.scheduler.done) break
        await new Promise<void>(resolve => { this.wake = resolve })
        // Let the completions of this turn of the event loop arrive before planning again: plan()
        // walks the whole chunk table, so once per batch of events, not once per blob.
        await new Promise(resolve => setImmediate(resolve))
        if (this.inFlight > WAN_IN_FLIGHT / 2) await new Promise(resolve => setTimeout(resolve, PLAN_EVERY_MS))
      }
    } finally {
      clearInterval(tick)
      clearTimeout(this.wanHoldTimer)
      clearTimeout(this.haveKick)
      this.haveKick = undefined
      // Stopping (soft): requests in flight may still land and be stored — the endpoint cuts them
      // with `hard` after a grace period; dropping them now would fetch them again after a restart.
      if (!this.o.soft.aborted) for (const c of this.controllers()) c.abort()
      if (this.inFlight > 0) await new Promise<void>(resolve => { this.drained = resolve })
      this.drained = undefined
      this.o.hard.removeEventListener('abort', cutAll)
    }
  }

  private shareWan (): void {
    if (!(this.o.wanRate > 0)) return
    const others = [...this.o.site?.members.values() ?? []].filter(m => m.wan).length
    this.o.bucket.setRate(siteWanShare(this.o.wanRate, others + (this.scheduler.fetchingWan ? 1 : 0)))
  }

  private startLan (index: number, peer: string): void {
    const key = `${index}:${peer}`
    const ctl = new AbortController()
    this.running.set(key, ctl)
    if (this.o.hard.aborted) ctl.abort(this.o.hard.reason)
    this.inFlight++
    void this.fetchLan(index, peer, key, ctl)
  }

  private async fetchLan (index: number, peer: string, key: string, ctl: AbortController): Promise<void> {
    try {
      let blob: Uint8Array
      try {
        blob = await this.o.client.fetch(peerIdFromString(peer), this.table.cidBytes(index), this.table.size(index), ctl.signal)
      } catch (err) {
        this.fetchFailed(index, peer, ctl, err)
        return
      }
      await this.land(index, peer, peer, blob)
    } catch (err) {
      this.failLocally(err) // a bug of ours: fail the fetch, loudly
    } finally {
      if (this.running.get(key) === ctl) this.running.delete(key)
      this.settled(1)
    }
  }

  // A run of WAN requests: one abort controller and one frame for the run; each blob lands alone.
  private startWan (indices: number[]): void {
    const run: WanRun = { ctl: new AbortController(), indices, dropped: undefined }
    this.wanRuns.add(run.ctl)
    if (this.o.hard.aborted) run.ctl.abort(this.o.hard.reason)
    for (let j = 0; j < indices.length; j++) this.wanQueued.set(indices[j]!, { run, j })
    this.inFlight += indices.length
    void this.fetchWan(run)
  }

  private async fetchWan (run: WanRun): Promise<void> {
    const { ctl, indices } = run
    let reported = 0
    const landing: Array<Promise<void>> = []
    try {
      const wants = indices.map(i => ({ cid: this.table.cidBytes(i), maxSize: this.table.size(i) }))
      await this.o.wan.fetchBatch(wants, (j, got, err) => {
        reported++
        const index = indices[j]!
        this.wanSent.delete(index)
        this.unqueue(run, index)
        if (got === undefined) {
          // dropped unsent (a joining peer took the chunk over): the scheduler settled it then, and
          // may have planned it again since — a requestFailed now would settle that new request
          if (run.dropped?.has(j) !== true) this.fetchFailed(index, WAN, ctl, err)
          this.settled(1)
          return
        }
        landing.push(this.land(index, WAN, got.source.kind, got.blob)
          .catch((e: unknown) => { this.failLocally(e) })
          .finally(() => { this.settled(1) }))
      }, {
        signal: ctl.signal,
        soft: this.o.soft,
        onSent: j => {
          const index = indices[j]!
          this.wanSent.add(index)
          this.unqueue(run, index)
        },
        skip: j => run.dropped?.has(j) === true
      })
    } catch (err) {
      this.failLocally(err) // a bug of ours: fail the fetch, loudly
    } finally {
      await Promise.all(landing)
      this.wanRuns.delete(ctl)
      for (const i of indices) this.unqueue(run, i)
      if (reported < indices.length) this.settled(indices.length - reported)
    }
  }

  // (a later run may have queued the same chunk again: only this run's entry is removed)
  private unqueue (run: WanRun, index: number): void {
    if (this.wanQueued.get(index)?.run === run) this.wanQueued.delete(index)
  }

  /** A fetched blob could not be stored or counted (disk full), or a bug of ours: fatal to this fetch. */
  private failLocally (err: unknown): void {
    this.localFailure ??= err instanceof Error ? err : new Error(String(err))
  }

  /** Every request controller: LAN requests and WAN runs. */
  private controllers (): AbortController[] {
    return [...this.running.values(), ...this.wanRuns]
  }

  private settled (n: number): void {
    this.inFlight -= n
    if (this.inFlight === 0) this.drained?.()
    this.kick()
  }

  // A fetched, verified blob: stored, then counted as landed (for the scheduler, the site, the progress and the byte counters).
  private async land (index: number, from: string, source: string, blob: Uint8Array): Promise<void> {
    try {
      // absent: only chunks the presence scan found missing are planned (a duplicate landing just rewrites the same bytes)
      await this.o.store.put(this.table.cidBytes(index), blob, { durable: false, verified: true, absent: true })
      const stored = this.o.onStored?.(index, blob)
      if (stored !== undefined) await stored
    } catch (err) {
      this.scheduler.requestFailed(index, from)
      this.failLocally(err)
      return
    }
    if (from === WAN) {
      this.wanOkAt = Date.now()
      this.wanFailures = 0
      if (++this.wanLanded % 64 === 0) this.adaptWanLimit(false) // a fast WAN opens up sooner than the tick
    }
    this.cancel(this.scheduler.chunkLanded(index, from))
    this.o.have.set(index)
    this.o.site?.have(this.o.release, index)
    this.o.progress.blobs++
    this.o.progress.bytes += blob.byteLength
    try {
      const counted = this.o.onBlob(source, blob.byteLength)
      if (counted !== undefined) await counted
    } catch (err) {
      this.failLocally(err)
    }
  }

  private fetchFailed (index: number, from: string, ctl: AbortController, err: unknown): void {
    this.scheduler.requestFailed(index, from)
    if (ctl.signal.aborted || this.o.hard.aborted) return // cancelled: a duplicate landed, or stopping
    if (from === WAN) {
      if (this.o.soft.aborted || this.wanDown !== undefined) return
      this.wanFailed(err)
      return
    }
    // A lie (bytes that fail the cid, more than the signed size: PeerProtocolError) costs a
    // bad blob; a request that timed out (a peer trickling bytes keeps the stream alive, only
    // the request deadline catches it) costs slow points. Without the score, a LAN peer that
    // holds every chunk would be asked again and again, one request timeout at a time.
    const lie = err instanceof BlobVerifyError || err instanceof PeerProtocolError
    if (lie || err instanceof NetTimeoutError) {
      const banned = lie ? this.o.scores.badBlob(from) : this.o.scores.slow(from)
      if (lie) this.o.onBadBlob?.(from, banned, err)
      else this.o.onSlow?.(from, banned, err)
      if (banned) this.cancel(this.scheduler.peerBanned(from))
    }
    this.o.log?.('LAN fetch failed; the chunk is planned again', { peer: from, err })
  }

  // Every WAN source failed this blob: pause the WAN requests (the failures of one dead stream
  // arrive together and count once), or give the WAN up when nothing came from it for WAN_DOWN_MS.
  private wanFailed (err: unknown): void {
    const now = Date.now()
    if (now < this.wanHoldUntil) return
    if (now - this.wanOkAt >= (this.o.wanGraceMs ?? WAN_DOWN_MS)) {
      this.wanDown = err instanceof Error ? err : new Error(String(err))
      // the other WAN requests would each wait for the bucket only to fail the same way
      for (const c of this.wanRuns) c.abort()
      return
    }
    const pause = Math.min(WAN_RETRY_MAX_MS, WAN_RETRY_MS * 2 ** this.wanFailures++) * (1 + Math.random()) / 2 + WAN_RETRY_MS / 2
    this.wanHoldUntil = now + pause
    this.o.log?.('WAN fetch failed; WAN requests resume after a pause', { pauseMs: Math.round(pause), err })
    clearTimeout(this.wanHoldTimer)
    this.wanHoldTimer = setTimeout(() => { this.kick() }, pause + 1)
  }
}
