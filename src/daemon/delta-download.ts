// The endpoint's use of delta blobs (issue 5, docs/delta.md "The endpoint in the daemon"): which
// blobs of a release it wants given the releases it still holds (planFetch), and what happens when
// a delta blob lands: the chunks it replaces are rebuilt from base chunks held here, checked
// against their chunk keys, re-sealed into the very full blobs the manifest lists (cid checked)
// and stored — so installing, serving the site and the next delta's base see ordinary blobs.
// Anything that goes wrong (corrupt delta, wrong or missing base, a re-seal that differs) makes
// the chunks wanted whole instead, and is counted and logged.
import { DeltaRebuildError, planFetch, rebuildChunks, type BaseChunk, type FetchItem, type HeldRelease, type WantedChunk } from '../core/delta-apply.js'
import { ShoalError } from '../core/errors.js'
import { FileChunkList, type ChunkTable, type PayloadLike } from '../core/chunk-table.js'
import { decodeManifest, openPayload, type FileChunk, type ManifestTable } from '../core/manifest.js'
import { cidFromHex, cidToHex, MIN_BLOB_BYTES, openBlob, sealWithKey } from '../core/seal.js'
import type { BlobStorage } from '../store/blob-store.js'
import type { StateDb } from '../store/state-db.js'
import { HaveMap } from '../swarm/have-map.js'

/** Why a delta was not used after all; the label of `shoal_delta_fallbacks_total`. */
export type FallbackReason = 'delta' | 'size' | 'key' | 'base' | 'reseal'

export interface DeltaFallback { release: string, reason: FallbackReason, chunks: number, message: string, at: string }

/** What a delta download reports (the endpoint counts, logs and shows it in status). */
export interface DeltaEvents {
  rebuilt: (chunks: number, deltaBytes: number) => void | Promise<void>
  fallback: (f: DeltaFallback) => void | Promise<void>
}

/** Where rebuilt chunks go and who hears of them: the release fetch (held / want). */
export interface DeltaSink {
  held: (indices: number[]) => void
  want: (indices: number[]) => void
}

type DeltaItem = Extract<FetchItem, { kind: 'delta' }>

class BaseMissingError extends ShoalError {
  constructor (cid: string) { super('ERR_DELTA_BASE', `base blob ${cid.slice(0, 16)}… is no longer here`) }
}

class ResealError extends ShoalError {
  constructor (cid: string, got: string) { super('ERR_DELTA_RESEAL', `rebuilt chunk re-seals to ${got.slice(0, 16)}…, the manifest lists ${cid.slice(0, 16)}… (sealed with other brotli settings?)`) }
}

/**
 * The releases of `pkg` this endpoint still holds (installed: the current and the previous one,
 * see Endpoint.retain) other than `except`, with their chunk tables and opened payloads: the
 * bases deltas may name. One whose manifest is gone or does not open is left out.
 */
export async function heldReleases (db: StateDb, contentKey: Uint8Array, pkg: string, except: string): Promise<HeldRelease[]> {
  const out: HeldRelease[] = []
  for await (const [key, rec] of db.releases.entries({ gte: `${pkg}@`, lt: `${pkg}A` })) {
    if (rec.package !== pkg || key === except || rec.state !== 'installed') continue
    const bytes = await db.manifests.get(rec.manifestId)
    if (bytes === null) continue
    try {
      const m = decodeManifest(bytes)
      out.push({ version: m.signed.version, chunks: m.signed.chunks, payload: openPayload(m, contentKey) })
    } catch { /* not a base, then */ }
  }
  return out
}

/** Which blobs of a table are stored here: by table index. */
export async function presentMap (table: ChunkTable, blobs: BlobStorage): Promise<HaveMap> {
  const have = new HaveMap(table.length)
  for (let i = 0; i < table.length; i += 256) {
    const n = Math.min(256, table.length - i)
    const present = await Promise.all(Array.from({ length: n }, async (_, k) => await blobs.has(table.cidBytes(i + k))))
    present.forEach((p, k) => { if (p) have.set(i + k) })
  }
  return have
}

/**
 * What planFetch answers for a payload without delta blobs — every chunk a file names and `have`
 * lacks, fetched whole — as a want-map over the distinct table, without planFetch's objects and
 * hex strings per chunk (~20 MB of heap at once for 57 000 chunks, at the top of the manifest
 * phase's memory). Exported for the test that holds it to planFetch.
 */
