// Who on the LAN has misbehaved. A blob that fails its cid is either a lie or a broken disk; a
// single one can be bad luck, so it costs penalty points and only past a threshold is the peer
// banned for a while (its chunks are then fetched elsewhere; the install never sees its bytes,
// which failed verification anyway). Points fade with time so that rare, spread-out faults never
// add up to a ban, and each ban of the same peer lasts twice the last, up to a cap, so a peer
// that keeps lying spends most of its time banned.

/** Points for one blob that failed its cid. */
export const BAD_BLOB_PENALTY = 10
/** Points for a request that trickled in far below the site's usual rate, or timed out. */
export const SLOW_PENALTY = 2
/** Points at which a peer is banned: two bad blobs, or one and a run of slow replies. */
export const BAN_THRESHOLD = 20
/** Points that fade per minute. */
export const DECAY_PER_MINUTE = 1
/** First ban; later bans double up to MAX_BAN_MS. */
export const BAN_MS = 10 * 60_000
export const MAX_BAN_MS = 6 * 60 * 60_000

export interface PeerScoresOptions {
  now?: () => number
  badBlobPenalty?: number
  slowPenalty?: number
  banThreshold?: number
  decayPerMinute?: number
  banMs?: number
  maxBanMs?: number
}

interface PeerRecord { points: number, at: number, bans: number, until: number }

export class PeerScores {
  private readonly now: () => number
  private readonly o: Required<Omit<PeerScoresOptions, 'now'>>
  private readonly peers = new Map<string, PeerRecord>()

  constructor (o: PeerScoresOptions = {}) {
    this.now = o.now ?? (() => Date.now())
    this.o = {
      badBlobPenalty: o.badBlobPenalty ?? BAD_BLOB_PENALTY,
      slowPenalty: o.slowPenalty ?? SLOW_PENALTY,
      banThreshold: o.banThreshold ?? BAN_THRESHOLD,
      decayPerMinute: o.decayPerMinute ?? DECAY_PER_MINUTE,
      banMs: o.banMs ?? BAN_MS,
      maxBanMs: o.maxBanMs ?? MAX_BAN_MS
    }
  }

  private record (peer: string): PeerRecord {
    const t = this.now()
    let r = this.peers.get(peer)
    if (r === undefined) {
      r = { points: 0, at: t, bans: 0, until: 0 }
      this.peers.set(peer, r)
    }
    r.points = Math.max(0, r.points - (t - r.at) / 60_000 * this.o.decayPerMinute)
    r.at = t
    return r
  }

  private penalize (peer: string, points: number): boolean {
    const r = this.record(peer)
    if (r.until > r.at) return true // already banned: the ban stands, no extension for in-flight leftovers
    r.points += points
    if (r.points < this.o.banThreshold) return false
    r.points = 0
    r.until = r.at + Math.min(this.o.maxBanMs, this.o.banMs * 2 ** r.bans)
    r.bans++
    return true
  }

  /** A blob from `peer` failed its cid. True when the peer is (now) banned. */
  badBlob (peer: string): boolean {
    return this.penalize(peer, this.o.badBlobPenalty)
  }

  /** A request to `peer` trickled or timed out. True when the peer is (now) banned. */
  slow (peer: string): boolean {
    return this.penalize(peer, this.o.slowPenalty)
  }

  isBanned (peer: string): boolean {
    const r = this.peers.get(peer)
    return r !== undefined && r.until > this.now()
  }

  /** When the ban ends (ms on the injected clock), or undefined when not banned. */
  bannedUntil (peer: string): number | undefined {
    const r = this.peers.get(peer)
    return r !== undefined && r.until > this.now() ? r.until : undefined
  }

  /** Current penalty points (after fading). */
  points (peer: string): number {
    return this.peers.has(peer) ? this.record(peer).points : 0
  }

  /** Peers banned right now. */
  banned (): string[] {
    const t = this.now()
    return [...this.peers].filter(([, r]) => r.until > t).map(([id]) => id)
  }
}
