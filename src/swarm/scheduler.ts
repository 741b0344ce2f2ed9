// What to fetch next for one release, and from where. Deciding is kept apart from fetching (as
// Syncthing does): the scheduler holds the site's state — who is here, with what weight, holding
// which chunks, what I have asked for — and plan() turns it into requests; the caller performs
// them and reports back (chunkLanded, requestFailed, peerHave, peerLeft). No I/O, no timers: time
// comes from the injected clock, so a whole site can be simulated in a test.
//
// The rules (docs/swarm.md §3):
// - a chunk some present, unbanned site peer holds comes from the LAN, never the WAN;
// - otherwise only its owner fetches it from the WAN (ownership.ts); the others wait. The owner is
//   the first in rank that is present, unbanned and not stalled for that chunk, so takeovers walk
//   down the same ranking every peer computes, and chunks already landed stay where they are;
// - a peer may want only part of the table (delta blobs: peers on different base versions want
//   different blob sets): I plan only what I want, and a chunk's WAN owner is ranked among me and
//   the members that want it (a member that said nothing about its wants wants everything);
// - LAN requests go rarest first, spread over the holders with a per-peer cap, and at the tail
//   (endgame) the last chunks are asked of more than one peer; the first copy in cancels the rest.

import { InvalidArgumentError } from '../core/errors.js'
import { HaveMap } from './have-map.js'
import { compareCandidates, rendezvousKey } from './ownership.js'

/** The `from` of a WAN request (libp2p peer ids never spell it). */
export const WAN = 'wan'

/** An owner that announces nothing for this long loses its unannounced chunks to the next in rank. */
export const STALL_MS = 30_000
/** LAN requests in flight per peer: enough to keep a long-lived stream busy (docs/protocol.md). */
export const PER_PEER_IN_FLIGHT = 8
/** WAN requests I keep in flight at once (the token bucket meters the bytes). */
export const WAN_IN_FLIGHT = 8
/** Endgame starts when this many chunks or fewer are missing. */
export const ENDGAME_CHUNKS = 8
/** Requests per chunk during the endgame. */
export const ENDGAME_COPIES = 2

export interface SchedulerOptions {
  /** My peer id. */
  self: string
  /** My ownership weight (ownership.ts). */
  weight: number
  /** The manifest's (distinct) chunk table, by index: hex cids, or a ChunkTable (hex made on demand). */
  cids: readonly string[] | { readonly length: number, cid: (index: number) => string }
  /** What I already hold (verified on disk, e.g. after a restart). */
  have?: HaveMap
  /** What I want to hold (default: the whole table); grows with want(). */
  want?: HaveMap
  now?: () => number
  /** Is this peer banned (peer-scores.ts)? Banned peers are neither asked nor waited for. */
  isBanned?: (peer: string) => boolean
  stallMs?: number
  perPeerInFlight?: number
  wanInFlight?: number
  endgameChunks?: number
  endgameCopies?: number
  /**
   * The unweighted rendezvous key of (peer, cid) (ownership.ts). A simulation of a whole site
   * passes one cache shared by its peers' schedulers: the key is pure, and a SHA-256 per peer per
   * chunk per scheduler is what a site of 200 cannot afford to compute 200 times.
   */
  rendezvousKey?: (peerId: string, cid: string) => number
}

export interface LanRequest { index: number, peer: string }

export interface Plan {
  /** Chunk indices to fetch from a seed, in order. */
  wan: number[]
  /** Chunks to fetch from site peers. */
  lan: LanRequest[]
}

interface Member {
  id: string
  weight: number
  have: HaveMap
  /** What it wants to hold; undefined: the whole table. */
  want: HaveMap | undefined
  /** Last time it announced anything for this release (or joined): an owner making progress is not stalled. */
  progress: number
  inFlight: number
}

interface Ownership { owner: string, since: number, stalled: Set<string> }

/** A peer's share of the site's WAN budget: `wanRate` split evenly among the peers fetching from the WAN now (0 = unlimited). */
export function siteWanShare (wanRate: number, ownersFetchingNow: number): number {
  if (!(wanRate > 0)) return 0
  return Math.max(1, Math.floor(wanRate / Math.max(1, ownersFetchingNow)))
}

function sameWants (a: HaveMap | undefined, b: HaveMap | undefined): boolean {
  if (a === undefined || b === undefined) return a === b
  return a.count === b.count && Buffer.from(a.encode()).equals(b.encode())
}

