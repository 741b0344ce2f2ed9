// Who is in my site, and what they hold. A site is the set of peers mDNS finds on this LAN, or —
// when the config sets a `site` label — the peers sharing that label (labels win: a labelled peer
// ignores LAN peers with another label; the seed's directory introduces label mates that mDNS
// cannot see). Members exchange have-maps over /shoal/have/1 (docs/protocol.md §6.7): a full
// bitfield per release when they meet, then increments as chunks land.
import type { PeerId, PeerInfo } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { DecodeError } from '../core/errors.js'
import { LABEL } from '../core/manifest.js'
import { HEX64 } from '../core/signed.js'
import { HAVE_PROTOCOL, HAVES_PROTOCOL } from '../net/constants.js'
import { decodeControl, encodeControl, headerString, headerStrings } from '../net/control.js'
import { PeerProtocolError } from '../net/errors.js'
import type { ShoalNode } from '../net/node.js'
import { handlePushStream, PushStreams } from '../net/push-stream.js'
import { callRpc, handleRpc } from '../net/rpc.js'
import { decodeIncrement, encodeIncrement, MAX_CHUNKS, MAX_INCREMENT } from './have-map.js'

/** Releases one hello may describe. */
export const MAX_HELLO_RELEASES = 64
/** Increments are batched this long before they go out. */
export const FLUSH_MS = 100
/** Bytes of the have-map of the largest chunk table a manifest may hold. */
const MAX_BITFIELD_BYTES = Math.ceil(MAX_CHUNKS / 8)
const LIMITS = { maxRequestBytes: 8 * 1024 * 1024, maxResponseBytes: 8 * 1024 * 1024, timeoutMs: 15_000 }
/** Largest frame on /shoal/haves/1: one increment of MAX_INCREMENT indices (≤ 3 bytes each) and its header. */
const HAVES_MAX_FRAME = 1024 * 1024

/** Increments waiting to go to one member, merged while an earlier send drains. */
interface Outbox {
  pending: Map<string, Set<number>>
  sending: boolean
  /** The member does not serve /shoal/haves/1 (an older version): increments go as RPCs. */
  legacy: boolean
}

export interface SiteMember {
  id: string
  peerId: PeerId
  label: string | null
  /** Ownership weight the peer reports (see ownership.ts). */
  weight: number
  /** Is it fetching from the WAN right now (its share of the site's wanRate). */
  wan: boolean
  /** Held chunks by release (manifest id): its have-map as last said in a hello, increments applied. */
  haves: Map<string, Uint8Array>
  /** Wanted chunks by release, for the releases whose hello said it wants only part of the table. */
  wants: Map<string, Uint8Array>
}

export interface SiteEvents {
  /** A member's have-map grew (or a member joined): the scheduler may have new sources. */
  onHave?: (member: SiteMember, release: string, indices: number[] | 'all') => void
  /** A member left (disconnected): its ownership passes on. */
  onLeave?: (member: SiteMember) => void
}

export interface LocalState {
  /** My have-maps for the releases I work on or hold installed (bitfields by manifest id). */
  haves: () => Map<string, Uint8Array>
  /** My want-maps, for releases being fetched of which I want only part (delta blobs); the rest: everything. */
  wants?: () => Map<string, Uint8Array>
  weight: () => number
  wan: () => boolean
}


export class Site {
  readonly members = new Map<string, SiteMember>()
  /** Peers mDNS found on this LAN (whatever their label). */
  private readonly lan = new Set<string>()
  private readonly pending = new Map<string, Set<number>>()
  private flushTimer: NodeJS.Timeout | undefined
  private unhandle: (() => Promise<void>) | undefined
  private unhandleHaves: (() => Promise<void>) | undefined
  private readonly pushes: PushStreams
  private readonly outboxes = new Map<string, Outbox>()
  private unlistenLan: (() => void) | undefined
  private readonly onDiscovery = (peer: PeerInfo): void => {
    const id = peer.id
    if (id.equals(this.node.peerId)) return
    this.lan.add(id.toString())
    if (this.members.has(id.toString())) return
    // the addresses first: libp2p merges them too, but not necessarily before we dial
    void this.node.peerStore.merge(id, { multiaddrs: peer.multiaddrs })
      .then(async () => await this.meet(id), async () => await this.meet(id))
  }

