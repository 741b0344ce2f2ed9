// What a peer holds of one release: one bit per entry of the manifest's chunk table. The bytes
// are the `/shoal/have/1` wire content (docs/swarm.md §1), so decoding is strict: a map that
// claims chunks past the table would make a peer ask for blobs that do not exist, and two
// spellings of one map would make the same state compare unequal.
//
// Bit order is LSB-first (chunk i is bit i & 7 of byte i >> 3), the order site.ts writes.

import { DecodeError, InvalidArgumentError } from '../core/errors.js'

/** The manifest caps its chunk table at 4 000 000 entries (docs/protocol.md §1.5). */
export const MAX_CHUNKS = 4_000_000
/** Indices one increment may carry; a larger batch is sent as several increments. */
export const MAX_INCREMENT = 65_536

function checkCount (chunkCount: number): void {
  if (!Number.isSafeInteger(chunkCount) || chunkCount < 0 || chunkCount > MAX_CHUNKS) {
    throw new InvalidArgumentError(`chunk count must be an integer 0…${MAX_CHUNKS}, not ${chunkCount}`)
  }
}

function popcount8 (b: number): number {
  b = b - ((b >> 1) & 0x55)
  b = (b & 0x33) + ((b >> 2) & 0x33)
  return (b + (b >> 4)) & 0x0f
}

export class HaveMap {
  readonly chunkCount: number
  private readonly bits: Uint8Array
  private held = 0

  constructor (chunkCount: number) {
    checkCount(chunkCount)
    this.chunkCount = chunkCount
    this.bits = new Uint8Array(Math.ceil(chunkCount / 8))
  }

  /** Every chunk held: a peer with the release installed. */
  static full (chunkCount: number): HaveMap {
    const m = new HaveMap(chunkCount)
    for (let i = 0; i < chunkCount; i++) m.set(i)
    return m
  }

  /** Strict inverse of encode(): exactly ceil(chunkCount / 8) bytes, no bit set at or past chunkCount. */
  static decode (bytes: Uint8Array, chunkCount: number): HaveMap {
    checkCount(chunkCount)
    const m = new HaveMap(chunkCount)
    if (bytes.byteLength !== m.bits.byteLength) {
      throw new DecodeError('have-map', `${bytes.byteLength} bytes for ${chunkCount} chunks, expected ${m.bits.byteLength}`)
    }
    const tail = chunkCount & 7
    if (tail !== 0 && (bytes[bytes.byteLength - 1]! >> tail) !== 0) {
      throw new DecodeError('have-map', `bits set past chunk ${chunkCount - 1}`)
    }
    m.bits.set(bytes)
    let held = 0
    for (const b of m.bits) held += popcount8(b)
    m.held = held
    return m
  }

  encode (): Uint8Array {
    return Uint8Array.from(this.bits)
  }

  private check (index: number): void {
    if (!Number.isSafeInteger(index) || index < 0 || index >= this.chunkCount) {
      throw new InvalidArgumentError(`chunk index ${index} outside 0…${this.chunkCount - 1}`)
    }
  }

  has (index: number): boolean {
    if (!Number.isSafeInteger(index) || index < 0 || index >= this.chunkCount) return false
    return (this.bits[index >> 3]! & (1 << (index & 7))) !== 0
  }

  /** Marks a chunk held; true when it was not held before. */
  set (index: number): boolean {
    this.check(index)
    const mask = 1 << (index & 7)
    const byte = this.bits[index >> 3]!
    if ((byte & mask) !== 0) return false
    this.bits[index >> 3] = byte | mask
    this.held++
    return true
  }

  /** Chunks held. */
  get count (): number {
    return this.held
  }

  get complete (): boolean {
    return this.held === this.chunkCount
  }

  /** Indices held, ascending. */
  indices (): number[] {
    const out: number[] = []
    for (let i = 0; i < this.chunkCount; i++) if (this.has(i)) out.push(i)
    return out
  }

  clone (): HaveMap {
    return HaveMap.decode(this.bits, this.chunkCount)
  }
}

// Increments: a count, then the sorted indices as gaps, each an unsigned LEB128 varint. Gaps keep
// a burst of adjacent chunks at one byte each; "gap − 1" after the first makes repeats and
// descending orders unrepresentable, so there is one encoding per set.

function pushVarint (out: number[], v: number): void {
  while (v >= 0x80) {
    out.push((v & 0x7f) | 0x80)
    v = Math.floor(v / 128)
  }
  out.push(v)
}

/** Encodes a set of chunk indices (any order, repeats ignored) as one increment. */
export function encodeIncrement (indices: Iterable<number>): Uint8Array {
  const sorted = [...new Set(indices)].sort((a, b) => a - b)
  if (sorted.length > MAX_INCREMENT) throw new InvalidArgumentError(`an increment carries at most ${MAX_INCREMENT} indices, not ${sorted.length}`)
  const out: number[] = []
  pushVarint(out, sorted.length)
  let prev = -1
  for (const i of sorted) {
    if (!Number.isSafeInteger(i) || i < 0 || i >= MAX_CHUNKS) throw new InvalidArgumentError(`chunk index ${i} out of range`)
    pushVarint(out, i - prev - 1)
    prev = i
  }
  return Uint8Array.from(out)
}

/** Decodes an increment for a release of `chunkCount` chunks: indices ascending, each < chunkCount. */
export function decodeIncrement (bytes: Uint8Array, chunkCount: number, max = MAX_INCREMENT): number[] {
  checkCount(chunkCount)
  let pos = 0
  const varint = (): number => {
    let v = 0
    let scale = 1
    for (let n = 0; n < 4; n++) { // 4 × 7 bits cover MAX_CHUNKS; longer is not ours
      if (pos >= bytes.byteLength) throw new DecodeError('have increment', 'truncated')
      const b = bytes[pos++]!
      v += (b & 0x7f) * scale
      if ((b & 0x80) === 0) {
        if (b === 0 && n > 0) throw new DecodeError('have increment', 'overlong varint')
        return v
      }
      scale *= 128
    }
    throw new DecodeError('have increment', 'varint too long')
  }
  const n = varint()
  if (n > max) throw new DecodeError('have increment', `${n} indices, at most ${max} allowed`)
  if (n > chunkCount) throw new DecodeError('have increment', `${n} indices for ${chunkCount} chunks`)
  const out: number[] = new Array<number>(n)
  let prev = -1
  for (let k = 0; k < n; k++) {
    const i = prev + 1 + varint()
    if (i >= chunkCount) throw new DecodeError('have increment', `chunk index ${i} past the last chunk ${chunkCount - 1}`)
    out[k] = i
    prev = i
  }
  if (pos !== bytes.byteLength) throw new DecodeError('have increment', `${bytes.byteLength - pos} trailing bytes`)
  return out
}
