// Seed cache mode (`cacheSize` > 0): a seed in front of origins or full peer seeds that keeps no
// full copy. It pulls nothing when it adopts a head; a blob is fetched from upstream the first time
// an endpoint asks for it, stored, served, and the least recently used blobs are deleted once the
// store holds more than `cacheSize` bytes. Only cids listed by a manifest the seed holds are
// fetched (with their signed size as the bound), so a client cannot make it fetch anything else.
import type { ChunkRef } from '../core/manifest.js'
import { cidToHex } from '../core/seal.js'
import type { BlobStorage } from '../store/blob-store.js'
import type { WanSourceKind } from '../swarm/wan-sources.js'
import type { Logger } from './log.js'

export type UpstreamFetch = (cid: Uint8Array, maxSize: number) => Promise<{ blob: Uint8Array, source: WanSourceKind }>

export class BlobCache {
  /** Stored blobs, least recently used first: cid hex → bytes. */
  private readonly lru = new Map<string, number>()
  private used = 0
  /** cid hex → signed size, for every chunk of the manifests held. */
  private readonly listed = new Map<string, number>()
  private readonly filling = new Map<string, Promise<Uint8Array | null>>()

  private constructor (
    private readonly blobs: BlobStorage,
    readonly limit: number,
    private readonly upstream: UpstreamFetch,
    private readonly log: Logger,
    private readonly onFill: (source: WanSourceKind, bytes: number) => Promise<void>
  ) {}

  /** Takes the blobs already stored, in the store's order (packs oldest first), and evicts down to `limit`. */
  static async open (o: { blobs: BlobStorage, limit: number, upstream: UpstreamFetch, log: Logger, onFill: (source: WanSourceKind, bytes: number) => Promise<void> }): Promise<BlobCache> {
    const cache = new BlobCache(o.blobs, o.limit, o.upstream, o.log, o.onFill)
    for await (const cid of o.blobs.list()) {
      const size = await o.blobs.size(cid)
      if (size === null) continue // removed meanwhile
      cache.lru.set(cidToHex(cid), size)
      cache.used += size
    }
    await cache.evict()
    return cache
  }

  /** Bytes held now. */
  get bytes (): number {
    return this.used
  }

  /** Makes a release's chunks fetchable on demand. */
  allow (chunks: readonly ChunkRef[]): void {
    for (const c of chunks) this.listed.set(c.cid, c.size)
  }

  /** The blob, from the store or else from upstream; null when no held manifest lists it or no source has it. */
  async get (cid: Uint8Array): Promise<Uint8Array | null> {
    const hex = cidToHex(cid)
    const size = this.lru.get(hex)
    if (size !== undefined) {
      this.lru.delete(hex)
      this.lru.set(hex, size)
      const blob = await this.blobs.get(cid)
      if (blob !== null) return blob
      this.forget(hex) // evicted meanwhile, or removed behind our back
    }
    const max = this.listed.get(hex)
    if (max === undefined) return null
    let fill = this.filling.get(hex)
    if (fill === undefined) {
      fill = this.fill(cid, hex, max).finally(() => this.filling.delete(hex))
      this.filling.set(hex, fill)
    }
    return await fill
  }

  private async fill (cid: Uint8Array, hex: string, max: number): Promise<Uint8Array | null> {
    let got: { blob: Uint8Array, source: WanSourceKind }
    try {
      got = await this.upstream(cid, max)
    } catch (err) {
      this.log.warn({ cid: hex, err }, 'cache: no upstream source served the blob')
      return null
    }
    await this.blobs.put(cid, got.blob, { verified: true })
    if (!this.lru.has(hex)) { this.lru.set(hex, got.blob.byteLength); this.used += got.blob.byteLength }
    await this.onFill(got.source, got.blob.byteLength)
    await this.evict(hex)
    return got.blob
  }

  private forget (hex: string): void {
    const size = this.lru.get(hex)
    if (size === undefined) return
    this.lru.delete(hex)
    this.used -= size
  }

  /** Deletes least recently used blobs until at most `limit` bytes remain (never `keep`, just fetched). */
  private async evict (keep?: string): Promise<void> {
    for (const [hex, size] of this.lru) {
      if (this.used <= this.limit) return
      if (hex === keep) continue
      this.lru.delete(hex)
      this.used -= size
      await this.blobs.delete(Buffer.from(hex, 'hex'))
    }
  }
}
