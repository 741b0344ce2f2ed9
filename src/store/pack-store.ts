// The daemon's blob store: verified blobs appended to pack files (docs/protocol.md §5.2).
//
// A file per blob costs an inode: 300–500 µs of CPU per blob on our VMs, which capped a download at
// a few hundred blobs a second (docs/bench-daemon.md). Here a blob is one append to the active pack
// (64 MiB at most), located by an in-memory index `cid → (pack, offset, length)` (cid-index.ts,
// ~60 bytes a blob) that is persisted as a small `.idx` file when a pack is sealed, and rebuilt at
// open by scanning the one pack that was still being written.
//
// Invariants, the same promises the file store makes:
// - only bytes that hash to their cid become visible: a blob is checked before it is appended, and
//   a torn append (crash, full disk) is cut off — by ftruncate at once, or by the scan at open, which
//   re-hashes every entry of an unsealed pack and keeps the verified prefix;
// - what was verified and appended before a kill -9 is found again at open (nothing fetched twice);
// - deletions are appended to a pack's `.dead` list; a sealed pack more than half dead is
//   compacted (its live entries copied to the active pack, synced, then the pack removed).
//
// The publisher's repository and origins keep the file-per-blob layout (blob-store.ts): a static
// HTTP server must find a blob by its name.
import { createHash } from 'node:crypto'
import { mkdir, open, readdir, readFile, rename, rmdir, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { CID_BYTES, cidToHex } from '../core/seal.js'
import { BlobStore, getEach, requireCid, sha256Hex, sharedRead, writeOnce, type BlobStorage, type BlobWant, type GetOptions, type PutOptions } from './blob-store.js'
import { CidIndex, type Loc } from './cid-index.js'
import { isNotFound, mapDiskFull, unlinkQuiet } from './fs-util.js'
import { ENTRY_HEAD, IDX_MAGIC, IDX_RECORD, PACK_MAGIC, PackIo } from './pack-io.js'
import { MAX_BLOB_BYTES } from '../net/constants.js'

/** A pack is sealed once it holds this many bytes (entries of larger blobs may go beyond, alone). */
export const PACK_MAX_BYTES = 64 * 1024 * 1024
/** A sealed pack whose dead bytes pass this share of its entries is compacted. */
const COMPACT_DEAD_SHARE = 0.5
/**
 * getMany reads neighbouring entries of a pack as one span when the bytes between them are at
 * most SPAN_GAP (read and dropped: cheaper from the page cache than another read call), and a
 * span up to SPAN_MAX bytes. A per-blob read cost ~50 µs of CPU (a thread-pool hop, a buffer, a
 * promise): as much as decrypting the 16 KiB blob itself (docs/install.md, "Cost").
 */
const SPAN_GAP = 64 * 1024
const SPAN_MAX = 4 * 1024 * 1024
const PACK_NAME = /^(\d{8})\.pack$/
const TEMP_NAME = /\.tmp-\d+$/

/** `pending`: appends assigned to the pack whose index update has not run yet (compaction waits for 0). */
interface Pack { id: number, entryBytes: number, deadBytes: number, sealed: boolean, pending: number }
/** `cid` may be a view into a buffer read at open (it is copied into the index). */
type Entry = [cid: Buffer, off: number, len: number]

/** Whether the index still holds `loc` itself: an entry's place (pack, offset) is never reused. */
function sameLoc (a: Loc | undefined, b: Loc): boolean {
  return a !== undefined && a.pack === b.pack && a.off === b.off && a.len === b.len
}

/** The entries of a `.idx` file, or null when it is damaged or not one (then the pack is scanned). */
function decodeIdx (buf: Buffer, packSize: number): Entry[] | null {
  const magic = IDX_MAGIC.length
  if (buf.byteLength < magic + 32 || (buf.byteLength - magic - 32) % IDX_RECORD !== 0) return null
  if (buf.subarray(0, magic).toString('latin1') !== IDX_MAGIC) return null
  const body = buf.subarray(0, buf.byteLength - 32)
  if (!createHash('sha256').update(body).digest().equals(buf.subarray(body.byteLength))) return null
  const out: Entry[] = []
  for (let at = magic; at < body.byteLength; at += IDX_RECORD) {
    const off = body.readUInt32BE(at + 32)
    const len = body.readUInt32BE(at + 36)
    if (off < PACK_MAGIC.length || off + ENTRY_HEAD + len > packSize) return null
    out.push([body.subarray(at, at + 32), off, len])
  }
  return out
}

/**
 * Reads a pack entry by entry, re-hashing each blob, up to the first entry that is torn or does
 * not match its cid. Returns the verified entries and where they end.
 */
async function scanPack (path: string): Promise<{ entries: Entry[], end: number, valid: boolean }> {
  const fh = await open(path, 'r')
  try {
    const size = (await fh.stat()).size
    const magic = Buffer.alloc(PACK_MAGIC.length)
    if (size < magic.byteLength) return { entries: [], end: 0, valid: true }
    await fh.read(magic, 0, magic.byteLength, 0)
    if (magic.toString('latin1') !== PACK_MAGIC) return { entries: [], end: 0, valid: false }
    const entries: Entry[] = []
    const head = Buffer.alloc(ENTRY_HEAD)
    let at = magic.byteLength
    while (at + ENTRY_HEAD <= size) {
      await fh.read(head, 0, ENTRY_HEAD, at)
      const len = head.readUInt32BE(0)
      if (len > MAX_BLOB_BYTES || at + ENTRY_HEAD + len > size) break
      const data = Buffer.allocUnsafe(len)
      const { bytesRead } = await fh.read(data, 0, len, at + ENTRY_HEAD)
      if (bytesRead !== len) break
      const digest = createHash('sha256').update(data).digest()
      if (!digest.equals(head.subarray(4, ENTRY_HEAD))) break
      entries.push([digest, at, len])
      at += ENTRY_HEAD + len
    }
    return { entries, end: at, valid: true }
  } finally {
    await fh.close()
  }
}

async function readDead (path: string): Promise<Set<number>> {
  let buf: Buffer
  try {
    buf = await readFile(path)
  } catch (err) {
    if (isNotFound(err)) return new Set()
    throw err
  }
  const out = new Set<number>()
  // A record torn by a crash (fewer than 4 bytes) is ignored: that blob is still there.
  for (let at = 0; at + 4 <= buf.byteLength; at += 4) out.add(buf.readUInt32BE(at))
  return out
}

export interface PackStoreOpenReport {
  /** Packs whose unsealed tail was scanned at open (a crash or kill left them unsealed). */
  scanned: number
  /** Bytes cut off the end of scanned packs (torn or unverifiable entries). */
  truncatedBytes: number
  /** Packs set aside as `.damaged` (not a pack file at all). */
  damaged: string[]
  /** Blobs moved in from the file-per-blob layout of an older shoal. */
  migrated: number
}

export interface PackStoreOptions {
  /** Seal a pack at this size (default PACK_MAX_BYTES; small values for tests). */
  packMaxBytes?: number
}

export class PackStore implements BlobStorage {
  readonly packsDir: string
  private readonly index = new CidIndex()
  private readonly packs = new Map<number, Pack>()
  private readonly io = new PackIo()
  private active: { id: number, assigned: number } | undefined
  private nextPack = 1
  private liveBytes = 0
  private readonly inflight = new Map<string, Promise<boolean>>()
  private readonly reading = new Map<string, Promise<Uint8Array | null>>()
  private readonly compacting = new Set<number>()
  private background: Promise<unknown> = Promise.resolve()
  private closed = false
  report: PackStoreOpenReport = { scanned: 0, truncatedBytes: 0, damaged: [], migrated: 0 }

  private readonly packMax: number

  private constructor (readonly dir: string, opts: PackStoreOptions) {
    this.packsDir = join(dir, 'packs')
    this.packMax = opts.packMaxBytes ?? PACK_MAX_BYTES
  }

  /** Opens (creating if needed) `<dir>/packs`, recovering what a crash left unsealed. */
  static async open (dir: string, opts: PackStoreOptions = {}): Promise<PackStore> {
    const store = new PackStore(dir, opts)
    try {
      await mkdir(store.packsDir, { recursive: true })
      await store.load()
      await store.migrate()
    } catch (err) {
      await store.io.close()
      mapDiskFull(err, dir, 'the blob packs')
    }
    return store
  }

  // asked once per append and per read: the active pack's path is kept rather than joined each time
  private packPath (id: number): string {
    if (this.lastPack?.id !== id) this.lastPack = { id, path: join(this.packsDir, `${String(id).padStart(8, '0')}.pack`) }
    return this.lastPack.path
  }

  private lastPack: { id: number, path: string } | undefined

  private idxPath (id: number): string {
    return join(this.packsDir, `${String(id).padStart(8, '0')}.idx`)
  }

  private deadPath (id: number): string {
    return join(this.packsDir, `${String(id).padStart(8, '0')}.dead`)
  }

  private async load (): Promise<void> {
    const names = await readdir(this.packsDir)
    for (const n of names) if (TEMP_NAME.test(n)) await unlinkQuiet(join(this.packsDir, n))
    const ids = names.map(n => PACK_NAME.exec(n)?.[1]).filter((m): m is string => m !== undefined).map(Number).sort((a, b) => a - b)
    let last: { id: number, end: number, entries: Entry[] } | undefined
    for (const id of ids) {
      const path = this.packPath(id)
      const size = (await stat(path)).size
      let entries: Entry[] | null = null
      try {
        entries = decodeIdx(await readFile(this.idxPath(id)), size)
      } catch (err) {
        if (!isNotFound(err)) throw err
      }
      let end = size
      if (entries === null) {
        const scan = await scanPack(path)
        if (!scan.valid) {
          await rename(path, `${path}.damaged`)
          this.report.damaged.push(`${path}.damaged`)
          continue
        }
        this.report.scanned++
        this.report.truncatedBytes += size - scan.end
        entries = scan.entries
        end = scan.end
      }
      const dead = await readDead(this.deadPath(id))
      const pack: Pack = { id, entryBytes: 0, deadBytes: 0, sealed: true, pending: 0 }
      for (const [cid, off, len] of entries) {
        pack.entryBytes += ENTRY_HEAD + len
        if (dead.has(off) || this.index.has(cid)) { pack.deadBytes += ENTRY_HEAD + len; continue }
        this.index.set(cid, { pack: id, off, len })
        this.liveBytes += len
      }
      this.packs.set(id, pack)
      this.nextPack = id + 1
      last = { id, end, entries }
    }
    // The last pack takes further appends while it has room; its index file would go stale, so it
    // goes (a crash from here on is recovered by scanning that pack).
    if (last !== undefined && last.end >= PACK_MAGIC.length && last.end < this.packMax) {
      const path = this.packPath(last.id)
      const entries = last.entries.map(([cid, off, len]): [string, number, number] => [cid.toString('hex'), off, len])
      await this.io.run({ op: 'adopt', pack: last.id, path, end: last.end, entries })
      await unlinkQuiet(this.idxPath(last.id))
      ;(this.packs.get(last.id) as Pack).sealed = false
      this.active = { id: last.id, assigned: last.end }
    }
  }

  /** Blob files of the layout before packs (shoal ≤ 0.1 state directories) move into packs. */
  private async migrate (): Promise<void> {
    try {
      if ((await readdir(join(this.dir, 'blobs'))).length === 0) return
    } catch (err) {
      if (isNotFound(err)) return
      throw err
    }
    const files = await BlobStore.open(this.dir)
    try {
      for await (const cid of files.list()) {
        const blob = await files.get(cid)
        if (blob !== null && sha256Hex(blob) === cidToHex(cid)) {
          await this.put(cid, blob, { durable: false, verified: true })
          this.report.migrated++
        }
      }
      await this.sync()
      for await (const cid of files.list()) await files.delete(cid)
    } finally {
      await files.close()
    }
    for (const sub of await readdir(files.blobsDir)) await rmdir(join(files.blobsDir, sub)).catch(() => {})
    await rmdir(files.blobsDir).catch(() => {})
  }

  async has (cid: Uint8Array): Promise<boolean> {
    return this.index.has(cid)
  }

  async size (cid: Uint8Array): Promise<number | null> {
    return this.index.get(cid)?.len ?? null
  }

  async get (cid: Uint8Array, opts: GetOptions = {}): Promise<Uint8Array | null> {
    const hex = cidToHex(cid)
    const key = new Uint8Array(cid) // read() uses it after an await: the caller's bytes may change
    const blob = await sharedRead(this.reading, hex, async () => await this.read(key))
    if (blob === null) return null
    // An entry longer than the caller's signed length is damage (or not the blob it expects).
    if ((opts.maxSize !== undefined && blob.byteLength > opts.maxSize) || (opts.verify === true && sha256Hex(blob) !== hex)) {
      await this.delete(cid)
      return null
    }
    return blob
  }

  async getMany (wants: readonly BlobWant[]): Promise<Array<Uint8Array | null>> {
    const out = new Array<Uint8Array | null>(wants.length).fill(null)
    const found: Array<{ i: number, loc: Loc }> = []
    for (let i = 0; i < wants.length; i++) {
      const loc = this.index.get((wants[i] as BlobWant).cid)
      if (loc !== undefined) found.push({ i, loc })
    }
    found.sort((a, b) => a.loc.pack - b.loc.pack || a.loc.off - b.loc.off)
    const spans: Array<typeof found> = []
    for (const f of found) {
      const span = spans[spans.length - 1]
      const first = span?.[0]
      const last = span?.[span.length - 1]
      if (span !== undefined && first !== undefined && last !== undefined && last.loc.pack === f.loc.pack &&
        f.loc.off - (last.loc.off + ENTRY_HEAD + last.loc.len) <= SPAN_GAP &&
        f.loc.off + ENTRY_HEAD + f.loc.len - first.loc.off <= SPAN_MAX) span.push(f)
      else spans.push([f])
    }
    const retry: number[] = []
    await Promise.all(spans.map(async span => {
      const first = span[0] as (typeof found)[number]
      const last = span[span.length - 1] as (typeof found)[number]
      const start = first.loc.off + ENTRY_HEAD
      let data: Uint8Array
      try {
        data = (await this.io.run({ op: 'read', path: this.packPath(first.loc.pack), off: start, len: last.loc.off + ENTRY_HEAD + last.loc.len - start })).data as Uint8Array
      } catch (err) {
        // a pack cut short or removed: `get` tells which of these blobs are gone
        const code = (err as { code?: string }).code
        if (code !== 'ERR_PACK_SHORT' && code !== 'ENOENT') throw err
        for (const f of span) retry.push(f.i)
        return
      }
      for (const f of span) {
        const at = f.loc.off + ENTRY_HEAD - start
        out[f.i] = data.subarray(at, at + f.loc.len)
      }
    }))
    for (const [k, blob] of (await getEach(this, retry.map(i => wants[i] as BlobWant))).entries()) out[retry[k] as number] = blob
    // An entry longer than the caller's signed length is damage, as in `get`.
    for (let i = 0; i < wants.length; i++) {
      const max = (wants[i] as BlobWant).maxSize
      const blob = out[i]
      if (blob !== null && blob !== undefined && max !== undefined && blob.byteLength > max) {
        await this.delete((wants[i] as BlobWant).cid)
        out[i] = null
      }
    }
    return out
  }

  /** `cid` is left unchanged by the caller until this returns. */
  private async read (cid: Uint8Array): Promise<Uint8Array | null> {
    const loc = this.index.get(cid)
    if (loc === undefined) return null
    try {
      const r = await this.io.run({ op: 'read', path: this.packPath(loc.pack), off: loc.off + ENTRY_HEAD, len: loc.len })
      return r.data as Uint8Array
    } catch (err) {
      // A pack cut short or removed behind our back: the blob is gone, say so rather than fail.
      const code = (err as { code?: string }).code
      if (code === 'ERR_PACK_SHORT' || code === 'ENOENT') {
        if (sameLoc(this.index.get(cid), loc)) this.forget(cid, loc)
        return null
      }
      throw err
    }
  }

  /**
   * Appends `blob` under `cid` after checking SHA-256(blob) = cid. Returns false if it was already
   * present. Throws BlobCidMismatchError (nothing written) or StorageFullError (nothing partial kept).
   */
  async put (cid: Uint8Array, blob: Uint8Array, opts: PutOptions = {}): Promise<boolean> {
    const hex = cidToHex(cid)
    requireCid(hex, blob, opts.verified)
    if (this.index.has(cid)) return false
    const key = new Uint8Array(cid) // used after the append: the caller's bytes may change by then
    return await writeOnce(this.inflight, hex, async () => {
      const loc = await this.append(hex, blob, opts.durable ?? true)
      // a compaction may have placed the same blob meanwhile: then this copy is dead weight
      const fresh = !this.index.has(key)
      if (fresh) {
        this.index.set(key, loc)
        this.liveBytes += loc.len
      } else this.markDead(loc)
      this.settle(loc.pack)
      return fresh
    })
  }

  /**
   * Appends an entry to the active pack; the caller puts it in the index, then calls settle():
   * until then the pack counts the append as pending and is not compacted (its index entries
   * would be missed, and the pack removed under them).
   */
  private async append (hex: string, blob: Uint8Array, durable: boolean): Promise<Loc> {
    const id = this.packFor(blob.byteLength)
    let off: number
    try {
      off = (await this.io.run({ op: 'append', pack: id, path: this.packPath(id), cid: hex, data: blob, durable })).off as number
    } catch (err) {
      this.settle(id)
      mapDiskFull(err, this.dir, `blob ${hex}`)
    }
    const pack = this.packs.get(id)
    if (pack !== undefined) pack.entryBytes += ENTRY_HEAD + blob.byteLength
    return { pack: id, off, len: blob.byteLength }
  }

  private settle (id: number): void {
    const pack = this.packs.get(id)
    if (pack === undefined) return
    pack.pending--
    if (pack.pending === 0) this.maybeCompact(id)
  }

  private markDead (loc: Loc): void {
    const pack = this.packs.get(loc.pack)
    if (pack !== undefined) pack.deadBytes += ENTRY_HEAD + loc.len
    void this.io.run({ op: 'dead', path: this.deadPath(loc.pack), off: loc.off }).catch(() => {})
  }

  /** The pack the next append goes to; seals the active one when it is full. */
  private packFor (len: number): number {
    const a = this.active
    if (a !== undefined && (a.assigned + ENTRY_HEAD + len <= this.packMax || a.assigned <= PACK_MAGIC.length)) {
      a.assigned += ENTRY_HEAD + len
      ;(this.packs.get(a.id) as Pack).pending++
      return a.id
    }
    if (a !== undefined) this.seal(a.id)
    const id = this.nextPack++
    this.packs.set(id, { id, entryBytes: 0, deadBytes: 0, sealed: false, pending: 1 })
    this.active = { id, assigned: PACK_MAGIC.length + ENTRY_HEAD + len }
    return id
  }

  private seal (id: number): void {
    this.active = undefined
    const pack = this.packs.get(id)
    const done = this.io.run({ op: 'seal', pack: id, idxPath: this.idxPath(id) })
      .then(() => { if (pack !== undefined) pack.sealed = true; this.maybeCompact(id) })
    // A failed seal leaves the pack without an index: the next open scans it, nothing is lost.
    this.background = Promise.all([this.background, done.catch(() => {})])
  }

  async delete (cid: Uint8Array): Promise<void> {
    const loc = this.index.get(cid)
    if (loc === undefined) return
    this.forget(cid, loc)
    await this.io.run({ op: 'dead', path: this.deadPath(loc.pack), off: loc.off })
    this.maybeCompact(loc.pack)
  }

  private forget (cid: Uint8Array, loc: Loc): void {
    this.index.delete(cid)
    this.liveBytes -= loc.len
    const pack = this.packs.get(loc.pack)
    if (pack !== undefined) pack.deadBytes += ENTRY_HEAD + loc.len
  }

  private maybeCompact (id: number): void {
    const pack = this.packs.get(id)
    if (this.closed || pack === undefined || !pack.sealed || pack.pending > 0 || this.compacting.has(id)) return
    if (pack.deadBytes < pack.entryBytes * COMPACT_DEAD_SHARE) return
    this.compacting.add(id)
    const done = this.compact(pack).finally(() => this.compacting.delete(id))
    this.background = Promise.all([this.background, done.catch(() => {})])
  }

  /** Copies a pack's live entries to the active pack, makes them durable, then removes the pack. */
  private async compact (pack: Pack): Promise<void> {
    // in pack order: the old pack is read front to back
    for (const [cid, loc] of this.index.entriesOf(pack.id).sort((a, b) => a[1].off - b[1].off)) {
      const blob = await this.read(cid)
      if (blob === null || !sameLoc(this.index.get(cid), loc)) continue
      const moved = await this.append(cidToHex(cid), blob, false)
      // Readers keep the old place until the copy is written; a delete meanwhile kills the copy.
      if (sameLoc(this.index.get(cid), loc)) this.index.set(cid, moved)
      else this.markDead(moved)
      this.settle(moved.pack)
    }
    if (this.index.hasPack(pack.id)) return
    await this.io.run({ op: 'sync' })
    const path = this.packPath(pack.id)
    await this.io.run({ op: 'unlink', path, paths: [path, this.idxPath(pack.id), this.deadPath(pack.id)] })
    this.packs.delete(pack.id)
  }

  /** Makes every append so far durable (one fdatasync of the active pack). */
  async sync (): Promise<void> {
    await this.io.run({ op: 'sync' })
  }

  /** Every cid present, in no particular order. */
  async * list (): AsyncGenerator<Uint8Array> {
    const keys = this.index.keyBytes() // a snapshot, as the index may change between yields
    for (let at = 0; at < keys.byteLength; at += CID_BYTES) yield keys.slice(at, at + CID_BYTES)
  }

  async stats (): Promise<{ blobs: number, bytes: number }> {
    return { blobs: this.index.size, bytes: this.liveBytes }
  }

  /** Bytes of pack files on disk, dead entries included: what compaction would give back. */
  diskBytes (): { entries: number, dead: number } {
    let entries = 0
    let dead = 0
    for (const p of this.packs.values()) { entries += p.entryBytes; dead += p.deadBytes }
    return { entries, dead }
  }

  /** Re-reads and re-hashes every blob; those that no longer match their cid are deleted. */
  async verifyAll (): Promise<{ ok: number, removed: number }> {
    let ok = 0
    let removed = 0
    for await (const cid of this.list()) {
      const blob = await this.read(cid)
      if (blob !== null && sha256Hex(blob) === cidToHex(cid)) ok++
      else { await this.delete(cid); removed++ }
    }
    return { ok, removed }
  }

  /** Seals the active pack (the next open needs no scan) and closes its descriptors. */
  async close (): Promise<void> {
    if (this.closed) return
    this.closed = true
    await this.background
    if (this.active !== undefined) this.seal(this.active.id)
    await this.background
    await this.io.close()
  }
}