// A per-peer tie-break for equally rare chunks, so that peers of a site do not all start with the
// same chunk and queue on the same holder.
function mix32 (x: number): number {
  x = Math.imul(x ^ (x >>> 16), 0x7feb352d)
  x = Math.imul(x ^ (x >>> 15), 0x846ca68b)
  return (x ^ (x >>> 16)) >>> 0
}

function salt (s: string): number {
  let h = 0x811c9dc5
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193)
  return h >>> 0
}

export class Scheduler {
  readonly self: string
  readonly chunkCount: number
  private weight: number
  private readonly cidOf: (index: number) => string
  private readonly mine: HaveMap
  private readonly wanted: HaveMap
  /** Wanted chunks held. */
  private wantedHeld = 0
  private readonly now: () => number
  private readonly isBanned: (peer: string) => boolean
  private readonly rendezvousKey: (peerId: string, cid: string) => number
  private readonly o: { stallMs: number, perPeerInFlight: number, wanInFlight: number, endgameChunks: number, endgameCopies: number }
  /** WAN requests planned at most at once now (≤ the wanInFlight option; setWanLimit). */
  private wanLimit: number
  private readonly members = new Map<string, Member>()
  /** Unweighted rendezvous keys by peer, per chunk index (NaN until computed). */
  private readonly keys = new Map<string, Float64Array>()
  private readonly owners = new Map<number, Ownership>()
  /** In flight by chunk: the peers asked (WAN for a seed). */
  private readonly flight = new Map<number, Set<string>>()
  /** Peers that failed a chunk: asked again only when no one else holds it. */
  private readonly failed = new Map<number, Set<string>>()
  private wanFlight = 0
  private readonly salt: number
  /** Present members holding each chunk, banned or not: rarity without a scan of every map. */
  private readonly avail: Int32Array
  /** Chunk indices in this peer's tie-break order, so equally rare chunks need no sort. */
  private readonly order: Uint32Array
  /** order[0 … heldPrefix) are all held (mine never shrinks): plan() starts past them. */
  private heldPrefix = 0
  /**
   * Ranking per chunk, computed on demand, dropped once I hold the chunk; a peer joining, leaving
   * or changing weight is moved in or out of each cached ranking (re-sorting every chunk for every
   * join made a site of 200 joining one by one cost each peer 200 full re-rankings).
   */
  private ranks: Array<string[] | undefined> = []

  constructor (o: SchedulerOptions) {
    this.self = o.self
    this.weight = o.weight
    const cids = o.cids
    this.cidOf = Array.isArray(cids) ? (i) => (cids as readonly string[])[i] as string : (i) => (cids as { cid: (index: number) => string }).cid(i)
    this.chunkCount = o.cids.length
    if (o.have !== undefined && o.have.chunkCount !== this.chunkCount) {
      throw new InvalidArgumentError(`have-map of ${o.have.chunkCount} chunks for a table of ${this.chunkCount}`)
    }
    this.mine = o.have?.clone() ?? new HaveMap(this.chunkCount)
    if (o.want !== undefined && o.want.chunkCount !== this.chunkCount) {
      throw new InvalidArgumentError(`want-map of ${o.want.chunkCount} chunks for a table of ${this.chunkCount}`)
    }
    this.wanted = o.want?.clone() ?? HaveMap.full(this.chunkCount)
    for (let i = 0; i < this.chunkCount; i++) if (this.wanted.has(i) && this.mine.has(i)) this.wantedHeld++
    this.now = o.now ?? (() => Date.now())
    this.isBanned = o.isBanned ?? (() => false)
    this.rendezvousKey = o.rendezvousKey ?? rendezvousKey
    this.o = {
      stallMs: o.stallMs ?? STALL_MS,
      perPeerInFlight: o.perPeerInFlight ?? PER_PEER_IN_FLIGHT,
      wanInFlight: o.wanInFlight ?? WAN_IN_FLIGHT,
      endgameChunks: o.endgameChunks ?? ENDGAME_CHUNKS,
      endgameCopies: o.endgameCopies ?? ENDGAME_COPIES
    }
    this.wanLimit = this.o.wanInFlight
    this.salt = salt(o.self)
    this.avail = new Int32Array(this.chunkCount)
    const tie = (i: number): number => mix32(i ^ this.salt)
    this.order = Uint32Array.from({ length: this.chunkCount }, (_, i) => i).sort((a, b) => tie(a) - tie(b) || a - b)
  }

  /** My have-map (a copy). */
  get have (): HaveMap {
    return this.mine.clone()
  }

  /** Every chunk I want is held. */
  get done (): boolean {
    return this.wantedHeld === this.wanted.count
  }

  /** Chunks I want and still miss. */
  get missing (): number {
    return this.wanted.count - this.wantedHeld
  }

