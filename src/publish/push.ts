// Publisher → seed over /shoal/publish/1 (docs/protocol.md §6.6): offer the signed manifest, learn
// which blobs the seed lacks, then let the seed pull exactly those from us over /shoal/blobs/1 on
// the same connection. We serve only the blobs this manifest lists, so a seed cannot use the
// publisher's connection to read anything else from its repository.
import type { PrivateKey } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import { InvalidArgumentError } from '../core/errors.js'
import { decodeManifest, MAX_CHUNKS, MAX_MANIFEST_BYTES } from '../core/manifest.js'
import { cidToHex } from '../core/seal.js'
import { BlobServerStats, registerBlobsProtocol } from '../net/blobs.js'
import { PUBLISH_PROTOCOL } from '../net/constants.js'
import { decodeControl, encodeControl } from '../net/control.js'
import { createShoalNode, type ShoalNode } from '../net/node.js'
import { seedMultiaddr } from '../net/peer-addr.js'
import { callRpc } from '../net/rpc.js'
import type { BlobStore } from '../store/blob-store.js'

/** How long the seed may take to pull a release and sign its head. */
export const PUSH_TIMEOUT_MS = 2 * 3600_000
const LIMITS = { maxRequestBytes: MAX_MANIFEST_BYTES + 64 * 1024, maxResponseBytes: MAX_CHUNKS / 8 + 64 * 1024 }

export interface OfferResult { already: boolean, missing: number, missingBytes: number }
export interface RecordResult {
  accepted: 'new' | 'same'
  id: string
  seq: number
  pushed: number
  /** What the record will not do (a release the seed does not serve, a ring the policy does not name). */
  warnings: string[]
}
export interface CommitResult { package: string, version: string, channel: string, headSeq: number, fetched: number, fetchedBytes: number, already: boolean }

export class SeedSession {
  readonly stats = new BlobServerStats()
  private allowed = new Set<string>()

  private constructor (private readonly node: ShoalNode, private readonly seed: Multiaddr, private readonly blobs: BlobStore) {}

  /** Opens a node that only dials out, serving `blobs` to the seed (restricted per release). */
  static async open (o: { seed: string, networkKey: Uint8Array, privateKey: PrivateKey, blobs: BlobStore }): Promise<SeedSession> {
    const seed = seedMultiaddr(o.seed, '--to')
    const node = await createShoalNode({ privateKey: o.privateKey, listen: [], networkKey: o.networkKey })
    const session = new SeedSession(node, seed, o.blobs)
    await registerBlobsProtocol(node, {
      get: async cid => session.allowed.has(cidToHex(cid)) ? await o.blobs.get(cid) : null
    }, { stats: session.stats })
    return session
  }

  get peerId (): string {
    return this.node.peerId.toString()
  }

  /** The sequence (and version) the seed's head lists for `pkg` in `channel`; seq 0 when none. */
  async latest (pkg: string, channel: string): Promise<{ seq: number, version?: string }> {
    const { header } = decodeControl(await this.call(encodeControl({ op: 'latest', package: pkg, channel })), 'publish latest reply')
    const seq = Number(header.seq)
    if (!Number.isSafeInteger(seq) || seq < 0) throw new InvalidArgumentError('the seed sent a malformed latest reply')
    return { seq, ...(typeof header.version === 'string' ? { version: header.version } : {}) }
  }

  /** The highest control-record seq the seed holds for `pkg` (0 when none). */
  async recordSeq (pkg: string): Promise<number> {
    const { header } = decodeControl(await this.call(encodeControl({ op: 'record-seq', package: pkg })), 'publish record-seq reply')
    const seq = Number(header.seq)
    if (!Number.isSafeInteger(seq) || seq < 0) throw new InvalidArgumentError('the seed sent a malformed record-seq reply')
    return seq
  }

  /** Sends a signed control record; the seed verifies, stores and pushes it (or refuses it with a typed error). */
  async sendRecord (record: Uint8Array): Promise<RecordResult> {
    const { header } = decodeControl(await this.call(encodeControl({ op: 'record' }, [record])), 'publish record reply')
    const warnings = Array.isArray(header.warnings) ? header.warnings.filter((w): w is string => typeof w === 'string').slice(0, 16).map(w => w.slice(0, 1000)) : []
    return { accepted: header.accepted === 'same' ? 'same' : 'new', id: String(header.id), seq: Number(header.seq), pushed: Number(header.pushed), warnings }
  }

  /** Offers a new root.json (one chain step); the seed keeps it and serves it to endpoints. */
  async sendRoot (root: Uint8Array): Promise<{ version: number, onlineChanged: boolean, signsHeads: boolean }> {
    const { header } = decodeControl(await this.call(encodeControl({ op: 'root' }, [root])), 'publish root reply')
    return { version: Number(header.version), onlineChanged: header.onlineChanged === true, signsHeads: header.signsHeads === true }
  }

  async offer (manifest: Uint8Array): Promise<OfferResult> {
    const { header } = decodeControl(await this.call(encodeControl({ op: 'offer' }, [manifest])), 'publish offer reply')
    return { already: header.already === true, missing: Number(header.missing), missingBytes: Number(header.missingBytes) }
  }

  /** The seed pulls what it lacks, stores the manifest and signs a new channel head. */
  async commit (manifest: Uint8Array): Promise<CommitResult> {
    const m = decodeManifest(manifest)
    this.allowed = new Set(m.signed.chunks.map(c => c.cid))
    try {
      const { header } = decodeControl(await this.call(encodeControl({ op: 'commit' }, [manifest]), PUSH_TIMEOUT_MS), 'publish commit reply')
      return header as unknown as CommitResult
    } finally {
      this.allowed = new Set()
    }
  }

  async close (): Promise<void> {
    await this.node.stop()
  }

  private async call (req: Uint8Array, timeoutMs = 60_000): Promise<Uint8Array> {
    return await callRpc(this.node, this.seed, PUBLISH_PROTOCOL, req, { ...LIMITS, timeoutMs })
  }
}
