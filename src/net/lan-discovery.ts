// mDNS for a site, with libp2p's peer store spared the repeats. @libp2p/mdns emits 'peer' for every
// answer it hears, and answers are multicast: every node hears every node's answer to every
// node's query, N·(N − 1) answers per query interval at each of N peers on one LAN. libp2p merges
// each into its peer store (a write lock, protobuf encoding, a datastore put): 1.6 % of an
// endpoint's CPU at 10 peers in the swarm bench, 4 × that at 20, and it grows with N². This
// wrapper passes libp2p (the 'peer' event) a peer when it is new, when its addresses changed, or
// once per REANNOUNCE_MS; every answer still goes to the 'answer' listeners (the Site), whose own
// handler is a set lookup for a peer it already knows.
import { mdns } from '@libp2p/mdns'
import { peerDiscoverySymbol, serviceCapabilities, type ComponentLogger, type PeerDiscovery, type PeerInfo, type Startable } from '@libp2p/interface'

/** A known peer with unchanged addresses is passed on to libp2p at most this often. */
export const REANNOUNCE_MS = 60_000
/** Peers remembered; past it, the ones not heard from for REANNOUNCE_MS are forgotten. */
const MAX_REMEMBERED = 4096

type MdnsComponents = Parameters<ReturnType<typeof mdns>>[0]
type Inner = PeerDiscovery & Startable

export interface LanDiscoveryInit { serviceTag: string, interval?: number }

export class LanDiscovery extends EventTarget implements Startable {
  readonly [peerDiscoverySymbol] = this
  readonly [serviceCapabilities] = ['@libp2p/peer-discovery']
  readonly [Symbol.toStringTag] = 'shoal:lan-discovery'
  readonly #inner: Inner
  readonly #seen = new Map<string, { addrs: string, at: number }>()
  readonly #now: () => number

  constructor (inner: Inner, now: () => number = Date.now) {
    super()
    this.#inner = inner
    this.#now = now
    inner.addEventListener('peer', (evt) => { this.#onAnswer(evt.detail) })
  }

  async start (): Promise<void> { await this.#inner.start() }
  async stop (): Promise<void> {
    await this.#inner.stop()
    this.#seen.clear()
  }

  /** Listens to every answer (PeerInfo of the answering peer), repeats included. */
  onAnswer (listener: (peer: PeerInfo) => void): () => void {
    const l = (evt: Event): void => { listener((evt as CustomEvent<PeerInfo>).detail) }
    this.addEventListener('answer', l)
    return () => { this.removeEventListener('answer', l) }
  }

  #onAnswer (peer: PeerInfo): void {
    this.dispatchEvent(new CustomEvent('answer', { detail: peer }))
    const id = peer.id.toString()
    const addrs = peer.multiaddrs.map(a => a.toString()).sort().join(' ')
    const now = this.#now()
    const last = this.#seen.get(id)
    if (last !== undefined && last.addrs === addrs && now - last.at < REANNOUNCE_MS) return
    if (last === undefined && this.#seen.size >= MAX_REMEMBERED) {
      for (const [k, v] of this.#seen) if (now - v.at >= REANNOUNCE_MS) this.#seen.delete(k)
    }
    this.#seen.set(id, { addrs, at: now })
    this.dispatchEvent(new CustomEvent('peer', { detail: peer }))
  }
}

/** The libp2p service factory: @libp2p/mdns behind a LanDiscovery. */
export function lanDiscovery (init: LanDiscoveryInit): (components: MdnsComponents & { logger: ComponentLogger }) => LanDiscovery {
  const make = mdns({ serviceTag: init.serviceTag, interval: init.interval })
  return (components) => new LanDiscovery(make(components) as unknown as Inner)
}