  /** Do I want chunk `index`? */
  wants (index: number): boolean {
    return this.wanted.has(index)
  }

  /** My want-map (a copy). */
  get wantMap (): HaveMap {
    return this.wanted.clone()
  }

  /**
   * I want these chunks too (a delta that did not rebuild: its targets are fetched whole). Their
   * ownership rankings now include me.
   */
  want (indices: Iterable<number>): void {
    for (const i of indices) {
      if (!Number.isSafeInteger(i) || i < 0 || i >= this.chunkCount || !this.wanted.set(i)) continue
      if (this.mine.has(i)) this.wantedHeld++
      this.ranks[i] = undefined
    }
  }

  /** Am I fetching from the WAN right now (counts me in siteWanShare)? */
  get fetchingWan (): boolean {
    return this.wanFlight > 0
  }

  /** Plans at most `n` WAN requests at once from now on (1 … the wanInFlight option). */
  setWanLimit (n: number): void {
    this.wanLimit = Math.max(1, Math.min(this.o.wanInFlight, Math.floor(n)))
  }

  setWeight (weight: number): void {
    if (weight === this.weight) return
    this.weight = weight
    this.reRank(this.self, true)
  }

  private count (map: HaveMap, delta: 1 | -1): void {
    for (let i = 0; i < this.chunkCount; i++) if (map.has(i)) this.avail[i]! += delta
  }

  /**
   * A site peer interested in the release (hello): its weight, full have-map and, when it wants
   * only part of the table, its want-map (undefined: everything). Again for an update.
   *
   * Returns my WAN requests in flight that the newcomer (or its new weight or wants) takes from me:
   * chunks it now owns or already holds, among those `cancellable` (the caller's: not yet sent to
   * the seed, so cancelling wastes no byte). The caller cancels them; a WAN request kept after a join
   * is a chunk crossing the WAN twice, once for me and once for its new owner (the first peer to
   * learn of a release fetched ~9 MB of chunks alone before the others' hellos came in; 1.1 × the
   * release from the seed at 10 endpoints, docs/bench-swarm.md).
   */
  peerJoined (peer: string, weight: number, have?: HaveMap | Uint8Array, want?: HaveMap | Uint8Array, cancellable: (index: number) => boolean = () => true): LanRequest[] {
    if (peer === this.self || peer === WAN) throw new InvalidArgumentError(`peer id ${peer} is not a site peer`)
    const map = have === undefined
      ? new HaveMap(this.chunkCount)
      : have instanceof HaveMap ? have.clone() : HaveMap.decode(have, this.chunkCount)
    if (map.chunkCount !== this.chunkCount) throw new InvalidArgumentError(`have-map of ${map.chunkCount} chunks for a table of ${this.chunkCount}`)
    const wants = want === undefined ? undefined : want instanceof HaveMap ? want.clone() : HaveMap.decode(want, this.chunkCount)
    if (wants !== undefined && wants.chunkCount !== this.chunkCount) throw new InvalidArgumentError(`want-map of ${wants.chunkCount} chunks for a table of ${this.chunkCount}`)
    const m = this.members.get(peer)
    // A new peer, a new weight or a new want-map moves the peer in the cached rankings (reRank puts it only where it wants the chunk).
    const moved = m === undefined || m.weight !== weight || !sameWants(m.want, wants)
    if (m === undefined) this.members.set(peer, { id: peer, weight, have: map, want: wants, progress: this.now(), inFlight: 0 })
    else { this.count(m.have, -1); m.weight = weight; m.have = map; m.want = wants; m.progress = this.now() }
    this.count(map, 1)
    if (moved) this.reRank(peer, true)
    const dropped: LanRequest[] = []
    if (this.wanFlight === 0) return dropped
    for (const [index, set] of this.flight) { // (settle may delete the entry being visited: allowed for a Map)
      if (!set.has(WAN) || !cancellable(index)) continue
      if ((map.has(index) && !this.isBanned(peer)) || (moved && this.owner(index) !== this.self)) {
        this.settle(index, WAN)
        dropped.push({ index, peer: WAN })
      }
    }
    return dropped
  }

  /** A peer's have increment (indices already bounds-checked by decodeIncrement). */
  peerHave (peer: string, indices: Iterable<number>): void {
    const m = this.members.get(peer)
    if (m === undefined) return // not (yet) a member: its hello will carry the full map
    for (const i of indices) if (Number.isSafeInteger(i) && i >= 0 && i < this.chunkCount && m.have.set(i)) this.avail[i]!++
    m.progress = this.now()
  }

