// A release's chunk table held compactly: what the endpoint keeps through a download and install.
//
// The decoded manifest lists its chunks as `{ cid, size }` objects with 64-character hex cids:
// ~110 bytes of V8 heap per chunk (an 80-byte string, the object, its array slot), 6.3 MB for a
// 1 GiB release of 57 000 chunks — and with the daemon's `--heap-growing-percent=100` the heap
// reaches twice what is live before a full GC, so every live MB costs two of RSS while receiving
// (docs/bench-daemon.md, "The receiving peak at 1 GiB"). Here: 32 bytes of cid in one buffer and
// 4 bytes of size in one typed array per chunk, 2.1 MB for the same table, two objects in all.
// A cid is turned into hex (or a ChunkRef) only when asked, and such a string dies young.
import { InvalidArgumentError } from './errors.js'
import type { ChunkRef, FileChunk, FileEntry, ManifestPayload } from './manifest.js'

const CID_BYTES = 32
const CID_HEX = /^[0-9a-f]{64}$/
const MAX_SIZE = 0xffff_ffff

/** Whether `i` indexes a list of `length` entries. */
function inRange (i: number, length: number): boolean {
  return Number.isInteger(i) && i >= 0 && i < length
}

function checkIndex (i: number, length: number, what: 'chunk index' | 'file chunk'): void {
  if (!inRange(i, length)) throw new RangeError(`${what} ${i} is outside the ${what === 'chunk index' ? 'table' : 'list'} of ${length}`)
}

/** A chunk table either way: compact, or as a decoded manifest lists it. */
export type Chunks = ChunkTable | readonly ChunkRef[]

export class ChunkTable implements Iterable<ChunkRef> {
  readonly length: number

  private constructor (private readonly cids: Buffer, private readonly sizes: Uint32Array) {
    this.length = sizes.length
  }

  /** The table of `refs` (cids: 64 lowercase hex characters; sizes: integers in [0, 2³²)). */
  static of (refs: readonly ChunkRef[]): ChunkTable {
    const cids = Buffer.allocUnsafe(refs.length * CID_BYTES)
    const sizes = new Uint32Array(refs.length)
    for (let i = 0; i < refs.length; i++) {
      const r = refs[i] as ChunkRef
      if (typeof r.cid !== 'string' || !CID_HEX.test(r.cid)) throw new InvalidArgumentError(`chunk ${i}: a cid is 64 lowercase hex characters, got ${JSON.stringify(r.cid)}`)
      if (!Number.isInteger(r.size) || r.size < 0 || r.size > MAX_SIZE) throw new InvalidArgumentError(`chunk ${i}: a blob size is an integer in [0, 2³²), got ${r.size}`)
      cids.write(r.cid, i * CID_BYTES, CID_BYTES, 'hex')
      sizes[i] = r.size
    }
    return new ChunkTable(cids, sizes)
  }

  /** `t` as a ChunkTable (converted when it is a decoded manifest's array). */
  static from (t: ChunkTable | readonly ChunkRef[]): ChunkTable {
    return t instanceof ChunkTable ? t : ChunkTable.of(t)
  }

  /** Chunk `i`'s cid in hex. */
  cid (i: number): string {
    checkIndex(i, this.length, 'chunk index')
    return this.cids.toString('hex', i * CID_BYTES, (i + 1) * CID_BYTES)
  }

  /** Chunk `i`'s cid: a view into the table, not to be written to. */
  cidBytes (i: number): Uint8Array {
    checkIndex(i, this.length, 'chunk index')
    return this.cids.subarray(i * CID_BYTES, (i + 1) * CID_BYTES)
  }

  /** Chunk `i`'s blob size in bytes. */
  size (i: number): number {
    checkIndex(i, this.length, 'chunk index')
    return this.sizes[i] as number
  }

  /** Chunk `i` as a ChunkRef, or undefined outside the table (like an array's `[i]`). */
  at (i: number): ChunkRef | undefined {
    if (!inRange(i, this.length)) return undefined
    return { cid: this.cid(i), size: this.sizes[i] as number }
  }

  * [Symbol.iterator] (): Iterator<ChunkRef> {
    for (let i = 0; i < this.length; i++) yield { cid: this.cid(i), size: this.sizes[i] as number }
  }

  /** Every cid as 32-byte records one after another, in table order: a view, not to be written to. */
  cidRecords (): Uint8Array {
    return this.cids.subarray(0, this.length * CID_BYTES)
  }

  /** Every cid in hex, in table order (a transient array: for tests and small tables). */
  cidList (): string[] {
    const out = new Array<string>(this.length)
    for (let i = 0; i < this.length; i++) out[i] = this.cid(i)
    return out
  }

  /** The sum of the blob sizes of `indices` (all chunks when omitted). */
  bytes (indices?: Iterable<number>): number {
    let n = 0
    if (indices === undefined) {
      for (const s of this.sizes) n += s
      return n
    }
    for (const i of indices) n += this.size(i)
    return n
  }

  /**
   * The distinct cids in order of first appearance (the index space of have-maps, docs/protocol.md
   * §6.7), and for each entry of this table its index in that distinct table. Computed once; the
   * same objects every call, not to be written to.
   */
  distinct (): { table: ChunkTable, indexOf: Uint32Array } {
    // Once per table: the endpoint asks for it at several steps of one download.
    this.distinctOnce ??= this.computeDistinct()
    return this.distinctOnce
  }