export function wholeChunksWanted (payload: PayloadLike, table: ChunkTable, indexOf: Uint32Array, have: HaveMap): { want: HaveMap, bytes: number } {
  const want = new HaveMap(table.length)
  let bytes = 0
  for (const f of payload.files) {
    const cs = f.chunks
    if (cs === undefined) continue
    for (let k = 0; k < cs.length; k++) {
      const c = cs instanceof FileChunkList ? cs.indexAt(k) : (cs[k] as FileChunk).index
      const i = indexOf[c]
      if (i === undefined) throw new ShoalError('ERR_DECODE', `${f.path}: chunk index ${c} is outside the chunk table`)
      if (have.has(i) || want.has(i)) continue
      want.set(i)
      bytes += table.size(i)
    }
  }
  return { want, bytes }
}

export class DeltaDownload {
  /** Indices (of the distinct table, as have-maps) I want to hold: full blobs fetched whole, and delta blobs. */
  readonly want: HaveMap
  /** Blob bytes the plan transfers (planFetch). */
  readonly bytes: number
  /** Chunks the plan rebuilds from deltas. */
  readonly viaDelta: number
  private readonly deltas = new Map<number, DeltaItem>()
  /** Rebuilds by delta index: a second copy landing (endgame) waits for the first's outcome. */
  private readonly started = new Map<number, Promise<void>>()
  private sink: DeltaSink | undefined

  private constructor (
    private readonly o: { release: string, table: ChunkTable, indexOf: Uint32Array, blobs: BlobStorage, contentKey: Uint8Array, events: DeltaEvents },
    items: FetchItem[], bytes: number, viaDelta: number, want?: HaveMap
  ) {
    this.want = want ?? new HaveMap(o.table.length)
    for (const item of items) {
      if (item.kind === 'full') { this.want.set(this.index(item.chunk.index)); continue }
      const i = this.index(item.delta.index)
      this.want.set(i)
      this.deltas.set(i, item)
    }
    this.bytes = bytes
    this.viaDelta = viaDelta
  }

  /**
   * Plans a release's download: `have` says which table entries are stored, `releases` are the
   * releases held here (heldReleases). Base blobs are checked on disk before a delta is counted on.
   */
  static async plan (o: { release: string, manifest: ManifestTable, payload: PayloadLike, have: HaveMap, releases: HeldRelease[], blobs: BlobStorage, contentKey: Uint8Array, events: DeltaEvents }): Promise<DeltaDownload> {
    const { table, indexOf } = o.manifest.signed.chunks.distinct() // the have-map's indices (docs/protocol.md §6.7)
    const ctx = { release: o.release, table, indexOf, blobs: o.blobs, contentKey: o.contentKey, events: o.events }
    if ((o.payload.deltas?.length ?? 0) === 0) {
      const { want, bytes } = wholeChunksWanted(o.payload, table, indexOf, o.have)
      return new DeltaDownload(ctx, [], bytes, 0, want)
    }
    const present = new Set(o.have.indices().map(i => table.cid(i)))
    const baseHeld = new Map<string, boolean>()
    if (o.payload.deltas !== undefined && o.releases.length > 0) {
      const rels = o.releases
      for (const r of rels) {
        for (const c of r.chunks) if (!baseHeld.has(c.cid) && present.has(c.cid)) baseHeld.set(c.cid, true)
      }
      // only the cids a delta could name are looked up on disk
      const named = new Set<string>()
      for (const d of o.payload.deltas) {
        const r = rels.find(x => x.version === d.base.version)
        const f = r?.payload.files.find(x => x.path === d.base.path)
        for (const c of f?.chunks?.slice(d.base.first, d.base.first + d.base.count) ?? []) {
          const cid = r?.chunks[c.index]?.cid
          if (cid !== undefined) named.add(cid)
        }
      }
      for (const cid of named) if (!baseHeld.has(cid)) baseHeld.set(cid, await o.blobs.has(cidFromHex(cid)))
    }
    const plan = planFetch(o.manifest, o.payload, cid => present.has(cid) || baseHeld.get(cid) === true, o.releases)
    return new DeltaDownload(ctx, plan.items, plan.bytes, plan.viaDelta)
  }

