// Publisher → seed over /shoal/publish/1 (docs/protocol.md §6.6): offer the signed manifest, learn
// which blobs the seed lacks, then let the seed pull exactly those from us over /shoal/blobs/1 on
// the same connection. We serve only the blobs this manifest lists, so a seed cannot use the
// publisher's connection to read anything else from its repository.
import type { PrivateKey } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import { InvalidArgumentError } from '../core/errors.js'
import { decodeManifest, manifestId, MAX_CHUNKS, MAX_MANIFEST_BYTES, SEMVER } from '../core/manifest.js'
import { buildPayloadPatch } from '../core/manifest-patch.js'
import { cidToHex } from '../core/seal.js'
import { HEX64 } from '../core/signed.js'
import { BlobServerStats, registerBlobsProtocol } from '../net/blobs.js'
import { ANNOUNCE_PROTOCOL, PUBLISH_PROTOCOL } from '../net/constants.js'
import { decodeControl, encodeControl } from '../net/control.js'
import { createShoalNode, type ShoalNode } from '../net/node.js'
import { seedMultiaddr } from '../net/peer-addr.js'
import { callRpc } from '../net/rpc.js'
import type { BlobStore } from '../store/blob-store.js'
import type { RepoLayout } from '../store/repo.js'

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
/** A sealed payload patch (src/core/manifest-patch.ts) from manifest `base` to the one being committed. */
export interface PatchUpload { base: string, bytes: Uint8Array }

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

  /** The sequence (and version, manifest id: seeds before payload patches send no id) the seed's head lists for `pkg` in `channel`; seq 0 when none. */
  async latest (pkg: string, channel: string): Promise<{ seq: number, version?: string, manifest?: string }> {
    const { header } = decodeControl(await this.call(encodeControl({ op: 'latest', package: pkg, channel })), 'publish latest reply')
    const seq = Number(header.seq)
    if (!Number.isSafeInteger(seq) || seq < 0) throw new InvalidArgumentError('the seed sent a malformed latest reply')
    return {
      seq,
      ...(typeof header.version === 'string' ? { version: header.version } : {}),
      ...(typeof header.manifest === 'string' && HEX64.test(header.manifest) ? { manifest: header.manifest } : {})
    }
  }

  /**
   * The payload patch from the release the seed's head lists for this manifest's package and
   * channel (what its endpoints hold) to this manifest (docs/protocol.md §6.5), or none: a first
   * release, a seed that names no manifest id, a base that is neither in `repo` nor on the seed,
   * or that does not open with `contentKey`. A patch is an optimization: it never fails a publish.
   */
  async patchesFor (manifest: Uint8Array, contentKey: Uint8Array, repo?: RepoLayout): Promise<PatchUpload[]> {
    const target = decodeManifest(manifest)
    const t = target.signed
    const id = manifestId(manifest)
    try {
      const head = await this.latest(t.package, t.channel)
      if (head.manifest === undefined || head.manifest === id) return []
      let base = head.version !== undefined && SEMVER.test(head.version) ? await repo?.readManifestBytes(t.package, head.version) ?? null : null
      if (base === null || manifestId(base) !== head.manifest) base = await this.fetchManifest(head.manifest)
      const bytes = await buildPayloadPatch({ id: head.manifest, bytes: base }, { id, bytes: manifest, manifest: target }, contentKey)
      // within the request limit of seeds before patches, which read the commit whole
      return bytes === null || manifest.length + bytes.length > MAX_MANIFEST_BYTES ? [] : [{ base: head.manifest, bytes }]
    } catch {
      return []
    }
  }

  /** Manifest `id` as the seed serves it (/shoal/announce/1), checked against the id. */
  private async fetchManifest (id: string): Promise<Uint8Array> {
    const res = decodeControl(await callRpc(this.node, this.seed, ANNOUNCE_PROTOCOL, encodeControl({ op: 'manifest', id }), {
      maxRequestBytes: 64 * 1024, maxResponseBytes: MAX_MANIFEST_BYTES + 64 * 1024, timeoutMs: 60_000
    }), 'announce manifest reply')
    const bytes = res.parts[0]
    if (res.header.delta !== undefined || bytes === undefined || manifestId(bytes) !== id) throw new InvalidArgumentError(`the seed did not serve manifest ${id}`)
    return bytes
  }

  /** offer, then commit with the payload patches `patchesFor` finds: what `shoal publish --to` does. */
  async publish (manifest: Uint8Array, o: { contentKey: Uint8Array, repo?: RepoLayout }): Promise<{ offer: OfferResult, commit: CommitResult, patches: number }> {
    const offer = await this.offer(manifest)
    const patches = await this.patchesFor(manifest, o.contentKey, o.repo)
    return { offer, commit: await this.commit(manifest, patches), patches: patches.length }
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

  /** The seed pulls what it lacks, stores the manifest (and the patches) and signs a new channel head. */
  async commit (manifest: Uint8Array, patches: readonly PatchUpload[] = []): Promise<CommitResult> {
    const m = decodeManifest(manifest)
    this.allowed = new Set(m.signed.chunks.map(c => c.cid))
    try {
      const req = patches.length === 0
        ? encodeControl({ op: 'commit' }, [manifest])
        : encodeControl({ op: 'commit', patches: patches.map(p => p.base) }, [manifest, ...patches.map(p => p.bytes)])
      const { header } = decodeControl(await this.call(req, PUSH_TIMEOUT_MS), 'publish commit reply')
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
