// The seed's fleet protocols (docs/protocol.md §6.8–§6.9): /shoal/report/1 takes endpoint
// reports, each bound to the PeerId of the connection it came over; /shoal/fleet/1 answers fleet
// queries, only for the PeerIds in the seed's "publishers" list (reports carry what runs where and
// the machines' whole package lists: not for every fleet member).
import type { PeerId } from '@libp2p/interface'
import { DecodeError, ShoalError } from '../core/errors.js'
import { FLEET_PROTOCOL, REPORT_PROTOCOL, RPC_MAX_BODY } from '../net/constants.js'
import type { ShoalNode } from '../net/node.js'
import { handleRpc } from '../net/rpc.js'
import { decodeReport, MAX_REPORT_BYTES, ReportOversizeError, ReportPeerError } from './report.js'
import type { FleetStore } from './store.js'

/** Bytes read of a report request: above the report cap, so an oversize one gets its typed refusal. */
export const REPORT_READ_LIMIT = MAX_REPORT_BYTES + 64 * 1024
export const MAX_QUERY_BYTES = 4096
/** A fleet answer (the whole fleet's inventory, say) may be this large. */
export const MAX_ANSWER_BYTES = RPC_MAX_BODY
export const FLEET_OPS = ['status', 'endpoints', 'failures', 'inventory'] as const
export type FleetOp = typeof FLEET_OPS[number]

export class FleetUnauthorizedError extends ShoalError {
  constructor (peer: string, listEmpty: boolean) {
    super('ERR_FLEET_UNAUTHORIZED', listEmpty
      ? `fleet query from ${peer} refused: this seed's "publishers" list is empty, so nobody may query the fleet; add the publisher's PeerId (\`shoal keys peer-id --keys DIR\`)`
      : `fleet query from ${peer} refused: that PeerId is not in this seed's "publishers" list (\`shoal keys peer-id --keys DIR\` prints the publisher's)`)
  }
}

const enc = new TextEncoder()
const json = (v: unknown): Uint8Array => enc.encode(JSON.stringify(v))

/** Parses a fleet query: `{ "op": …, "package"?: … }`. */
export function decodeQuery (bytes: Uint8Array): { op: FleetOp, package?: string } {
  let raw: unknown
  try {
    raw = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes))
  } catch {
    throw new DecodeError('fleet query', 'not UTF-8 JSON')
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new DecodeError('fleet query', 'not a JSON object')
  const o = raw as Record<string, unknown>
  for (const k of Object.keys(o)) if (k !== 'op' && k !== 'package') throw new DecodeError('fleet query', `unknown field "${k.slice(0, 40)}"`)
  if (!FLEET_OPS.includes(o.op as FleetOp)) throw new DecodeError('fleet query', `"op" must be one of ${FLEET_OPS.join(', ')}`)
  if (o.package !== undefined && (typeof o.package !== 'string' || !/^[\x21-\x7e]{1,256}$/.test(o.package))) {
    throw new DecodeError('fleet query', '"package" is malformed')
  }
  return { op: o.op as FleetOp, ...(o.package !== undefined ? { package: o.package as string } : {}) }
}

export interface FleetServiceDeps {
  node: ShoalNode
  store: FleetStore
  /** The seed's "publishers": who may query. */
  publishers: () => string[]
  now: () => Date
  log: { warn: (o: object, msg: string) => void, debug: (o: object, msg: string) => void }
}

export class FleetService {
  private readonly unhandle: Array<() => Promise<void>> = []

  constructor (private readonly d: FleetServiceDeps) {}

  async start (): Promise<void> {
    this.unhandle.push(await handleRpc(this.d.node, REPORT_PROTOCOL, async (req, peer) => await this.onReport(req, peer), {
      maxRequestBytes: REPORT_READ_LIMIT, maxResponseBytes: 1024, timeoutMs: 30_000, maxInboundStreams: 4
    }))
    this.unhandle.push(await handleRpc(this.d.node, FLEET_PROTOCOL, async (req, peer) => await this.onQuery(req, peer), {
      maxRequestBytes: MAX_QUERY_BYTES, maxResponseBytes: MAX_ANSWER_BYTES, timeoutMs: 60_000, maxInboundStreams: 4
    }))
  }

  async stop (): Promise<void> {
    for (const u of this.unhandle.splice(0)) await u()
  }

  private async onReport (req: Uint8Array, peer: PeerId): Promise<Uint8Array> {
    try {
      if (req.byteLength > MAX_REPORT_BYTES) throw new ReportOversizeError(req.byteLength)
      const report = decodeReport(req)
      if (report.peerId !== peer.toString()) throw new ReportPeerError(report.peerId, peer.toString())
      await this.d.store.put(report, this.d.now())
      this.d.log.debug({ peer: report.peerId, releases: report.releases.length }, 'report stored')
      return json({ stored: true })
    } catch (err) {
      this.d.log.warn({ peer: peer.toString(), err }, 'report refused')
      throw err
    }
  }

  private async onQuery (req: Uint8Array, peer: PeerId): Promise<Uint8Array> {
    const allowed = this.d.publishers()
    if (!allowed.includes(peer.toString())) {
      this.d.log.warn({ peer: peer.toString() }, 'fleet query refused: peer not in "publishers"')
      throw new FleetUnauthorizedError(peer.toString(), allowed.length === 0)
    }
    const q = decodeQuery(req)
    const filter = q.package !== undefined ? { package: q.package } : {}
    switch (q.op) {
      case 'status': return json(this.d.store.status(filter, this.d.now()))
      case 'endpoints': return json(this.d.store.list(this.d.now()))
      case 'failures': return json(this.d.store.failures(filter))
      case 'inventory': return json(await this.d.store.inventory(filter))
    }
  }
}