  private distinctOnce: { table: ChunkTable, indexOf: Uint32Array } | undefined

  private computeDistinct (): { table: ChunkTable, indexOf: Uint32Array } {
    const first = new Map<string, number>() // latin1 keys: 32-character strings, transient
    const indexOf = new Uint32Array(this.length)
    const keep: number[] = []
    for (let i = 0; i < this.length; i++) {
      const k = this.cids.toString('latin1', i * CID_BYTES, (i + 1) * CID_BYTES)
      let d = first.get(k)
      if (d === undefined) { d = keep.length; first.set(k, d); keep.push(i) }
      indexOf[i] = d
    }
    if (keep.length === this.length) return { table: this, indexOf }
    const cids = Buffer.allocUnsafe(keep.length * CID_BYTES)
    const sizes = new Uint32Array(keep.length)
    keep.forEach((src, d) => {
      this.cids.copy(cids, d * CID_BYTES, src * CID_BYTES, (src + 1) * CID_BYTES)
      sizes[d] = this.sizes[src] as number
    })
    return { table: new ChunkTable(cids, sizes), indexOf }
  }
}

/**
 * A file's chunk list held compactly: index, plaintext size and 32-byte key per chunk (40 bytes;
 * a `{ index, key, size }` object with its 64-character key is ~120). Array-like where the
 * endpoint's readers need it: `length`, `at`, `slice`, iteration, `some`.
 */
export class FileChunkList implements Iterable<FileChunk> {
  readonly length: number

  private constructor (private readonly indices: Uint32Array, private readonly sizes: Uint32Array, private readonly keys: Buffer) {
    this.length = indices.length
  }

  static of (chunks: readonly FileChunk[]): FileChunkList {
    const indices = new Uint32Array(chunks.length)
    const sizes = new Uint32Array(chunks.length)
    const keys = Buffer.allocUnsafe(chunks.length * CID_BYTES)
    chunks.forEach((c, i) => {
      if (!Number.isInteger(c.index) || c.index < 0 || c.index > MAX_SIZE) throw new InvalidArgumentError(`file chunk ${i}: an index is an integer in [0, 2³²), got ${c.index}`)
      if (!Number.isInteger(c.size) || c.size < 0 || c.size > MAX_SIZE) throw new InvalidArgumentError(`file chunk ${i}: a size is an integer in [0, 2³²), got ${c.size}`)
      if (typeof c.key !== 'string' || !CID_HEX.test(c.key)) throw new InvalidArgumentError(`file chunk ${i}: a key is 64 lowercase hex characters, got ${JSON.stringify(c.key)}`)
      indices[i] = c.index
      sizes[i] = c.size
      keys.write(c.key, i * CID_BYTES, CID_BYTES, 'hex')
    })
    return new FileChunkList(indices, sizes, keys)
  }

  at (i: number): FileChunk | undefined {
    if (Number.isInteger(i) && i < 0) i += this.length
    if (!inRange(i, this.length)) return undefined
    return { index: this.indices[i] as number, key: this.keys.toString('hex', i * CID_BYTES, (i + 1) * CID_BYTES), size: this.sizes[i] as number }
  }

  /** Chunk `i`'s index into the chunk table (no object made). */
  indexAt (i: number): number {
    checkIndex(i, this.length, 'file chunk')
    return this.indices[i] as number
  }

  /** Chunk `i`'s key: a view into the list, not to be written to. */
  keyBytes (i: number): Uint8Array {
    checkIndex(i, this.length, 'file chunk')
    return this.keys.subarray(i * CID_BYTES, (i + 1) * CID_BYTES)
  }

  /** Like Array.prototype.slice (negative bounds count from the end), as plain FileChunks. */
  slice (start = 0, end = this.length): FileChunk[] {
    const norm = (x: number): number => Math.min(this.length, Math.max(0, x < 0 ? this.length + x : x))
    const out: FileChunk[] = []
    for (let i = norm(start), e = norm(end); i < e; i++) out.push(this.at(i) as FileChunk)
    return out
  }

  some (pred: (c: FileChunk, i: number) => boolean): boolean {
    for (let i = 0; i < this.length; i++) if (pred(this.at(i) as FileChunk, i)) return true
    return false
  }

  * [Symbol.iterator] (): Iterator<FileChunk> {
    for (let i = 0; i < this.length; i++) yield this.at(i) as FileChunk
  }
}

/** A file chunk list either way: compact, or as the decoded payload has it. */
export type FileChunks = FileChunkList | readonly FileChunk[]
export type CompactFileEntry = Omit<FileEntry, 'chunks'> & { chunks?: FileChunkList }
/** An opened payload whose files' chunk lists are compact: what the endpoint keeps until the install. */
export type CompactPayload = Omit<ManifestPayload, 'files'> & { files: CompactFileEntry[] }
/** A payload either way. */
export type PayloadLike = ManifestPayload | CompactPayload

export function compactPayload (p: ManifestPayload): CompactPayload {
  return {
    ...p,
    files: p.files.map(f => {
      const { chunks, ...rest } = f
      return chunks === undefined ? rest : { ...rest, chunks: FileChunkList.of(chunks) }
    })
  }
}
