// Content-addressed blob files: `<dir>/blobs/ab/cdef…` where `abcdef…` is the hex SHA-256 of the
// file's bytes. The same layout is the publisher's repository, a static HTTP origin and the
// daemon's state directory (docs/protocol.md §5).
//
// Invariant: a file under its final name always hashes to its name (short of disk corruption,
// which verifyAll repairs). Bytes are checked before anything becomes visible, written to a temp
// name in the same folder and renamed; readers never see a partial blob, a crash leaves at most a
// temp file that the next open removes.
import { createHash } from 'node:crypto'
import { mkdir, open, readdir, rename, stat, unlink } from 'node:fs/promises'
import type { FileHandle } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { InvalidArgumentError, OversizeError } from '../core/errors.js'
import { BlobCidMismatchError, cidFromHex, cidToHex, MAX_BLOB_BYTES } from '../core/seal.js'
import { fsyncDir, isNotFound, mapDiskFull, processAlive, readFileCapped, tempPathFor, tempWriterPid, unlinkQuiet } from './fs-util.js'
import { BlobIo, BlobIoError } from './blob-io.js'

export { BlobCidMismatchError } from '../core/seal.js'
export { StorageFullError } from './fs-util.js'

export interface PutOptions {
  /**
   * fsync the blob and its folder before returning (default true). A bulk writer (the publisher)
   * passes false and syncs the file system once at the end; until then a crash can leave a
   * damaged blob under its final name, which verifyAll finds and removes.
   */
  durable?: boolean
  /**
   * The caller has just checked SHA-256(blob) = cid itself (BlobClient.fetch does, on every blob
   * it returns): skip hashing it a second time. A wrong claim stores a blob under a wrong name —
   * the same damage as a bad disk, which `get({ verify: true })` and verifyAll catch.
   */
  verified?: boolean
  /**
   * The caller has just seen the blob absent (the endpoint checks before fetching): skip the
   * existence check. Writing a blob that is there after all only replaces it with the same bytes.
   */
  absent?: boolean
}

export interface GetOptions {
  /** Re-hash the bytes read; a blob damaged on disk is deleted and reported absent (null). */
  verify?: boolean
  /**
   * The blob's signed length (the manifest's chunk size): a file holding more is refused with
   * OversizeError after that many bytes + 1, never read whole. Default MAX_BLOB_BYTES, past which
   * a file is dropped as damaged.
   */
  maxSize?: number
}

export interface BlobWant { cid: Uint8Array, maxSize?: number }

/** `getMany` as one `get` per blob, all at once. */
export async function getEach (store: Pick<BlobStorage, 'get'>, wants: readonly BlobWant[]): Promise<Array<Uint8Array | null>> {
  return await Promise.all(wants.map(async w => await store.get(w.cid, w.maxSize !== undefined ? { maxSize: w.maxSize } : {})))
}

/**
 * What the daemon needs of a blob store. Two implementations: `BlobStore` (a file per blob, the
 * repository and origin layout) and `PackStore` (pack files, the daemon's state directory).
 */
export interface BlobStorage {
  /** The directory the store lives in. */
  readonly dir: string
  has: (cid: Uint8Array) => Promise<boolean>
  size: (cid: Uint8Array) => Promise<number | null>
  get: (cid: Uint8Array, opts?: GetOptions) => Promise<Uint8Array | null>
  /**
   * `get` of many blobs at once, for bulk readers (the installer): a store may serve neighbours
   * with one read. Same checks per blob as `get`; null where a blob is absent.
   */
  getMany: (wants: readonly BlobWant[]) => Promise<Array<Uint8Array | null>>
  put: (cid: Uint8Array, blob: Uint8Array, opts?: PutOptions) => Promise<boolean>
  delete: (cid: Uint8Array) => Promise<void>
  list: () => AsyncGenerator<Uint8Array>
  stats: () => Promise<{ blobs: number, bytes: number }>
  verifyAll: () => Promise<{ ok: number, removed: number }>
  close: () => Promise<void>
}