  /** A peer left the site: its ownership passes on; its requests in flight are dropped. */
  peerLeft (peer: string): LanRequest[] {
    const m = this.members.get(peer)
    if (m === undefined) return []
    this.members.delete(peer)
    this.keys.delete(peer)
    this.count(m.have, -1)
    this.reRank(peer, false)
    const dropped: LanRequest[] = []
    for (const [index, set] of this.flight) {
      if (set.delete(peer)) {
        dropped.push({ index, peer })
        if (set.size === 0) this.flight.delete(index)
      }
    }
    return dropped
  }

  /**
   * A peer was just banned: its requests in flight are dropped (returned, for the caller to
   * cancel) and planned elsewhere; it stays a member, unasked and unwaited-for while banned.
   */
  peerBanned (peer: string): LanRequest[] {
    const dropped: LanRequest[] = []
    for (const [index, set] of [...this.flight]) {
      if (set.has(peer)) { this.settle(index, peer); dropped.push({ index, peer }) }
    }
    return dropped
  }

  /**
   * A verified chunk landed (from a peer, or WAN). Returns the other requests for it still in
   * flight, which the caller should cancel (endgame duplicates, or a WAN fetch overtaken).
   */
  chunkLanded (index: number, from: string): LanRequest[] {
    if (this.mine.set(index) && this.wanted.has(index)) this.wantedHeld++
    this.ranks[index] = undefined // plan() never asks who owns a chunk I hold
    this.settle(index, from)
    this.failed.delete(index)
    this.owners.delete(index)
    const rest = [...(this.flight.get(index) ?? [])].map(peer => ({ index, peer }))
    for (const r of rest) this.settle(index, r.peer)
    return rest
  }

  /** A request failed (error, timeout, bad blob, cancelled): the chunk is planned again. */
  requestFailed (index: number, from: string): void {
    if (!this.settle(index, from)) return
    if (from === WAN) return // my own WAN fetch: retried as long as I own the chunk
    let s = this.failed.get(index)
    if (s === undefined) { s = new Set(); this.failed.set(index, s) }
    s.add(from)
  }

  private settle (index: number, from: string): boolean {
    const set = this.flight.get(index)
    if (set === undefined || !set.delete(from)) return false
    if (set.size === 0) this.flight.delete(index)
    if (from === WAN) this.wanFlight--
    else {
      const m = this.members.get(from)
      if (m !== undefined) m.inFlight--
    }
    return true
  }

  private key (peer: string, index: number): number {
    let k = this.keys.get(peer)
    if (k === undefined) { k = new Float64Array(this.chunkCount).fill(NaN); this.keys.set(peer, k) }
    let v = k[index]!
    if (Number.isNaN(v)) { v = this.rendezvousKey(peer, this.cidOf(index)); k[index] = v }
    return v
  }

  /** Candidates for chunk `index`, best first: me and every member that wants it, banned or not (rank is global). */
  rank (index: number): string[] {
    return [...this.ranking(index)]
  }

  private ranking (index: number): readonly string[] {
    const cached = this.ranks[index]
    if (cached !== undefined) return cached
    const c = [{ id: this.self, weight: this.weight, k: this.key(this.self, index) }]
    for (const m of this.members.values()) if (m.want?.has(index) !== false) c.push({ id: m.id, weight: m.weight, k: this.key(m.id, index) })
    c.sort((a, b) => compareCandidates(a, a.k, b, b.k))
    const r = c.map(p => p.id)
    this.ranks[index] = r
    return r
  }

  private weightOf (id: string): number {
    return id === this.self ? this.weight : this.members.get(id)!.weight
  }

  /** Takes `id` out of every cached ranking and, when `present`, puts it back where its (new) weight ranks it. */
  private reRank (id: string, present: boolean): void {
    for (let i = 0; i < this.ranks.length; i++) {
      const r = this.ranks[i]
      if (r === undefined) continue
      const at = r.indexOf(id)
      if (at >= 0) r.splice(at, 1)
      if (!present || this.members.get(id)?.want?.has(i) === false) continue
      const me = { id, weight: this.weightOf(id) }
      const k = this.key(id, i)
      let lo = 0
      let hi = r.length
      while (lo < hi) {
        const mid = (lo + hi) >> 1
        const other = r[mid]!
        if (compareCandidates({ id: other, weight: this.weightOf(other) }, this.key(other, i), me, k) < 0) lo = mid + 1
        else hi = mid
      }
      r.splice(lo, 0, id)
    }
  }

