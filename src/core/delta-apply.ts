// The endpoint side of delta blobs (issue 5, docs/delta.md "Delta blobs in the manifest"), as pure
// functions: which blobs to fetch for a release given what is held (planFetch), where a delta's
// base comes from (resolveDeltaBase), and rebuilding chunks from a delta and its base, accepted
// only when every rebuilt chunk's HMAC under the content key is the chunk key the manifest lists
// (rebuildChunks / rebuildChunk). Fetching, storing and falling back are the caller's.
import { ChunkTable, type Chunks, type PayloadLike } from './chunk-table.js'
import { DeltaDecoder, DeltaError } from './delta.js'
import { ShoalError } from './errors.js'
import { chunkKey } from './seal.js'
import type { ChunkRef, DeltaBaseRef, FileEntry, ManifestPayload, PayloadDelta } from './manifest.js'

/** A release the endpoint holds (or held): its public chunk table and its opened payload. */
export interface HeldRelease { version: string, chunks: readonly ChunkRef[], payload: ManifestPayload }

/** One base chunk of a delta: a blob of an older release and the key and size that open it. */
export interface BaseChunk { cid: string, key: string, size: number }

/** A chunk to rebuild or fetch: its chunk-table index, blob cid and size, chunk key and plaintext size. */
export interface WantedChunk { index: number, cid: string, blobSize: number, key: string, size: number }

export type FetchItem =
  | { kind: 'full', chunk: WantedChunk }
  /**
   * Fetch delta blob `cid` (`blobSize` bytes; `held` when already local, then it costs nothing),
   * open it with `delta.key` / `delta.size`, decode it against `base` (all held) and check the
   * chunks `targets` (all of the delta's targets, in order; the wanted ones are among them).
   */
  | { kind: 'delta', delta: PayloadDelta, cid: string, blobSize: number, held: boolean, base: BaseChunk[], targets: WantedChunk[] }

export interface FetchPlan {
  /** In chunk-table order of the first chunk each item serves. */
  items: FetchItem[]
  /** Blob bytes to transfer: full blobs plus delta blobs not already held. */
  bytes: number
  /** Wanted chunks (distinct chunk-table indices not held). */
  wanted: number
  /** Of those, served by deltas. */
  viaDelta: number
}

export class DeltaRebuildError extends ShoalError {
  /** 'delta': the delta does not decode against this base (DeltaError in `cause`); 'size'/'key': the output is not the chunk(s) expected. */
  readonly reason: 'delta' | 'size' | 'key'
  constructor (reason: DeltaRebuildError['reason'], message: string, options?: { cause?: unknown }) {
    super('ERR_DELTA_REBUILD', `${message}; fetch the full blob(s) instead`, options)
    this.reason = reason
  }
}

/** Expected chunk: its key (64 hex or 32 bytes) and plaintext size. */
export interface ExpectedChunk { key: string | Uint8Array, size: number }

function hexOf (k: string | Uint8Array): string {
  return typeof k === 'string' ? k : Buffer.from(k.buffer, k.byteOffset, k.byteLength).toString('hex')
}

function concat (parts: readonly Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0] as Uint8Array
  return Buffer.concat(parts)
}

/**
 * Rebuilds the chunks a delta targets: decodes `deltaPlaintext` (the opened delta blob) against the
 * concatenation of `baseChunkPlaintexts`, cuts the output at the expected sizes, and returns the
 * pieces only when HMAC-SHA256(contentKey, piece) equals each expected key. Throws
 * DeltaRebuildError otherwise (never returns unchecked bytes); the caller fetches the full blobs.
 */
export function rebuildChunks (contentKey: Uint8Array, deltaPlaintext: Uint8Array, baseChunkPlaintexts: readonly Uint8Array[], expected: readonly ExpectedChunk[]): Uint8Array[] {
  if (expected.length === 0) throw new DeltaRebuildError('size', 'a delta rebuilds at least one chunk')
  const total = expected.reduce((n, e) => n + e.size, 0)
  let out: Uint8Array
  try {
    out = new DeltaDecoder(concat(baseChunkPlaintexts)).decode(deltaPlaintext, total)
  } catch (err) {
    if (err instanceof DeltaError) throw new DeltaRebuildError('delta', `delta does not rebuild: ${err.message}`, { cause: err })
    throw err
  }
  if (out.length !== total) throw new DeltaRebuildError('size', `delta rebuilt ${out.length} bytes, the manifest lists ${total}`)
  const pieces: Uint8Array[] = []
  let off = 0
  for (const e of expected) {
    const piece = out.subarray(off, off + e.size)
    off += e.size
    if (hexOf(chunkKey(contentKey, piece)) !== hexOf(e.key)) {
      throw new DeltaRebuildError('key', `rebuilt chunk ${hexOf(e.key).slice(0, 16)}… does not match its chunk key`)
    }
    pieces.push(piece)
  }
  return pieces
}

/** rebuildChunks for a delta of one chunk. */
export function rebuildChunk (contentKey: Uint8Array, deltaPlaintext: Uint8Array, baseChunkPlaintexts: readonly Uint8Array[], expected: ExpectedChunk): Uint8Array {
  return rebuildChunks(contentKey, deltaPlaintext, baseChunkPlaintexts, [expected])[0] as Uint8Array
}