const PREFIX = /^[0-9a-f]{2}$/
const BLOB_NAME = /^[0-9a-f]{62}$/
/** A temp file whose writer still runs is left alone, unless it is this old (pid reused after a reboot). */
const STALE_TEMP_MS = 24 * 60 * 60 * 1000

export function sha256Hex (data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex')
}

/**
 * Runs `write` for `key` once at a time: a concurrent second call waits and reports false (the
 * blob is there); if the first failed (bad bytes, full disk), the second tries itself.
 */
export async function writeOnce (inflight: Map<string, Promise<boolean>>, key: string, write: () => Promise<boolean>): Promise<boolean> {
  const running = inflight.get(key)
  if (running !== undefined) {
    try {
      await running
      return false
    } catch {
      // the other writer failed; ours may still succeed
    }
  }
  const p = write()
  inflight.set(key, p)
  try {
    return await p
  } finally {
    if (inflight.get(key) === p) inflight.delete(key)
  }
}

/** Concurrent reads of one key share a single read (peers asking for a hot blob at once). */
export async function sharedRead<T> (reading: Map<string, Promise<T>>, key: string, read: () => Promise<T>): Promise<T> {
  let p = reading.get(key)
  if (p === undefined) {
    p = read()
    reading.set(key, p)
    void p.finally(() => reading.delete(key)).catch(() => {})
  }
  return await p
}

/** Refuses bytes that do not hash to `hex` (unless the caller just verified them): before any write. */
export function requireCid (hex: string, blob: Uint8Array, verified: boolean | undefined): void {
  if (verified === true) return
  const actual = sha256Hex(blob)
  if (actual !== hex) throw new BlobCidMismatchError(hex, actual)
}

async function writeAll (fh: FileHandle, data: Uint8Array): Promise<void> {
  let off = 0
  while (off < data.length) {
    const { bytesWritten } = await fh.write(data, off, data.length - off)
    off += bytesWritten
  }
}

export class BlobStore implements BlobStorage {
  readonly blobsDir: string
  /** Writes in progress in this instance, by cid: a second put of the same cid waits for the first. */
  private readonly inflight = new Map<string, Promise<boolean>>()
  /** Reads in progress, by cid: peers asking for the same blob at once share one read (a seed's hot release). */
  private readonly reading = new Map<string, Promise<Uint8Array | null>>()
  /** Bulk writes and reads go through one worker thread with synchronous calls (blob-io.ts). */
  private readonly io = new BlobIo()

  private constructor (readonly dir: string) {
    this.blobsDir = join(dir, 'blobs')
  }

  /** Opens (creating if needed) the blob folder of `dir` and removes temp files left by a crash. */
  static async open (dir: string): Promise<BlobStore> {
    const store = new BlobStore(dir)
    try {
      await mkdir(store.blobsDir, { recursive: true })
      await store.sweepTemps()
    } catch (err) {
      mapDiskFull(err, dir, 'the blob folder')
    }
    return store
  }

  /** Stops the I/O worker (it also idles unreferenced, so forgetting this never hangs a process). */
  async close (): Promise<void> {
    await this.io.close()
  }

  path (cid: Uint8Array): string {
    return this.pathHex(cidToHex(cid))
  }

  async has (cid: Uint8Array): Promise<boolean> {
    return (await this.size(cid)) !== null
  }

  async size (cid: Uint8Array): Promise<number | null> {
    try {
      const st = await stat(this.path(cid))
      return st.isFile() ? st.size : null
    } catch (err) {
      if (isNotFound(err)) return null
      throw err
    }
  }

