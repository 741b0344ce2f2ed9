// The release directory a publisher writes with `--repo`, which is also the origin layout a static
// HTTP server can serve as is (docs/protocol.md, "Repository layout"):
//
//   shoal-repo.json                       {"format":"shoal-repo","version":1}
//   blobs/ab/cdef…                        sealed blobs by cid (BlobStore)
//   manifests/<package>/<version>.json    signed manifests, canonical bytes
//   heads/<channel>.json                  signed channel heads (written when an online key is at hand)
//   publisher/reuse.idx                   the publisher's reuse index (see ReuseIndex)
//
// Nothing in it is secret: blobs are ciphertext, manifests carry their file tree sealed, and the
// reuse index holds hashes of chunk keys, never the keys.
import { createHash } from 'node:crypto'
import { mkdir, open, readFile, readdir, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { ShoalError } from '../core/errors.js'
import { readFileCapped, writeFileAtomic } from './fs-util.js'
import { MAX_MANIFEST_BYTES } from '../core/manifest.js'

export const REPO_FORMAT = { format: 'shoal-repo', version: 1 } as const

export class RepoError extends ShoalError {
  constructor (message: string, options?: { cause?: unknown }) {
    super('ERR_REPO', message, options)
  }
}

export class RepoLayout {
  constructor (readonly dir: string) {}

  static async create (dir: string): Promise<RepoLayout> {
    await mkdir(join(dir, 'blobs'), { recursive: true })
    await mkdir(join(dir, 'manifests'), { recursive: true })
    await mkdir(join(dir, 'heads'), { recursive: true })
    await mkdir(join(dir, 'publisher'), { recursive: true })
    const marker = join(dir, 'shoal-repo.json')
    try {
      const existing = JSON.parse(await readFile(marker, 'utf8')) as { format?: unknown, version?: unknown }
      if (existing.format !== REPO_FORMAT.format || existing.version !== REPO_FORMAT.version) {
        throw new RepoError(`${dir} holds a repository of another format (${JSON.stringify(existing)}); this shoal writes version ${REPO_FORMAT.version}`)
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
        if (err instanceof ShoalError) throw err
        throw new RepoError(`${marker} is unreadable: ${(err as Error).message}`, { cause: err })
      }
      await writeFileAtomic(marker, JSON.stringify(REPO_FORMAT) + '\n')
    }
    return new RepoLayout(dir)
  }

  static async open (dir: string): Promise<RepoLayout> {
    try {
      await stat(join(dir, 'shoal-repo.json'))
    } catch (err) {
      throw new RepoError(`${dir} is not a shoal repository (no shoal-repo.json); publish into it first`, { cause: err })
    }
    return new RepoLayout(dir)
  }

  manifestPath (pkg: string, version: string): string {
    return join(this.dir, 'manifests', pkg, `${version}.json`)
  }

  headPath (channel: string): string {
    return join(this.dir, 'heads', `${channel}.json`)
  }

  get reuseIndexPath (): string {
    return join(this.dir, 'publisher', 'reuse.idx')
  }

  async writeManifest (pkg: string, version: string, bytes: Uint8Array): Promise<string> {
    await mkdir(join(this.dir, 'manifests', pkg), { recursive: true })
    const path = this.manifestPath(pkg, version)
    await writeFileAtomic(path, bytes)
    return path
  }

  async writeHead (channel: string, bytes: Uint8Array): Promise<string> {
    const path = this.headPath(channel)
    await writeFileAtomic(path, bytes)
    return path
  }

  /** Versions of a package present in the repo (file names, unsorted). */
  async versions (pkg: string): Promise<string[]> {
    try {
      const names = await readdir(join(this.dir, 'manifests', pkg))
      return names.filter(n => n.endsWith('.json')).map(n => n.slice(0, -'.json'.length))
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return []
      throw err
    }
  }

  async readManifestBytes (pkg: string, version: string): Promise<Uint8Array | null> {
    try {
      return await readFileCapped(this.manifestPath(pkg, version), MAX_MANIFEST_BYTES, 'manifest')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null
      throw err
    }
  }
}

const RECORD_BYTES = 32 + 32 + 4
const REUSE_DOMAIN = Buffer.from('shoal/v1/reuse\n')

/**
 * key → cid, so a chunk seen in an earlier release maps to the blob already published even if
 * the compressor's output changed since. Stored as fixed 68-byte records appended to one file:
 * SHA-256(domain ‖ chunk key) (32) ‖ cid (32) ‖ blob size (u32 BE). Hashing the key keeps the index
 * harmless to publish; a torn last record after a crash is ignored.
 */
export class ReuseIndex {
  private readonly map = new Map<string, { cid: Uint8Array, size: number }>()
  private pending: Buffer[] = []

  private constructor (private readonly path: string) {}

  static async load (path: string): Promise<ReuseIndex> {
    const idx = new ReuseIndex(path)
    let buf: Buffer
    try {
      buf = await readFile(path)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return idx
      throw err
    }
    const whole = buf.length - (buf.length % RECORD_BYTES)
    for (let off = 0; off < whole; off += RECORD_BYTES) {
      const h = buf.subarray(off, off + 32).toString('hex')
      idx.map.set(h, { cid: new Uint8Array(buf.subarray(off + 32, off + 64)), size: buf.readUInt32BE(off + 64) })
    }
    if (whole !== buf.length) {
      // Drop the torn tail so later appends stay aligned.
      await writeFileAtomic(path, buf.subarray(0, whole))
    }
    return idx
  }

  get size (): number {
    return this.map.size
  }

  private static hashKey (key: Uint8Array): Buffer {
    return createHash('sha256').update(REUSE_DOMAIN).update(key).digest()
  }

  lookup (key: Uint8Array): { cid: Uint8Array, size: number } | undefined {
    return this.map.get(ReuseIndex.hashKey(key).toString('hex'))
  }

  add (key: Uint8Array, cid: Uint8Array, size: number): void {
    const h = ReuseIndex.hashKey(key)
    const hex = h.toString('hex')
    if (this.map.has(hex)) return
    this.map.set(hex, { cid, size })
    const rec = Buffer.alloc(RECORD_BYTES)
    h.copy(rec, 0)
    rec.set(cid, 32)
    rec.writeUInt32BE(size, 64)
    this.pending.push(rec)
  }

  /** Appends what was added since the last flush. */
  async flush (): Promise<void> {
    if (this.pending.length === 0) return
    const data = Buffer.concat(this.pending)
    this.pending = []
    const fh = await open(this.path, 'a', 0o644)
    try {
      await fh.write(data)
      await fh.sync()
    } finally {
      await fh.close()
    }
  }
}
