// The publisher's side of /shoal/fleet/1: a node that only dials out, with the publisher's
// PeerId (the seed answers only PeerIds in its "publishers" list), asking one question per call.
import type { PrivateKey } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import { DecodeError } from '../core/errors.js'
import { FLEET_PROTOCOL } from '../net/constants.js'
import { createShoalNode, type ShoalNode } from '../net/node.js'
import { seedMultiaddr } from '../net/peer-addr.js'
import { callRpc } from '../net/rpc.js'
import { MAX_ANSWER_BYTES, MAX_QUERY_BYTES, type FleetOp } from './service.js'
import type { FleetFailure, FleetStatus, InventoryAnswer, ListedEndpoint } from './store.js'

export interface FleetAnswers { status: FleetStatus, endpoints: ListedEndpoint[], failures: FleetFailure[], inventory: InventoryAnswer }

export class FleetClient {
  private constructor (private readonly node: ShoalNode, private readonly seed: Multiaddr) {}

  static async open (o: { seed: string, networkKey: Uint8Array, privateKey: PrivateKey }): Promise<FleetClient> {
    const seed = seedMultiaddr(o.seed, '--seed')
    return new FleetClient(await createShoalNode({ privateKey: o.privateKey, listen: [], networkKey: o.networkKey }), seed)
  }

  get peerId (): string {
    return this.node.peerId.toString()
  }

  async query<O extends FleetOp> (op: O, filter: { package?: string } = {}): Promise<FleetAnswers[O]> {
    const req = new TextEncoder().encode(JSON.stringify({ op, ...filter }))
    const res = await callRpc(this.node, this.seed, FLEET_PROTOCOL, req, { maxRequestBytes: MAX_QUERY_BYTES, maxResponseBytes: MAX_ANSWER_BYTES, timeoutMs: 60_000 })
    return decodeFleetAnswer(op, res)
  }

  async close (): Promise<void> {
    await this.node.stop()
  }
}

const ANSWER_SHAPE: Record<FleetOp, { lists: string[] } | 'list'> = {
  status: { lists: ['releases', 'sites'] },
  endpoints: 'list',
  failures: 'list',
  inventory: { lists: ['rows', 'incomplete'] }
}

/**
 * A seed's answer to a fleet query: UTF-8 JSON of the shape `op` asks for (an object with its
 * lists, or a list of objects), refused with a DecodeError otherwise. The seed is trusted with
 * the fleet's reports; this keeps a broken or hostile one from crashing `shoal fleet`.
 */
export function decodeFleetAnswer<O extends FleetOp> (op: O, bytes: Uint8Array): FleetAnswers[O] {
  const what = `fleet ${op} answer`
  let v: unknown
  try {
    v = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes))
  } catch {
    throw new DecodeError(what, 'not UTF-8 JSON')
  }
  const isObject = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x)
  const shape = ANSWER_SHAPE[op]
  if (shape === 'list') {
    if (!Array.isArray(v) || !v.every(isObject)) throw new DecodeError(what, 'not a list of objects')
  } else {
    if (!isObject(v)) throw new DecodeError(what, 'not a JSON object')
    for (const k of shape.lists) {
      const list = v[k]
      if (!Array.isArray(list) || !list.every(isObject)) throw new DecodeError(what, `"${k}" is not a list of objects`)
    }
  }
  return v as unknown as FleetAnswers[O]
}