  async get (cid: Uint8Array, opts: GetOptions = {}): Promise<Uint8Array | null> {
    const hex = cidToHex(cid)
    const path = this.pathHex(hex)
    const max = opts.maxSize ?? MAX_BLOB_BYTES
    if (!Number.isSafeInteger(max) || max < 0 || max > MAX_BLOB_BYTES) throw new InvalidArgumentError(`maxSize must be an integer 0…${MAX_BLOB_BYTES}, got ${max}`)
    const readKey = max === MAX_BLOB_BYTES ? hex : `${hex}/${max}`
    const blob = await sharedRead(this.reading, readKey, async () => await this.io.read(path, max).catch(async (err: unknown) => {
      if (!(err instanceof BlobIoError && err.code === 'ERR_OVERSIZE')) throw err
      // Longer than its signed length: the manifest and the file disagree; nothing more is read.
      if (max !== MAX_BLOB_BYTES) throw new OversizeError(`blob ${hex} on disk`, max)
      // No blob is larger than MAX_BLOB_BYTES: a bigger file is damaged (or planted).
      await unlinkQuiet(path)
      return null
    }))
    if (blob === null) return null
    if (opts.verify === true && sha256Hex(blob) !== hex) {
      await unlinkQuiet(path)
      return null
    }
    return blob
  }

  async getMany (wants: readonly BlobWant[]): Promise<Array<Uint8Array | null>> {
    return await getEach(this, wants)
  }

  /**
   * Stores `blob` under `cid` after checking SHA-256(blob) = cid. Returns false if the blob was
   * already present. Throws BlobCidMismatchError (nothing written) or StorageFullError (nothing
   * partial left).
   */
  async put (cid: Uint8Array, blob: Uint8Array, opts: PutOptions = {}): Promise<boolean> {
    const hex = cidToHex(cid)
    requireCid(hex, blob, opts.verified)
    return await this.once(hex, async () => {
      if (opts.absent !== true && await this.hasHex(hex)) return false
      if (opts.durable === false) {
        const final = this.pathHex(hex)
        try {
          await this.io.write(tempPathFor(final), final, blob)
        } catch (err) {
          mapDiskFull(err, this.dir, `blob ${hex}`)
        }
        return true
      }
      await this.commit(hex, async fh => { await writeAll(fh, blob) }, true)
      return true
    })
  }

  /**
   * Streams a blob of at most `maxSize` bytes to disk, hashing as it writes; refuses with
   * OversizeError as soon as more arrives, with BlobCidMismatchError if the hash is wrong. If the
   * blob is already present (or being written by this instance) `source` is not read and the
   * result is false.
   */
  async putStream (cid: Uint8Array, maxSize: number, source: AsyncIterable<Uint8Array>, opts: PutOptions = {}): Promise<boolean> {
    const hex = cidToHex(cid)
    if (!Number.isSafeInteger(maxSize) || maxSize < 0) throw new InvalidArgumentError(`maxSize must be a non-negative integer, got ${maxSize}`)
    return await this.once(hex, async () => {
      if (await this.hasHex(hex)) return false
      await this.commit(hex, async fh => {
        const hash = createHash('sha256')
        let n = 0
        for await (const chunk of source) {
          n += chunk.length
          // Leaving the loop early makes for-await call source.return(): nothing more is read.
          if (n > maxSize) throw new OversizeError(`blob ${hex}`, maxSize)
          hash.update(chunk)
          await writeAll(fh, chunk)
        }
        const actual = hash.digest('hex')
        if (actual !== hex) throw new BlobCidMismatchError(hex, actual)
      }, opts.durable ?? true)
      return true
    })
  }

  async delete (cid: Uint8Array): Promise<void> {
    try {
      await unlink(this.path(cid))
    } catch (err) {
      if (!isNotFound(err)) throw err
    }
  }

  /** Every cid present, in no particular order. Blobs added or removed meanwhile may or may not show. */
  async * list (): AsyncGenerator<Uint8Array> {
    for (const prefix of await this.prefixes()) {
      let names: string[]
      try {
        names = await readdir(join(this.blobsDir, prefix))
      } catch (err) {
        if (isNotFound(err)) continue
        throw err
      }
      for (const name of names) {
        if (BLOB_NAME.test(name)) yield cidFromHex(prefix + name)
      }
    }
  }

