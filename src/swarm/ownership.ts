// Which peer of a site fetches a chunk over the WAN. Weighted rendezvous hashing (Schindelhauer &
// Schomaker, "Weighted distributed hash tables", 2005): each peer scores −weight / ln(u) with u
// in (0, 1) drawn from a hash of (peerId, cid), and the highest score owns the chunk. Every peer
// computes the same ranking from the same inputs, with no election and no coordinator; a peer
// that leaves only hands on the chunks it owned (everyone else's score is unchanged); and a peer's
// share of the chunks is its weight over the sum of weights. The weights follow 1E Nomad's master
// election — a wired desktop on mains carries more than a laptop on Wi-Fi — but per chunk, so no
// single machine carries the whole site.

import { hash } from 'node:crypto'

export type Power = 'ac' | 'battery'
export type Link = 'wired' | 'wifi' | 'metered' | 'unknown'

/** What a peer reports about itself (daemon/host-info). */
export interface HostReport { power: Power, link: Link }

/**
 * Weight by link on mains power. A wired desktop takes 2.5× the chunks of a Wi-Fi laptop (Wi-Fi
 * shares its air with the LAN traffic the chunk then causes); an unknown link counts as a weak
 * Wi-Fi. Battery and metered links weigh 0: they own chunks only when no one else is left.
 */
export const LINK_WEIGHTS: Readonly<Record<Link, number>> = Object.freeze({
  wired: 100,
  wifi: 40,
  unknown: 20,
  metered: 0
})

export function ownershipWeight (report: HostReport): number {
  if (report.power === 'battery') return 0
  return LINK_WEIGHTS[report.link]
}

export interface Candidate {
  id: string
  /** ≥ 0; site.ts accepts 0…1000 from the wire. */
  weight: number
}

const TWO_53 = 2 ** 53

/**
 * u in (0, 1) for (peerId, cid): the first 53 bits of SHA-256(utf8(peerId) ‖ 0x00 ‖ utf8(cid)),
 * plus one half, over 2^53 — never 0 nor 1, so ln(u) is finite and negative. The zero byte keeps
 * ("ab", "c…") and ("a", "bc…") apart.
 */
export function rendezvousUnit (peerId: string, cid: string): number {
  // One-shot hash of one buffer: a Hash object and two encodes per call were ~24 µs, and a
  // scheduler computes one per site peer per chunk (112 000 for 10 peers and a 200 MiB release).
  const prefix = peerPrefix(peerId)
  const n = Buffer.byteLength(cid, 'utf8')
  if (scratch.byteLength < prefix.byteLength + n) scratch = Buffer.allocUnsafe(2 * (prefix.byteLength + n))
  prefix.copy(scratch, 0)
  scratch.write(cid, prefix.byteLength, 'utf8')
  const d = hash('sha256', scratch.subarray(0, prefix.byteLength + n), 'buffer')
  const hi = d.readUInt32BE(0) >>> 11 // 21 bits
  const lo = d.readUInt32BE(4) // 32 bits
  return (hi * 2 ** 32 + lo + 0.5) / TWO_53
}

let scratch = Buffer.allocUnsafe(256)
/** utf8(peerId) ‖ 0x00 by peer id; a site has a few hundred peers at most, the cap is for safety. */
const prefixes = new Map<string, Buffer>()

function peerPrefix (peerId: string): Buffer {
  let p = prefixes.get(peerId)
  if (p === undefined) {
    if (prefixes.size >= 4096) prefixes.clear()
    p = Buffer.concat([Buffer.from(peerId, 'utf8'), Buffer.of(0)])
    prefixes.set(peerId, p)
  }
  return p
}

/** −1 / ln(u): multiply by a weight to get the peer's score for the chunk (cache it, it is the costly part). */
export function rendezvousKey (peerId: string, cid: string): number {
  return -1 / Math.log(rendezvousUnit(peerId, cid))
}

/** The weighted score; 0 for a zero weight. */
export function rendezvousScore (peerId: string, cid: string, weight: number): number {
  return weight > 0 ? weight * rendezvousKey(peerId, cid) : 0
}

/**
 * Orders two candidates best first, given their unweighted keys. Zero-weight peers come after all
 * others, among themselves by their unweighted key, so a site of battery laptops still spreads the
 * chunks instead of piling them on one machine. Ties (equal scores) fall back to the id, which
 * every peer sees the same.
 */
export function compareCandidates (a: Candidate, ka: number, b: Candidate, kb: number): number {
  const za = a.weight > 0 ? 0 : 1
  const zb = b.weight > 0 ? 0 : 1
  if (za !== zb) return za - zb
  const sa = za === 0 ? a.weight * ka : ka
  const sb = zb === 0 ? b.weight * kb : kb
  if (sa !== sb) return sb - sa
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0
}

/** The peers ranked to own `cid`, best first; the first is the owner, the rest take over in order. */
export function rankOwners<T extends Candidate> (cid: string, peers: readonly T[]): T[] {
  const keyed = peers.map(p => ({ p, k: rendezvousKey(p.id, cid) }))
  keyed.sort((x, y) => compareCandidates(x.p, x.k, y.p, y.k))
  return keyed.map(x => x.p)
}

/** The owner of `cid` among `peers` (undefined for an empty site). */
export function ownerOf<T extends Candidate> (cid: string, peers: readonly T[]): T | undefined {
  let best: T | undefined
  let bestK = 0
  for (const p of peers) {
    const k = rendezvousKey(p.id, cid)
    if (best === undefined || compareCandidates(p, k, best, bestK) < 0) { best = p; bestK = k }
  }
  return best
}
