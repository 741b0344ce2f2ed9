// Content-defined chunking: FastCDC as published in 2020 (Xia et al., "The Design of Fast
// Content-Defined Chunking for Data Deduplication Based Storage Systems", IEEE TPDS 31(9)):
// gear hash, cut-point skipping below the minimum size, normalized chunking (level 2 here).
// The cut points are exactly those of the Rust crate `fastcdc`, module v2020, with the same gear
// table and masks (see gear.ts), so its published vectors are our known-answer tests.
//
// How the crate's cut works, restated so the fast path below can be checked against it:
// the hash starts at 0 at chunk offset `min` and takes each byte p as h = (h << 1) + GEAR[byte]
// (mod 2^64; the crate rolls two bytes per iteration with a pre-shifted table, which yields the
// same cut points). Bytes are hashed only while p < R & ~1, where R = min(max, bytes left in the
// file) (a trailing odd byte is never hashed). The first p with (h & mask) == 0 ends the chunk at
// length p: the byte that matched starts the next chunk. mask is MASK_S (harder) while p < avg
// and MASK_L (easier) after; no match gives a chunk of R bytes.
//
// Speed: all mask bits lie in bits 12..47, and bits 0..47 of a left-shift gear hash depend only on
// the low 48 bits of the last 48 table values. The hot loop keeps just the low 32 bits in an int32
// (small-integer arithmetic only: no doubles, no BigInt); when those bits pass the mask (one byte
// in 64 to 512) the bits 32..47 are recomputed exactly from the last 48 bytes.

import { ShoalError } from './errors.js'
import { GEAR_HEX, MASKS } from './gear.js'

export interface ChunkerOptions { minSize: number, avgSize: number, maxSize: number }

export const DEFAULT_CHUNKER_OPTIONS: Readonly<ChunkerOptions> = Object.freeze({
  minSize: 4096,
  avgSize: 16384,
  maxSize: 65536
})

/** Normalization level: 2 is what shoal uses; 0, 1 and 3 exist to replay the crate's vectors. */
export type NormalizationLevel = 0 | 1 | 2 | 3

export const CHUNKER_LIMITS = Object.freeze({
  minSizeLow: 64,
  minSizeHigh: 1024 * 1024,
  avgSizeLow: 256,
  avgSizeHigh: 4 * 1024 * 1024,
  maxSizeLow: 1024,
  maxSizeHigh: 16 * 1024 * 1024
})

export class InvalidChunkerOptionsError extends ShoalError {
  constructor (message: string) {
    super('ERR_INVALID_CHUNKER_OPTIONS', `invalid chunker options: ${message}`)
  }
}

function checkSize (name: string, v: unknown, low: number, high: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v)) {
    throw new InvalidChunkerOptionsError(`${name} must be an integer number of bytes, got ${String(v)}`)
  }
  if (v < low || v > high) throw new InvalidChunkerOptionsError(`${name} must be between ${low} and ${high} bytes, got ${v}`)
  return v
}

/**
 * Fills missing fields from the defaults and checks the combination. Ranges are the crate's;
 * `avgSize` must be a power of two (the mask has log2(avg) bits, so any other value would be
 * silently rounded) and `minSize` even (the crate rolls bytes in pairs from min, so an odd min
 * could cut one byte below it).
 */
export function validateChunkerOptions (o: Partial<ChunkerOptions>): ChunkerOptions {
  const L = CHUNKER_LIMITS
  const minSize = checkSize('minSize', o.minSize ?? DEFAULT_CHUNKER_OPTIONS.minSize, L.minSizeLow, L.minSizeHigh)
  const avgSize = checkSize('avgSize', o.avgSize ?? DEFAULT_CHUNKER_OPTIONS.avgSize, L.avgSizeLow, L.avgSizeHigh)
  const maxSize = checkSize('maxSize', o.maxSize ?? DEFAULT_CHUNKER_OPTIONS.maxSize, L.maxSizeLow, L.maxSizeHigh)
  if (minSize % 2 !== 0) throw new InvalidChunkerOptionsError(`minSize must be even, got ${minSize}`)
  if ((avgSize & (avgSize - 1)) !== 0) {
    throw new InvalidChunkerOptionsError(`avgSize must be a power of two (e.g. 8192, 16384, 32768), got ${avgSize}`)
  }
  if (!(minSize < avgSize && avgSize < maxSize)) {
    throw new InvalidChunkerOptionsError(`sizes must satisfy minSize < avgSize < maxSize, got ${minSize} / ${avgSize} / ${maxSize}`)
  }
  return { minSize, avgSize, maxSize }
}