  private readonly onDisconnect = (evt: CustomEvent<PeerId>): void => {
    const m = this.members.get(evt.detail.toString())
    if (m === undefined) return
    this.forget(m.id)
    this.events.onLeave?.(m)
  }

  /** No longer a member: its increments outbox and stream go too. */
  private forget (id: string): void {
    this.members.delete(id)
    this.outboxes.delete(id)
    this.pushes.drop(id)
  }

  /** Peers not to talk to (banned by peer scores); set by the owner of this Site. */
  banned: (peer: string) => boolean = () => false

  constructor (
    private readonly node: ShoalNode,
    readonly label: string | null,
    private readonly local: LocalState,
    private readonly events: SiteEvents = {}
  ) {
    this.pushes = new PushStreams(node, HAVES_PROTOCOL, { maxFrameBytes: HAVES_MAX_FRAME })
  }

  async start (): Promise<void> {
    this.unhandle = await handleRpc(this.node, HAVE_PROTOCOL, async (req, peer) => await this.serve(req, peer), { ...LIMITS, maxInboundStreams: 64 })
    this.unhandleHaves = await handlePushStream(this.node, HAVES_PROTOCOL, (msg, peer) => { this.applyHave(decodeHaveRequest(msg), peer) }, { maxFrameBytes: HAVES_MAX_FRAME })
    this.unlistenLan = this.node.services.mdns?.onAnswer(this.onDiscovery)
    this.node.addEventListener('peer:disconnect', this.onDisconnect)
  }

  async stop (): Promise<void> {
    clearTimeout(this.flushTimer)
    this.unlistenLan?.()
    this.node.removeEventListener('peer:disconnect', this.onDisconnect)
    await this.unhandle?.()
    await this.unhandleHaves?.()
    this.pushes.close()
    this.outboxes.clear()
  }

  /** Does a peer with `label`, found on the LAN or not, belong to my site? */
  private belongs (id: string, label: string | null): boolean {
    if (this.label !== null) return label === this.label
    return label === null && this.lan.has(id)
  }

  /**
   * Says hello again to LAN peers that are not members yet (a first hello can fail: the peer was
   * still starting, a dial raced another) — mDNS only re-announces every few seconds.
   */
  async refresh (): Promise<void> {
    const pending = [...this.lan].filter(id => !this.members.has(id))
    await Promise.allSettled(pending.map(async id => await this.meet(peerIdFromString(id))))
  }

  /** Introduces a peer by address (the seed's directory of label mates); meets it. */
  async introduce (peerId: PeerId, addrs: string[]): Promise<void> {
    if (peerId.equals(this.node.peerId) || this.members.has(peerId.toString())) return
    await this.node.peerStore.merge(peerId, { multiaddrs: addrs.map(a => multiaddr(a)) })
    await this.meet(peerId)
  }

  /** Exchanges hellos with a peer; it becomes a member when it belongs to my site. */
  async meet (peerId: PeerId): Promise<SiteMember | null> {
    try {
      const res = await callRpc(this.node, peerId, HAVE_PROTOCOL, this.helloMessage(peerId.toString()), LIMITS)
      return this.learn(peerId, res)
    } catch {
      return null // not a shoal endpoint, or gone: the next discovery or directory round retries
    }
  }

  /** `lan: true` tells `to` that mDNS found it on my LAN, so membership is mutual at once (mDNS queries run only every few seconds). */
  private helloMessage (to: string): Uint8Array {
    const haves = [...this.local.haves()].slice(0, MAX_HELLO_RELEASES)
    const named = new Set(haves.map(([id]) => id))
    const wants = [...this.local.wants?.() ?? []].filter(([id]) => named.has(id))
    return encodeControl({
      op: 'hello',
      site: this.label,
      weight: this.local.weight(),
      wan: this.local.wan(),
      lan: this.lan.has(to),
      releases: haves.map(([id]) => id),
      ...(wants.length > 0 ? { wants: wants.map(([id]) => id) } : {})
    }, [...haves.map(([, b]) => b), ...wants.map(([, b]) => b)])
  }