  /**
   * Who fetches chunk `index` from the WAN as of now: the first in rank that is here, unbanned,
   * and not stalled on it. An owner is stalled once it has owned the chunk for stallMs without
   * announcing it and without announcing anything else either (an owner making progress under a
   * small WAN share is slow, not stuck). Each new owner gets a fresh stall window.
   */
  owner (index: number): string {
    const t = this.now()
    let own = this.owners.get(index)
    for (const id of this.ranking(index)) {
      if (id !== this.self && this.isBanned(id)) continue
      if (own?.stalled.has(id) === true) continue
      if (own === undefined || own.owner !== id) {
        own = { owner: id, since: t, stalled: own?.stalled ?? new Set() }
        this.owners.set(index, own)
      }
      if (id === this.self) return id
      const m = this.members.get(id)!
      if (m.have.has(index)) return id
      if (t - Math.max(own.since, m.progress) < this.o.stallMs) return id
      own.stalled.add(id)
    }
    return this.self // unreachable: I am always a candidate and never stalled in my own eyes
  }

  /**
   * The requests to start now; they count as in flight until chunkLanded or requestFailed.
   * Call it after events that free capacity or add sources, and on a timer of about stallMs / 4
   * so stalls are noticed. One pass over the chunk table, no sort: cheap enough per event.
   */
  plan (): Plan {
    const wan: number[] = []
    const lan: LanRequest[] = []
    const banned = [...this.members.values()].filter(m => this.isBanned(m.id))
    const sources = (i: number): number => {
      let n = this.avail[i]!
      for (const m of banned) if (m.have.has(i)) n--
      return n
    }
    const endgame = this.missing <= this.o.endgameChunks
    const copies = endgame ? this.o.endgameCopies : 1
    // Rarest first: bucket by number of sources, each bucket already in tie-break order.
    const buckets: number[][] = []
    // (held chunks only accumulate: the walk starts past the run of them at the front of the order)
    while (this.heldPrefix < this.order.length && this.mine.has(this.order[this.heldPrefix]!)) this.heldPrefix++
    const alone = this.members.size === 0
    for (let k = this.heldPrefix; k < this.order.length; k++) {
      // alone in the site, nothing comes from the LAN: once the WAN is full there is nothing left to plan
      if (alone && this.wanFlight >= this.wanLimit) break
      const i = this.order[k]!
      if (this.mine.has(i) || !this.wanted.has(i)) continue
      const n = sources(i)
      const asked = this.flight.get(i)
      if (n === 0) {
        // Nobody here holds it: its owner fetches it from the WAN. owner() (which also notices
        // stalls) runs only while I have WAN room: ranking every chunk of a large release on every
        // plan cost seconds (a SHA-256 per peer per chunk); a stall matters only when I can act on it.
        if (asked !== undefined || this.wanFlight >= this.wanLimit || this.owner(i) !== this.self) continue
        wan.push(i)
        this.flight.set(i, new Set([WAN]))
        this.wanFlight++
        continue
      }
      if (asked !== undefined && (asked.size >= copies || asked.has(WAN))) continue
      ;(buckets[n] ??= []).push(i)
    }
    wan.sort((a, b) => a - b)
    let free = 0
    for (const m of this.members.values()) if (!banned.includes(m)) free += Math.max(0, this.o.perPeerInFlight - m.inFlight)
    for (const bucket of buckets) {
      for (const i of bucket ?? []) {
        if (free <= 0) return { wan, lan }
        const asked = this.flight.get(i)
        const failed = this.failed.get(i)
        const holders = [...this.members.values()].filter(m => m.have.has(i) && !banned.includes(m))
        let pool = holders.filter(m => m.inFlight < this.o.perPeerInFlight && asked?.has(m.id) !== true)
        const fresh = pool.filter(m => failed?.has(m.id) !== true)
        if (fresh.length > 0) pool = fresh
        else if (holders.some(m => failed?.has(m.id) !== true)) continue // a good holder is busy: wait for it
        const want = copies - (asked?.size ?? 0)
        pool.sort((a, b) => a.inFlight - b.inFlight || mix32(salt(a.id) ^ i) - mix32(salt(b.id) ^ i))
        for (const m of pool.slice(0, want)) {
          lan.push({ index: i, peer: m.id })
          m.inFlight++
          free--
          let set = this.flight.get(i)
          if (set === undefined) { set = new Set(); this.flight.set(i, set) }
          set.add(m.id)
        }
      }
    }
    return { wan, lan }
  }

  /** Requests in flight (for status and tests). */
  inFlight (): LanRequest[] {
    return [...this.flight].flatMap(([index, set]) => [...set].map(peer => ({ index, peer })))
  }
}