// The hot loop's tables: the low 32 bits of each gear value as int32, and the same shifted left
// one bit (the 2020 paper's "rolling two bytes": h = (h << 2) + GEAR_LS[x] gives twice the hash
// after byte x, tested against the mask shifted left one bit; no mask has bit 31 set).
const GEAR_LO = new Int32Array(256)
const GEAR_LO_LS = new Int32Array(256)
// The exact check's tables: bits 0..23 and 24..47, so it runs on small integers alone.
const GEAR_24 = new Int32Array(256)
const GEAR_48 = new Int32Array(256)
for (let i = 0; i < 256; i++) {
  const hex = GEAR_HEX[i] as string
  const lo = parseInt(hex.slice(8), 16)
  GEAR_LO[i] = lo | 0
  GEAR_LO_LS[i] = lo << 1
  GEAR_24[i] = lo & 0xffffff
  GEAR_48[i] = parseInt(hex.slice(4, 10), 16)
}

/**
 * Bits 32..47 of the gear hash after byte `p`, where hashing started at `from0`: only the last
 * 48 bytes reach bits 0..47, so they are recomputed from those, in two 24-bit halves.
 */
function highBits (buf: Uint8Array, from0: number, p: number): number {
  let j = p - 47 > from0 ? p - 47 : from0
  let a = 0
  let b = 0
  for (; j <= p; j++) {
    const x = buf[j] as number
    a = (a << 1) + (GEAR_24[x] as number)
    b = ((b << 1) + (GEAR_48[x] as number) + (a >> 24)) & 0xffffff
    a &= 0xffffff
  }
  return b >> 8
}

/**
 * Byte by byte over buf[i..i+n) from hash `lo`: the first index whose hash passes the mask, or
 * -1. Kept out of scan() so the hot loop holds no rarely-taken code: V8 deoptimizes a function
 * each time it first reaches a branch it has no type feedback for.
 */
function resolve (buf: Uint8Array, i: number, n: number, lo: number, mLo: number, mHi: number, from0: number): number {
  for (let k = i; k < i + n; k++) {
    lo = ((lo << 1) + (GEAR_LO[buf[k] as number] as number)) | 0
    if ((lo & mLo) === 0 && (highBits(buf, from0, k) & mHi) === 0) return k
  }
  return -1
}

/**
 * Hashes buf[i..end) onward from `state.lo` and returns the index of the first byte whose hash
 * passes the mask (mLo: bits 0..31, mHi: bits 32..47), or -1 with `state.lo` updated. `i` and
 * `end` are an even distance from `from0`, where this chunk's hashing started (chunk start + min).
 */
function scan (buf: Uint8Array, i: number, end: number, mLo: number, mHi: number, from0: number, state: { lo: number }): number {
  const G = GEAR_LO
  const GLS = GEAR_LO_LS
  const mLs = mLo << 1
  // One 4-byte little-endian read instead of four byte reads: each typed-array read costs a
  // bounds check, and the reads, not the hash, bound this loop.
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength)
  let lo = state.lo
  const end4 = end - 3
  while (i < end4) {
    const w = view.getInt32(i, true)
    const h1 = ((lo << 2) + (GLS[w & 0xff] as number)) | 0 // twice the hash after byte i
    const h2 = (h1 + (G[(w >> 8) & 0xff] as number)) | 0
    const h3 = ((h2 << 2) + (GLS[(w >> 16) & 0xff] as number)) | 0
    const h4 = (h3 + (G[w >>> 24] as number)) | 0
    // The mask's low half passes once in 64 to 512 bytes: this test is almost always true.
    if ((h1 & mLs) !== 0 && (h2 & mLo) !== 0 && (h3 & mLs) !== 0 && (h4 & mLo) !== 0) {
      lo = h4
      i += 4
      continue
    }
    const at = resolve(buf, i, 4, lo, mLo, mHi, from0)
    if (at >= 0) return at
    lo = h4
    i += 4
  }
  if (i < end) { // one byte pair left
    const at = resolve(buf, i, 2, lo, mLo, mHi, from0)
    if (at >= 0) return at
    lo = ((((lo << 1) + (G[buf[i] as number] as number)) << 1) + (G[buf[i + 1] as number] as number)) | 0
  }
  state.lo = lo
  return -1
}

/**
 * The cut-point search for one chunk at a time, resumable: bytes may arrive in pieces, and the
 * search continues where it stopped. Holds no data, only the position and the hash.
 */
class CutFinder {
  readonly min: number
  readonly avg: number
  readonly max: number
  private readonly sLo: number
  private readonly sHi: number
  private readonly lLo: number
  private readonly lHi: number
  /** Chunk-relative offset of the next byte to hash (starts at min: cut-point skipping). */
  private next: number
  /** Low 32 bits of the hash so far. */
  private readonly state = { lo: 0 }

  constructor (opts: ChunkerOptions, level: NormalizationLevel) {
    this.min = opts.minSize
    this.avg = opts.avgSize
    this.max = opts.maxSize
    const bits = Math.round(Math.log2(opts.avgSize))
    const s = MASKS[bits + level] as readonly [number, number]
    const l = MASKS[bits - level] as readonly [number, number]
    this.sHi = s[0]
    this.sLo = s[1] | 0
    this.lHi = l[0]
    this.lLo = l[1] | 0
    this.next = this.min
  }

  reset (): void {
    this.next = this.min
    this.state.lo = 0
  }

