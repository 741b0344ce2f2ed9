// The publisher's side of /shoal/fleet/1: a node that only dials out, with the publisher's
// PeerId (the seed answers only PeerIds in its "publishers" list), asking one question per call.
import type { PrivateKey } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import { FLEET_PROTOCOL } from '../net/constants.js'
import { createShoalNode, type ShoalNode } from '../net/node.js'
import { seedMultiaddr } from '../net/peer-addr.js'
import { callRpc } from '../net/rpc.js'
import { MAX_ANSWER_BYTES, MAX_QUERY_BYTES, type FleetOp } from './service.js'
import type { EndpointRecord, FleetFailure, FleetStatus, InventoryAnswer } from './store.js'

export interface FleetAnswers { status: FleetStatus, endpoints: EndpointRecord[], failures: FleetFailure[], inventory: InventoryAnswer }

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
    return JSON.parse(new TextDecoder().decode(res)) as FleetAnswers[O]
  }

  async close (): Promise<void> {
    await this.node.stop()
  }
}