  /** The have-map index (distinct table) of chunk-table entry `chunk`. */
  private index (chunk: number): number {
    const i = this.o.indexOf[chunk]
    if (i === undefined) throw new ShoalError('ERR_INTERNAL', `chunk ${chunk} is not in the release's table`)
    return i
  }

  /** Is table entry `index` a delta blob this download rebuilds from? */
  isDelta (index: number): boolean {
    return this.deltas.has(index)
  }

  /**
   * Starts delivering to `sink`: deltas already stored (a restart after the delta landed) are
   * rebuilt now. Call before the fetch runs.
   */
  async attach (sink: DeltaSink, have: HaveMap): Promise<void> {
    this.sink = sink
    for (const i of this.deltas.keys()) {
      const item = this.deltas.get(i) as DeltaItem
      if (!have.has(i)) continue
      const blob = await this.o.blobs.get(cidFromHex(item.cid))
      if (blob !== null) await this.landed(i, blob)
      else sink.want([i])
    }
  }

  /** A blob was stored (ReleaseFetch onStored): when it is one of my deltas, rebuild its chunks. */
  async landed (index: number, blob: Uint8Array): Promise<void> {
    const item = this.deltas.get(index)
    const sink = this.sink
    if (item === undefined || sink === undefined) return
    let p = this.started.get(index)
    if (p === undefined) {
      p = this.rebuildOrFallBack(item, blob, sink)
      this.started.set(index, p)
    }
    await p
  }

  private async rebuildOrFallBack (item: DeltaItem, blob: Uint8Array, sink: DeltaSink): Promise<void> {
    try {
      const stored = await this.rebuild(item, blob)
      sink.held(stored)
      await this.o.events.rebuilt(stored.length, blob.byteLength)
    } catch (err) {
      const missing = await this.missingTargets(item.targets)
      sink.want(missing)
      await this.o.events.fallback({
        release: this.o.release,
        reason: reasonOf(err),
        chunks: missing.length,
        message: err instanceof Error ? err.message : String(err),
        at: new Date().toISOString()
      })
    }
  }

  private async missingTargets (targets: WantedChunk[]): Promise<number[]> {
    const out: number[] = []
    for (const t of targets) if (!await this.o.blobs.has(cidFromHex(t.cid))) out.push(this.index(t.index))
    return [...new Set(out)]
  }

  /** Rebuilds, checks and stores a delta's target chunks as their full blobs; returns their table indices. */
  private async rebuild (item: DeltaItem, blob: Uint8Array): Promise<number[]> {
    let plain: Uint8Array
    try {
      plain = openBlob(blob, Buffer.from(item.delta.key, 'hex'), { cid: cidFromHex(item.cid), plainSize: item.delta.size })
    } catch (err) {
      throw new DeltaRebuildError('delta', `delta blob ${item.cid.slice(0, 16)}… does not open: ${(err as Error).message}`, { cause: err })
    }
    const bases = await Promise.all(item.base.map(async (b: BaseChunk) => {
      const bytes = await this.o.blobs.get(cidFromHex(b.cid))
      if (bytes === null) throw new BaseMissingError(b.cid)
      return openBlob(bytes, Buffer.from(b.key, 'hex'), { cid: cidFromHex(b.cid), plainSize: b.size })
    }))
    const pieces = rebuildChunks(this.o.contentKey, plain, bases, item.targets)
    const stored: number[] = []
    for (const [k, t] of item.targets.entries()) {
      // A blob of exactly plaintext + 30 bytes was sealed uncompressed (brotli is kept only when
      // strictly shorter): re-seal the same way. Otherwise brotli at the publisher's default.
      const sealed = sealWithKey(Buffer.from(t.key, 'hex'), pieces[k] as Uint8Array, { compress: t.blobSize !== t.size + MIN_BLOB_BYTES })
      const cid = cidToHex(sealed.cid)
      if (cid !== t.cid) throw new ResealError(t.cid, cid)
      await this.o.blobs.put(sealed.cid, sealed.blob, { durable: false, verified: true })
      stored.push(this.index(t.index))
    }
    return [...new Set(stored)]
  }
}

function reasonOf (err: unknown): FallbackReason {
  if (err instanceof DeltaRebuildError) return err.reason
  if (err instanceof BaseMissingError) return 'base'
  if (err instanceof ResealError) return 'reseal'
  if (err instanceof ShoalError && /^ERR_BLOB_/.test(err.code)) return 'base' // a base blob on disk that no longer opens
  return 'delta'
}