const pathIndex = new WeakMap<ManifestPayload, Map<string, FileEntry>>()

function fileIn (payload: ManifestPayload, path: string): FileEntry | undefined {
  let m = pathIndex.get(payload)
  if (m === undefined) {
    m = new Map(payload.files.map(f => [f.path, f]))
    pathIndex.set(payload, m)
  }
  return m.get(path)
}

/**
 * The base chunks a delta names, resolved in the held release `base.version`: chunks
 * [first, first + count) of `base.path`, with the cids of that release's chunk table and the keys
 * of its payload. Undefined when the release or file is not at hand, the range is outside the
 * file, or the sizes do not add up to `base.size` (that base cannot be the delta's).
 */
export function resolveDeltaBase (base: DeltaBaseRef, releases: Iterable<HeldRelease>): BaseChunk[] | undefined {
  for (const r of releases) {
    if (r.version !== base.version) continue
    const f = fileIn(r.payload, base.path)
    const cs = f?.chunks
    if (cs === undefined || base.first + base.count > cs.length) continue
    const out: BaseChunk[] = []
    let sum = 0
    for (const c of cs.slice(base.first, base.first + base.count)) {
      const ref = r.chunks[c.index]
      if (ref === undefined) break
      out.push({ cid: ref.cid, key: c.key, size: c.size })
      sum += c.size
    }
    if (out.length === base.count && sum === base.size) return out
  }
  return undefined
}

/**
 * Which blobs to fetch for a release (`chunks` its chunk table, `payload` its opened payload) when
 * `held(cid)` tells which blobs are local and `releases` are the held releases deltas may name as
 * base. Every file chunk not held is wanted; a delta serves its wanted targets when every base
 * chunk is held, and is used only when its blob (0 when held) is smaller than the full blobs of
 * the wanted targets it would still cover, best savings first. Everything else is fetched whole.
 */
export function planFetch (manifest: { chunks: Chunks } | { signed: { chunks: Chunks } }, payload: PayloadLike, held: (cid: string) => boolean, releases: Iterable<HeldRelease> = []): FetchPlan {
  const chunks = 'signed' in manifest ? manifest.signed.chunks : manifest.chunks
  const table = { at: (i: number): ChunkRef | undefined => chunks instanceof ChunkTable ? chunks.at(i) : chunks[i] }
  const chunkOf = new Map<number, WantedChunk>()
  for (const f of payload.files) {
    for (const c of f.chunks ?? []) {
      if (chunkOf.has(c.index)) continue
      const ref = table.at(c.index)
      if (ref === undefined) throw new ShoalError('ERR_DECODE', `${f.path}: chunk index ${c.index} is outside the chunk table`)
      chunkOf.set(c.index, { index: c.index, cid: ref.cid, blobSize: ref.size, key: c.key, size: c.size })
    }
  }
  const wanted = new Set<number>()
  for (const [i, c] of chunkOf) if (!held(c.cid)) wanted.add(i)
  const rels = [...releases]
  interface Candidate { delta: PayloadDelta, cid: string, blobSize: number, held: boolean, base: BaseChunk[], saving: number }
  const candidates: Candidate[] = []
  for (const d of payload.deltas ?? []) {
    const ref = table.at(d.index)
    if (ref === undefined) continue
    const full = d.targets.reduce((n, t) => n + (wanted.has(t) ? chunkOf.get(t)?.blobSize ?? 0 : 0), 0)
    if (full === 0) continue
    const base = resolveDeltaBase(d.base, rels)
    if (base === undefined || !base.every(b => held(b.cid))) continue
    const deltaHeld = held(ref.cid)
    const cost = deltaHeld ? 0 : ref.size
    if (cost >= full) continue
    candidates.push({ delta: d, cid: ref.cid, blobSize: ref.size, held: deltaHeld, base, saving: full - cost })
  }
  candidates.sort((a, b) => b.saving - a.saving || a.delta.index - b.delta.index)
  const covered = new Set<number>()
  const items: Array<{ first: number, item: FetchItem }> = []
  let bytes = 0
  const usedBlobs = new Set<string>()
  for (const c of candidates) {
    const still = c.delta.targets.filter(t => wanted.has(t) && !covered.has(t))
    const full = still.reduce((n, t) => n + (chunkOf.get(t)?.blobSize ?? 0), 0)
    const cost = c.held || usedBlobs.has(c.cid) ? 0 : c.blobSize
    if (still.length === 0 || cost >= full) continue
    for (const t of still) covered.add(t)
    usedBlobs.add(c.cid)
    bytes += cost
    items.push({
      first: Math.min(...still),
      item: { kind: 'delta', delta: c.delta, cid: c.cid, blobSize: c.blobSize, held: c.held, base: c.base, targets: c.delta.targets.map(t => chunkOf.get(t) as WantedChunk) }
    })
  }
  for (const i of wanted) {
    if (covered.has(i)) continue
    const chunk = chunkOf.get(i) as WantedChunk
    bytes += chunk.blobSize
    items.push({ first: i, item: { kind: 'full', chunk } })
  }
  items.sort((a, b) => a.first - b.first)
  return { items: items.map(x => x.item), bytes, wanted: wanted.size, viaDelta: covered.size }
}
