// PackStore's index `cid → (pack, offset, length)` in flat typed arrays instead of a Map.
//
// A `Map<string, Loc>` keyed by the hex cid cost ~160 bytes of V8 heap per blob (a 64-character
// string, a Loc object, the Map's own entry): 9 MB for the 57 000 blobs of a 1 GiB release, and
// hundreds of MB on a seed holding many releases, all of it live objects every major GC walks.
// Here a blob is 44 bytes in dense arrays (its cid's 32 raw bytes, then pack, offset and length as
// uint32) plus a 4-byte slot in an open-addressing table, outside the JS heap. (Keys and values in
// the slots themselves would be 45 bytes a slot: 5.9 MB at 57 000, where the table is 0.43 full.)
//
// Measured with 57 000 random cids (Node 20.20, x64, a loaded 2-core VM; --expose-gc, heapUsed +
// arrayBuffers after gc; times the best of 15 rounds, get in insertion order / in shuffled order):
//   Map<string, Loc>  9.16 MB (161 B a blob, all JS heap)   set 0.55 µs   get 0.46 / 1.1 µs
//   CidIndex          3.29 MB (58 B a blob, 0.07 MB heap)    set 0.10 µs   get 0.10 / 0.45 µs
// (the Map's times include the cid's hex conversion, which PackStore paid on every call).
//
// Layout: entries live densely in insertion order (a delete moves the last entry into the hole),
// so scans by pack are plain loops over a Uint32Array; the hash table holds only `entry + 1` per
// slot (0 = empty), linear probing, doubled above a load of 0.7, deletion by backward shift (no
// tombstones). cids are SHA-256 digests, uniform, so the first 4 bytes serve as the hash. It
// never shrinks: a store that deletes most of its blobs keeps the capacity it had.
import { InvalidArgumentError, ShoalError } from '../core/errors.js'
import { CID_BYTES } from '../core/seal.js'

export interface Loc { pack: number, off: number, len: number }

const MAX_LOAD = 0.7
const MIN_SLOTS = 16
const MIN_ENTRIES = 8
const U32_MAX = 0xffff_ffff

/** The index changed under an iteration of it (entries moved; the iteration would skip some). */
export class CidIndexChangedError extends ShoalError {
  constructor () {
    super('ERR_CID_INDEX_CHANGED', 'the cid index was changed while it was being iterated')
  }
}

function requireKey (cid: Uint8Array): void {
  if (!(cid instanceof Uint8Array) || cid.length !== CID_BYTES) {
    throw new InvalidArgumentError(`a cid is ${CID_BYTES} bytes, got ${cid instanceof Uint8Array ? cid.length : typeof cid}`)
  }
}

function requireU32 (what: string, v: number): void {
  if (!Number.isInteger(v) || v < 0 || v > U32_MAX) throw new InvalidArgumentError(`${what} must be an integer within 0…${U32_MAX}, got ${String(v)}`)
}

export class CidIndex {
  /** `entry + 1` per slot, 0 for an empty slot; its length is a power of two. */
  private slots = new Uint32Array(MIN_SLOTS)
  private mask = MIN_SLOTS - 1
  private keys = new Uint8Array(MIN_ENTRIES * CID_BYTES)
  private packs = new Uint32Array(MIN_ENTRIES)
  private offs = new Uint32Array(MIN_ENTRIES)
  private lens = new Uint32Array(MIN_ENTRIES)
  private count = 0
  /** Bumped when entries are added or removed (they move): iterations check it. */
  private version = 0

  get size (): number {
    return this.count
  }

  has (cid: Uint8Array): boolean {
    requireKey(cid)
    return this.find(cid) >= 0
  }

  get (cid: Uint8Array): Loc | undefined {
    requireKey(cid)
    const s = this.find(cid)
    return s < 0 ? undefined : this.loc((this.slots[s] as number) - 1)
  }

  /** Adds or replaces the entry of `cid` (the key's bytes are copied). */
  set (cid: Uint8Array, loc: Loc): this {
    requireKey(cid)
    requireU32('pack', loc.pack)
    requireU32('off', loc.off)
    requireU32('len', loc.len)
    const s = this.find(cid)
    if (s >= 0) {
      this.put((this.slots[s] as number) - 1, loc)
      return this
    }
    if (this.count + 1 > this.slots.length * MAX_LOAD) this.rehash(this.slots.length * 2)
    if (this.count === this.packs.length) this.growEntries()
    const e = this.count++
    this.keys.set(cid, e * CID_BYTES)
    this.put(e, loc)
    this.slots[this.emptySlot(this.hashOf(cid, 0))] = e + 1
    this.version++
    return this
  }