  /** Re-hashes every blob and deletes those that no longer match their cid; also removes stale temp files. */
  async verifyAll (): Promise<{ ok: number, removed: number }> {
    await this.sweepTemps()
    let ok = 0
    let removed = 0
    for await (const cid of this.list()) {
      const hex = cidToHex(cid)
      let blob: Buffer
      try {
        blob = await readFileCapped(this.pathHex(hex), MAX_BLOB_BYTES, 'blob')
      } catch (err) {
        if (isNotFound(err)) continue
        if (!(err instanceof OversizeError)) throw err
        blob = Buffer.alloc(0) // larger than any blob: cannot match its cid
      }
      if (sha256Hex(blob) === hex) {
        ok++
      } else {
        await unlinkQuiet(this.pathHex(hex))
        removed++
      }
    }
    return { ok, removed }
  }

  async stats (): Promise<{ blobs: number, bytes: number }> {
    let blobs = 0
    let bytes = 0
    for await (const cid of this.list()) {
      const size = await this.size(cid)
      if (size === null) continue
      blobs++
      bytes += size
    }
    return { blobs, bytes }
  }

  private pathHex (hex: string): string {
    return join(this.blobsDir, hex.slice(0, 2), hex.slice(2))
  }

  private async hasHex (hex: string): Promise<boolean> {
    try {
      return (await stat(this.pathHex(hex))).isFile()
    } catch (err) {
      if (isNotFound(err)) return false
      throw err
    }
  }

  private async prefixes (): Promise<string[]> {
    try {
      return (await readdir(this.blobsDir)).filter(n => PREFIX.test(n))
    } catch (err) {
      if (isNotFound(err)) return []
      throw err
    }
  }

  /**
   * Runs `write` once per cid at a time in this instance (writeOnce). Across instances or
   * processes, unique temp names and rename make duplicate writes harmless.
   */
  private async once (hex: string, write: () => Promise<boolean>): Promise<boolean> {
    return await writeOnce(this.inflight, hex, write)
  }

  /** Temp file in the blob's own folder → `fill` → fsync → rename → fsync folder; no trace on failure. */
  private async commit (hex: string, fill: (fh: FileHandle) => Promise<void>, durable: boolean): Promise<void> {
    const final = this.pathHex(hex)
    const folder = dirname(final)
    const tmp = tempPathFor(final)
    try {
      let fh: FileHandle
      try {
        fh = await open(tmp, 'wx', 0o644)
      } catch (err) {
        if (!isNotFound(err)) throw err
        await mkdir(folder, { recursive: true })
        if (durable) await fsyncDir(this.blobsDir)
        fh = await open(tmp, 'wx', 0o644)
      }
      try {
        await fill(fh)
        if (durable) await fh.sync()
      } finally {
        await fh.close()
      }
      await rename(tmp, final)
    } catch (err) {
      await unlinkQuiet(tmp)
      mapDiskFull(err, this.dir, `blob ${hex}`)
    }
    if (durable) await fsyncDir(folder)
  }

  /** Removes temp files whose writer is gone (crashed) or that are older than a day. */
  private async sweepTemps (): Promise<number> {
    let removed = 0
    const now = Date.now()
    for (const prefix of await this.prefixes()) {
      const folder = join(this.blobsDir, prefix)
      let names: string[]
      try {
        names = await readdir(folder)
      } catch (err) {
        if (isNotFound(err)) continue
        throw err
      }
      for (const name of names) {
        const pid = tempWriterPid(name)
        if (pid === null) continue
        const path = join(folder, name)
        let stale = !processAlive(pid)
        if (!stale) {
          try {
            stale = now - (await stat(path)).mtimeMs > STALE_TEMP_MS
          } catch {
            continue
          }
        }
        if (stale) {
          await unlinkQuiet(path)
          removed++
        }
      }
    }
    return removed
  }
}