  /**
   * The current chunk starts at buf[start] and `avail` of its bytes are in buf (the caller keeps
   * them contiguous). Returns its length if the cut is decided, else -1: more bytes are needed,
   * or, at end of input, all `avail` bytes are the chunk.
   */
  find (buf: Uint8Array, start: number, avail: number): number {
    const atMax = avail >= this.max
    // Hash only whole byte pairs, as the crate does: whether a trailing odd byte gets hashed
    // depends on bytes not seen yet, so it waits.
    const limit = (atMax ? this.max : avail) & ~1
    let p = this.next
    if (p < limit) {
      const from0 = start + this.min
      const mid = this.avg < limit ? this.avg : limit
      if (p < mid) {
        const at = scan(buf, start + p, start + mid, this.sLo, this.sHi, from0, this.state)
        if (at >= 0) { this.reset(); return at - start }
        p = mid
      }
      if (p < limit) {
        const at = scan(buf, start + p, start + limit, this.lLo, this.lHi, from0, this.state)
        if (at >= 0) { this.reset(); return at - start }
      }
      this.next = limit
    }
    if (atMax) { this.reset(); return this.max }
    return -1
  }
}

/** Incremental, synchronous core: feed bytes, get completed chunks. Used in worker threads too. */
export class FastCdc {
  private readonly cut: CutFinder
  /** The current chunk's bytes when it spans push() calls (else empty). Reused; never returned. */
  private pending: Uint8Array | null = null
  private pendingLength = 0

  /** `level` is for replaying the `fastcdc` crate's vectors only; shoal always cuts at level 2. */
  constructor (opts: ChunkerOptions = DEFAULT_CHUNKER_OPTIONS, level: NormalizationLevel = 2) {
    this.cut = new CutFinder(validateChunkerOptions(opts), checkLevel(level))
  }

  /**
   * The chunks completed by `data`, each a fresh copy (never a view of `data` or of the internal
   * buffer). Bytes after the last cut are kept until more data or finish().
   */
  push (data: Uint8Array): Uint8Array[] {
    const out: Uint8Array[] = []
    const cut = this.cut
    let off = 0
    // A chunk carried over from earlier pushes: grow it in the pending buffer until it is cut.
    // Every pending byte has been through find() when push() returns, so finish() needs no search.
    while (this.pendingLength > 0) {
      const pending = this.pending as Uint8Array
      const take = Math.min(cut.max - this.pendingLength, data.length - off)
      pending.set(data.subarray(off, off + take), this.pendingLength)
      this.pendingLength += take
      off += take
      const n = cut.find(pending, 0, this.pendingLength)
      if (n < 0) return out // below max, so `data` is used up
      out.push(pending.slice(0, n))
      const rest = this.pendingLength - n
      if (rest <= take) {
        // The bytes past the cut all came from `data`: resume on `data` directly, no more copying.
        off -= rest
        this.pendingLength = 0
      } else {
        // Some bytes past the cut were pending before `data` arrived: they stay pending.
        pending.copyWithin(0, n, this.pendingLength)
        this.pendingLength = rest
      }
    }
    while (off < data.length) {
      const n = cut.find(data, off, data.length - off)
      if (n < 0) {
        this.pending ??= new Uint8Array(cut.max)
        this.pending.set(data.subarray(off), 0)
        this.pendingLength = data.length - off
        break
      }
      out.push(data.slice(off, off + n))
      off += n
    }
    return out
  }

  /** The tail (end of file is a forced cut), or null if no bytes are pending. Resets for reuse. */
  finish (): Uint8Array | null {
    const n = this.pendingLength
    this.pendingLength = 0
    this.cut.reset()
    return n === 0 ? null : (this.pending as Uint8Array).slice(0, n)
  }
}

function checkLevel (level: NormalizationLevel): NormalizationLevel {
  if (level !== 0 && level !== 1 && level !== 2 && level !== 3) {
    throw new InvalidChunkerOptionsError(`normalization level must be 0, 1, 2 or 3, got ${String(level)}`)
  }
  return level
}

/** Streams one file's bytes into chunks; memory bounded by ~maxSize + one input buffer. */
export async function * chunkStream (source: AsyncIterable<Uint8Array>, opts: ChunkerOptions = DEFAULT_CHUNKER_OPTIONS): AsyncGenerator<Uint8Array> {
  const cdc = new FastCdc(opts)
  for await (const piece of source) {
    // Yield one by one so a slow consumer holds back the source.
    for (const chunk of cdc.push(piece)) yield chunk
  }
  const tail = cdc.finish()
  if (tail !== null) yield tail
}

/** Cut points of one in-memory buffer (lengths), for tests and the bench. */
export function chunkLengths (data: Uint8Array, opts: ChunkerOptions = DEFAULT_CHUNKER_OPTIONS, level: NormalizationLevel = 2): number[] {
  const cut = new CutFinder(validateChunkerOptions(opts), checkLevel(level))
  const out: number[] = []
  let off = 0
  while (off < data.length) {
    const n = cut.find(data, off, data.length - off)
    const len = n < 0 ? data.length - off : n
    out.push(len)
    off += len
  }
  return out
}
