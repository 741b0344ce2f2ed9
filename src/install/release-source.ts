// A verified release as an InstallSpec: what the endpoint (and bench/install.ts) hands the
// installer. Each file's plaintext comes from the blob store, every chunk opened against the key
// and size the signed manifest gives it (the GCM tag authenticates every byte); the installer then
// checks every file against its signed SHA-256.
//
// The cid is not hashed again here: the store checked it when the blob came in, and a blob
// altered since fails its tag (and its file's SHA-256), so a third SHA-256 pass over every byte
// bought nothing but ~2 ms of CPU per MiB (docs/install.md, "Cost").
import { constants } from 'node:fs'
import { open, type FileHandle } from 'node:fs/promises'
import { MissingBlobError } from '../core/release.js'
import { openBlob } from '../core/seal.js'
import { ShoalError } from '../core/errors.js'
import { ChunkTable, type Chunks, type CompactFileEntry, type FileChunks, type PayloadLike } from '../core/chunk-table.js'
import type { FileChunk, FileEntry, ManifestPayload, ManifestTable } from '../core/manifest.js'
import type { BlobStorage } from '../store/blob-store.js'
import { InstalledTreeChangedError } from './errors.js'
import { resolveInside } from './paths.js'
import type { InstallFile, InstallSpec } from './stage.js'

/** Plaintext bytes whose blobs are asked for at once (one getMany, then opened one by one). */
const WINDOW_BYTES = 1024 * 1024

export interface ReleaseSpecOptions {
  /** A ManifestTable, or a decoded manifest (its chunk array is made compact here). */
  manifest: { signed: Pick<ManifestTable['signed'], 'package' | 'version'> & { chunks: Chunks } }
  payload: PayloadLike
  blobs: BlobStorage
  /**
   * The installed version (its tree and its payload), for an update: chunks found there at a known
   * offset are read from it instead of opened from blobs (InstallSpec.reuse; the installer checks
   * each file's SHA-256 and falls back to the blobs on any mismatch).
   */
  installed?: { dir: string, payload: ManifestPayload }
}

type Entry = FileEntry | CompactFileEntry

/** Where a chunk's plaintext sits in the installed tree. */
interface OldChunk { path: string, off: number, size: number }

export function releaseSpec (o: ReleaseSpecOptions): InstallSpec {
  const chunks = ChunkTable.from(o.manifest.signed.chunks)
  const byPath = new Map<string, Entry>(o.payload.files.map(f => [f.path, f]))
  return {
    package: o.manifest.signed.package,
    version: o.manifest.signed.version,
    files: o.payload.files as InstallFile[],
    ...(o.payload.hooks !== undefined ? { hooks: o.payload.hooks } : {}),
    open: (file) => blobPlaintext(byPath.get(file.path) as Entry, file.path, chunks, o.blobs),
    ...(o.installed !== undefined ? { reuse: reuseFrom(o.installed, byPath, chunks, o.blobs) } : {})
  }
}

/**
 * InstallSpec.reuse over the installed tree: a chunk key is HMAC(contentKey, plaintext), so a key
 * the installed version's payload lists names the same plaintext at that file's offset, as long as
 * nobody changed the file since (which the installer's SHA-256 check catches).
 */
function reuseFrom (installed: NonNullable<ReleaseSpecOptions['installed']>, byPath: ReadonlyMap<string, Entry>, table: ChunkTable, blobs: BlobStorage): NonNullable<InstallSpec['reuse']> {
  const byKey = new Map<string, OldChunk>()
  for (const f of installed.payload.files) {
    if (f.type !== 'file') continue
    let off = 0
    for (const c of f.chunks ?? []) {
      if (!byKey.has(c.key)) byKey.set(c.key, { path: f.path, off, size: c.size })
      off += c.size
    }
  }
  return (file) => {
    const entry = byPath.get(file.path)
    if (entry?.chunks?.some(c => byKey.has(c.key)) !== true) return undefined
    return oldAndBlobPlaintext(entry, table, blobs, installed.dir, byKey)
  }
}

/** A file's plaintext: runs of chunks contiguous in one installed file read from it, the rest from blobs. */
async function * oldAndBlobPlaintext (entry: Entry, table: ChunkTable, blobs: BlobStorage, dir: string, byKey: ReadonlyMap<string, OldChunk>): AsyncGenerator<Uint8Array> {
  const list = entry.chunks ?? []
  let cur: { path: string, fh: FileHandle } | undefined
  try {
    for (let i = 0; i < list.length;) {
      const first = byKey.get((list.at(i) as FileChunk).key)
      let j = i + 1
      if (first === undefined) {
        while (j < list.length && !byKey.has((list.at(j) as FileChunk).key)) j++
        yield * blobPlaintext(entry, entry.path, table, blobs, list.slice(i, j))
        i = j
        continue
      }
      let end = first.off + first.size
      for (; j < list.length; j++) {
        const next = byKey.get((list.at(j) as FileChunk).key)
        if (next === undefined || next.path !== first.path || next.off !== end || end + next.size - first.off > WINDOW_BYTES) break
        end += next.size
      }
      if (cur?.path !== first.path) {
        await cur?.fh.close()
        cur = undefined
        cur = { path: first.path, fh: await openInstalled(dir, first.path) }
      }
      const buf = Buffer.allocUnsafe(end - first.off)
      for (let got = 0; got < buf.byteLength;) {
        const { bytesRead } = await cur.fh.read(buf, got, buf.byteLength - got, first.off + got)
        if (bytesRead === 0) throw new InstalledTreeChangedError(first.path, dir, 'got shorter')
        got += bytesRead
      }
      yield buf
      i = j
    }
  } finally {
    await cur?.fh.close()
  }
}

// O_NONBLOCK: a FIFO put where an installed file was must not hang the install.
const READ_INSTALLED = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK

async function openInstalled (dir: string, path: string): Promise<FileHandle> {
  const fh = await open(resolveInside(dir, path), READ_INSTALLED)
  try {
    if (!(await fh.stat()).isFile()) throw new InstalledTreeChangedError(path, dir, 'is no longer a regular file')
    return fh
  } catch (err) {
    await fh.close()
    throw err
  }
}

/** The plaintext of chunks `list` of a file, a window of blobs read at a time. */
export async function * blobPlaintext (entry: Pick<Entry, 'chunks'>, path: string, table: ChunkTable, blobs: BlobStorage, list: FileChunks = entry.chunks ?? []): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < list.length;) {
    let j = i
    let bytes = 0
    while (j < list.length && (j === i || bytes + (list.at(j) as FileChunk).size <= WINDOW_BYTES)) bytes += (list.at(j++) as FileChunk).size
    const window = list.slice(i, j)
    for (const c of window) if (!(c.index >= 0 && c.index < table.length)) throw new ShoalError('ERR_DECODE', `${path}: chunk index ${c.index} is outside the chunk table`)
    // reads stop at the signed length
    const got = await blobs.getMany(window.map(c => ({ cid: table.cidBytes(c.index), maxSize: table.size(c.index) })))
    for (let k = 0; k < window.length; k++) {
      const blob = got[k]
      if (blob === null || blob === undefined) throw new MissingBlobError(table.cid((window[k] as FileChunk).index), blobs.dir)
      const c = window[k] as FileChunk
      yield openBlob(blob, Buffer.from(c.key, 'hex'), { plainSize: c.size })
    }
    i = j
  }
}