  private learn (peerId: PeerId, msg: Uint8Array): SiteMember | null {
    const { label, weight, wan, lan, releases, bitfields, wants } = decodeHello(msg)
    const id = peerId.toString()
    if (lan && label === null) this.lan.add(id)
    if (!this.belongs(id, label)) { this.forget(id); return null }
    const m: SiteMember = this.members.get(id) ?? { id, peerId, label, weight, wan: false, haves: new Map(), wants: new Map() }
    m.label = label
    m.weight = weight
    m.wan = wan
    releases.forEach((r, i) => {
      m.haves.set(r, Uint8Array.from(bitfields[i] ?? new Uint8Array(0)))
      const w = wants.indexOf(r)
      if (w >= 0) m.wants.set(r, Uint8Array.from(bitfields[releases.length + w] as Uint8Array))
      else m.wants.delete(r)
    })
    this.members.set(id, m)
    for (const r of releases) this.events.onHave?.(m, r, 'all')
    return m
  }

  private async serve (req: Uint8Array, peer: PeerId): Promise<Uint8Array> {
    const msg = decodeHaveRequest(req)
    if (msg.op === 'hello') {
      this.learn(peer, req)
      return this.helloMessage(peer.toString())
    }
    return encodeControl({ ok: this.applyHave(msg, peer) })
  }

  /**
   * An increment from `peer` (over /shoal/haves/1 or, from an older peer, /shoal/have/1); false
   * when the peer is not (yet) in my site (it will say hello) or its hello named no such release.
   * DecodeError for a malformed one.
   */
  private applyHave (msg: HaveRequest, peer: PeerId): boolean {
    if (msg.op !== 'have') throw new DecodeError('have increment', `a ${msg.op} on the increments stream`)
    const m = this.members.get(peer.toString())
    if (m === undefined) return false
    m.wan = msg.wan
    const bits = m.haves.get(msg.release)
    // Increments only extend a have-map its hello announced (that is where the length comes from).
    if (bits === undefined || msg.increment === undefined) return false
    const indices = decodeIncrement(msg.increment, bits.byteLength * 8)
    for (const i of indices) bits[i >> 3]! |= 1 << (i & 7)
    this.events.onHave?.(m, msg.release, indices)
    return true
  }

  /** Queues chunk `index` of `release` as held; members hear of it within FLUSH_MS. */
  have (release: string, index: number): void {
    let s = this.pending.get(release)
    if (s === undefined) { s = new Set(); this.pending.set(release, s) }
    s.add(index)
    this.flushTimer ??= setTimeout(() => { this.flushTimer = undefined; this.flush() }, FLUSH_MS)
  }

  /** Tells every member about a new release I hold or want (a full hello). */
  async rehello (): Promise<void> {
    await Promise.allSettled([...this.members.values()].map(async m => await this.meet(m.peerId)))
  }

  // Each member's increments go on one long-lived /shoal/haves/1 stream (a stream per flush and
  // member was 10·(N-1) stream set-ups a second on every peer of a site of N). While a send to a
  // member waits for its stream to drain, later increments merge in its outbox.
  private flush (): void {
    for (const m of this.members.values()) {
      if (this.banned(m.id)) continue
      let box = this.outboxes.get(m.id)
      if (box === undefined) { box = { pending: new Map(), sending: false, legacy: false }; this.outboxes.set(m.id, box) }
      for (const [release, set] of this.pending) {
        const into = box.pending.get(release)
        if (into === undefined) box.pending.set(release, new Set(set))
        else for (const i of set) into.add(i)
      }
      if (!box.sending) void this.send(m, box)
    }
    this.pending.clear()
  }

