// The one place a shoal libp2p node is assembled (DESIGN §5): TCP, Noise, yamux then mplex,
// identify, ping, optional mDNS, fleet admission, and connection limits sized for many daemons
// on one host or behind one NAT.
import { identify, type Identify } from '@libp2p/identify'
import type { ComponentLogger, Libp2p, PrivateKey, StreamMuxerFactory } from '@libp2p/interface'
import { mplex } from '@libp2p/mplex'
import { noise } from '@libp2p/noise'
import { ping, type Ping } from '@libp2p/ping'
import { preSharedKey } from '@libp2p/pnet'
import { tcp } from '@libp2p/tcp'
import { yamux } from '@libp2p/yamux'
import { createLibp2p, type Libp2pOptions } from 'libp2p'
import { InvalidArgumentError } from '../core/errors.js'
import { admission, checkNetworkKey, pnetSwarmKey, type Admission, type AdmissionMode } from './admission.js'
import { CONNECTION_LIMITS, CONNECTION_MONITOR, IDENTIFY_PROTOCOL, MPLEX_DISCONNECT_THRESHOLD } from './constants.js'
import { lanDiscovery, type LanDiscovery } from './lan-discovery.js'

export type MuxerName = 'yamux' | 'mplex'

/** Chosen from bench/net.ts figures; see docs/security.md. */
export const DEFAULT_ADMISSION: AdmissionMode = 'handshake'

/** mDNS service tag: only shoal daemons answer each other, not every libp2p node on the LAN. */
export const MDNS_SERVICE_TAG = 'shoal.local'

export interface ShoalNodeOptions {
  privateKey: PrivateKey
  /** Multiaddrs to listen on, e.g. `/ip4/0.0.0.0/tcp/4001`; `/ip4/127.0.0.1/tcp/0` in tests. */
  listen: string[]
  /** The fleet network key (32 bytes): only holders may use shoal protocols. */
  networkKey: Uint8Array
  admission?: AdmissionMode
  /** Admission handshake deadline (ms), handshake mode only. */
  admissionTimeoutMs?: number
  /** Muxers offered, in preference order. Default ['yamux', 'mplex']. */
  muxers?: MuxerName[]
  /** Discover peers on the LAN with mDNS. Off by default. */
  mdns?: boolean | { interval?: number, serviceTag?: string }
  logger?: ComponentLogger
  /** Start the node before returning (default true). */
  start?: boolean
}

export type ShoalServices = {
  admission: Admission
  identify: Identify
  ping: Ping
  /** Present when mDNS is on: `onAnswer` hears every answer, not only peers new to the peer store. */
  mdns?: LanDiscovery
}

export type ShoalNode = Libp2p<ShoalServices>

export async function createShoalNode (opts: ShoalNodeOptions): Promise<ShoalNode> {
  checkNetworkKey(opts.networkKey)
  const mode = opts.admission ?? DEFAULT_ADMISSION
  if (mode !== 'pnet' && mode !== 'handshake') throw new InvalidArgumentError(`admission must be 'pnet' or 'handshake', not ${String(mode)}`)
  const muxerNames = opts.muxers ?? ['yamux', 'mplex']
  if (muxerNames.length === 0) throw new InvalidArgumentError('at least one stream muxer is needed')

  const streamMuxers: Array<() => StreamMuxerFactory> = muxerNames.map((name) => {
    if (name === 'yamux') return yamux()
    if (name === 'mplex') return mplex({ disconnectThreshold: MPLEX_DISCONNECT_THRESHOLD })
    throw new InvalidArgumentError(`unknown stream muxer ${String(name)}`)
  })

  const config: Libp2pOptions<ShoalServices> = {
    privateKey: opts.privateKey,
    addresses: { listen: opts.listen },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers,
    connectionManager: { ...CONNECTION_LIMITS },
    connectionMonitor: { pingInterval: CONNECTION_MONITOR.pingInterval, pingTimeout: { ...CONNECTION_MONITOR.pingTimeout } },
    services: {
      admission: admission({ mode, networkKey: opts.networkKey, timeoutMs: opts.admissionTimeoutMs }),
      identify: identify(),
      ping: ping()
    },
    start: false
  }
  if (mode === 'pnet') config.connectionProtector = preSharedKey({ psk: pnetSwarmKey(opts.networkKey) })
  if (opts.mdns !== undefined && opts.mdns !== false) {
    const m = opts.mdns === true ? {} : opts.mdns
    // As a service (libp2p still uses it for discovery) so the swarm can hear every answer: the
    // node's own 'peer:discovery' fires only for peers new to the peer store, and a LAN peer that
    // connected to us first is not new.
    ;(config.services as Record<string, unknown>).mdns = lanDiscovery({ serviceTag: m.serviceTag ?? MDNS_SERVICE_TAG, interval: m.interval })
  }
  if (opts.logger !== undefined) config.logger = opts.logger

  const node = await createLibp2p<ShoalServices>(config)
  // identify tells the remote our protocols and listen addresses: hold it until admission.
  if (mode === 'handshake') node.use(IDENTIFY_PROTOCOL, node.services.admission.middleware)
  if (opts.start !== false) await node.start()
  return node
}