  delete (cid: Uint8Array): boolean {
    requireKey(cid)
    const s = this.find(cid)
    if (s < 0) return false
    const e = (this.slots[s] as number) - 1
    this.unslot(s)
    const last = this.count - 1
    if (e !== last) {
      // the last entry fills the hole, and its slot follows it
      const t = this.slotOf(last)
      this.keys.copyWithin(e * CID_BYTES, last * CID_BYTES, (last + 1) * CID_BYTES)
      this.put(e, this.loc(last))
      this.slots[t] = e + 1
    }
    this.count--
    this.version++
    return true
  }

  /**
   * Every entry as `[cid, loc]`, the cid a fresh copy. Adding or removing entries while iterating
   * throws CidIndexChangedError at the next step (replacing a value in place does not).
   */
  * entries (): Generator<[Uint8Array, Loc]> {
    const version = this.version
    for (let e = 0; e < this.count; e++) {
      if (this.version !== version) throw new CidIndexChangedError()
      yield [this.keys.slice(e * CID_BYTES, (e + 1) * CID_BYTES), this.loc(e)]
    }
    if (this.version !== version) throw new CidIndexChangedError()
  }

  /** The entries of one pack, as a list (safe to hold across changes of the index). */
  entriesOf (pack: number): Array<[Uint8Array, Loc]> {
    const out: Array<[Uint8Array, Loc]> = []
    for (let e = 0; e < this.count; e++) {
      if (this.packs[e] === pack) out.push([this.keys.slice(e * CID_BYTES, (e + 1) * CID_BYTES), this.loc(e)])
    }
    return out
  }

  /** Whether any entry is in `pack`. */
  hasPack (pack: number): boolean {
    for (let e = 0; e < this.count; e++) if (this.packs[e] === pack) return true
    return false
  }

  /** A copy of every key, CID_BYTES each, end to end (one buffer rather than an object per cid). */
  keyBytes (): Uint8Array {
    return this.keys.slice(0, this.count * CID_BYTES)
  }

  private loc (e: number): Loc {
    return { pack: this.packs[e] as number, off: this.offs[e] as number, len: this.lens[e] as number }
  }

  private put (e: number, loc: Loc): void {
    this.packs[e] = loc.pack
    this.offs[e] = loc.off
    this.lens[e] = loc.len
  }

  /** The first 4 bytes of a key at `at` in `bytes`, little-endian. */
  private hashOf (bytes: Uint8Array, at: number): number {
    return ((bytes[at] as number) | (bytes[at + 1] as number) << 8 | (bytes[at + 2] as number) << 16 | (bytes[at + 3] as number) << 24) >>> 0
  }

  private home (e: number): number {
    return this.hashOf(this.keys, e * CID_BYTES) & this.mask
  }

  private keyEquals (e: number, cid: Uint8Array): boolean {
    const keys = this.keys
    const at = e * CID_BYTES
    for (let i = 0; i < CID_BYTES; i++) if (keys[at + i] !== cid[i]) return false
    return true
  }

  /** The slot holding `cid`, or -1. The table always has an empty slot, so the probe ends. */
  private find (cid: Uint8Array): number {
    const slots = this.slots
    for (let s = this.hashOf(cid, 0) & this.mask; ; s = (s + 1) & this.mask) {
      const v = slots[s] as number
      if (v === 0) return -1
      if (this.keyEquals(v - 1, cid)) return s
    }
  }

  /** The slot holding entry `e` (which is present). */
  private slotOf (e: number): number {
    let s = this.home(e)
    while (this.slots[s] !== e + 1) s = (s + 1) & this.mask
    return s
  }

  private emptySlot (hash: number): number {
    let s = hash & this.mask
    while (this.slots[s] !== 0) s = (s + 1) & this.mask
    return s
  }

  /**
   * Empties slot `s` and shifts back the entries after it in its run that may move (those whose
   * home slot is not between the hole and them), so every probe still reaches its key.
   */
  private unslot (s: number): void {
    const slots = this.slots
    const mask = this.mask
    let hole = s
    for (let j = (s + 1) & mask; ; j = (j + 1) & mask) {
      const v = slots[j] as number
      if (v === 0) break
      const home = this.home(v - 1)
      if (((j - home) & mask) >= ((j - hole) & mask)) {
        slots[hole] = v
        hole = j
      }
    }
    slots[hole] = 0
  }

  private rehash (size: number): void {
    this.slots = new Uint32Array(size)
    this.mask = size - 1
    for (let e = 0; e < this.count; e++) this.slots[this.emptySlot(this.hashOf(this.keys, e * CID_BYTES))] = e + 1
  }

  /** The entry arrays grow by half (the table above them doubles): less unused capacity. */
  private growEntries (): void {
    const cap = Math.ceil(this.packs.length * 1.5)
    const keys = new Uint8Array(cap * CID_BYTES)
    keys.set(this.keys)
    this.keys = keys
    for (const name of ['packs', 'offs', 'lens'] as const) {
      const a = new Uint32Array(cap)
      a.set(this[name])
      this[name] = a
    }
  }
}