  private async send (m: SiteMember, box: Outbox): Promise<void> {
    box.sending = true
    try {
      while (box.pending.size > 0 && this.outboxes.get(m.id) === box) {
        const wan = this.local.wan()
        const frames: Uint8Array[] = []
        for (const [release, set] of box.pending) {
          const indices = [...set]
          for (let i = 0; i < indices.length; i += MAX_INCREMENT) {
            frames.push(encodeControl({ op: 'have', release, wan }, [encodeIncrement(indices.slice(i, i + MAX_INCREMENT))]))
          }
        }
        box.pending.clear()
        if (!box.legacy) {
          try {
            await this.pushes.send(m.peerId, frames)
            continue
          } catch (err) {
            // Lost increments are made good by the next full hello (ReleaseFetch resends one
            // every few seconds while it fetches); only a peer without the stream falls back.
            if (!(err instanceof PeerProtocolError)) continue
            box.legacy = true
          }
        }
        await Promise.allSettled(frames.map(async f => await callRpc(this.node, m.peerId, HAVE_PROTOCOL, f, LIMITS)))
      }
    } finally {
      box.sending = false
    }
  }
}

/** A hello (docs/protocol.md §6.7) as decoded, before any membership decision. */
export interface Hello {
  label: string | null
  weight: number
  wan: boolean
  /** The sender's mDNS found me on its LAN. */
  lan: boolean
  /** Manifest ids, each with its bitfield at the same index (absent for an empty one). */
  releases: string[]
  /** Releases of which the sender wants only part; their want-maps follow the have-maps in `bitfields`, in this order. */
  wants: string[]
  bitfields: Uint8Array[]
}

/** Strict decoding of a hello message; DecodeError for anything malformed. */
export function decodeHello (msg: Uint8Array): Hello {
  const what = 'have hello'
  const { header, parts } = decodeControl(msg, what)
  const label = header.site === null ? null : headerString(header, 'site', what, LABEL)
  const weight = Number(header.weight)
  if (typeof header.weight !== 'number' || !Number.isFinite(weight) || weight < 0 || weight > 1000) throw new DecodeError(what, '"weight" must be a number 0…1000')
  const releases = headerStrings(header, 'releases', what, MAX_HELLO_RELEASES, HEX64)
  const wants = header.wants === undefined ? [] : headerStrings(header, 'wants', what, MAX_HELLO_RELEASES, HEX64)
  if (wants.some(w => !releases.includes(w)) || new Set(wants).size !== wants.length) throw new DecodeError(what, '"wants" must name distinct releases of "releases"')
  // one bitfield per release, then one per want (a release of zero chunks has an empty one, which may be left off)
  const n = releases.length + wants.length
  if (parts.length > n || (n > 1 && parts.length !== n)) throw new DecodeError(what, 'one bitfield per release and per want expected')
  if (wants.some((_, i) => parts[releases.length + i]?.byteLength !== parts[releases.indexOf(wants[i] as string)]?.byteLength)) throw new DecodeError(what, 'a want-map must be as long as its have-map')
  if (parts.some(p => p.byteLength > MAX_BITFIELD_BYTES)) throw new DecodeError(what, `a bitfield is longer than the ${MAX_BITFIELD_BYTES} bytes of the largest chunk table`)
  return { label, weight, wan: header.wan === true, lan: header.lan === true, releases, wants, bitfields: parts }
}

export type HaveRequest =
  | { op: 'hello' }
  | { op: 'have', release: string, wan: boolean, increment: Uint8Array | undefined }

/** The operation of a /shoal/have/1 request (a hello is decoded whole by decodeHello). */
export function decodeHaveRequest (req: Uint8Array): HaveRequest {
  const what = 'have message'
  const { header, parts } = decodeControl(req, what)
  const op = headerString(header, 'op', what)
  if (op === 'hello') return { op }
  if (op === 'have') return { op, release: headerString(header, 'release', what, HEX64), wan: header.wan === true, increment: parts[0] }
  throw new DecodeError(what, `unknown operation ${JSON.stringify(op).slice(0, 40)}`)
}
