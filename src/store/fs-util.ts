// File-system helpers the store shares: durable atomic writes, directory fsync, and turning a
// full disk into an error a person can act on.
import { randomBytes } from 'node:crypto'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { open, rename, unlink } from 'node:fs/promises'
import { basename, dirname } from 'node:path'
import { OversizeError, ShoalError } from '../core/errors.js'

/** The disk (or the user's quota) holding a shoal directory is full. Nothing partial was left behind. */
export class StorageFullError extends ShoalError {
  readonly path: string
  constructor (path: string, what: string, options?: { cause?: unknown }) {
    super('ERR_DISK_FULL', `no space left on the disk holding ${path} while writing ${what}; free space on that disk (or raise the quota) and retry — nothing partial was kept`, options)
    this.path = path
  }
}

export function isDiskFull (err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | null)?.code
  return code === 'ENOSPC' || code === 'EDQUOT'
}

export function isNotFound (err: unknown): boolean {
  return (err as NodeJS.ErrnoException | null)?.code === 'ENOENT'
}

/** Rethrows `err` as StorageFullError when it is ENOSPC/EDQUOT, unchanged otherwise. */
export function mapDiskFull (err: unknown, path: string, what: string): never {
  if (isDiskFull(err)) throw new StorageFullError(path, what, { cause: err })
  throw err
}

/**
 * Makes a rename or a new entry in `dir` survive a power cut. Some platforms (Windows) and file
 * systems cannot open or sync a directory; there the rename is as durable as it gets.
 */
export async function fsyncDir (dir: string): Promise<void> {
  let fh
  try {
    fh = await open(dir, 'r')
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'EISDIR' || code === 'EPERM' || code === 'EACCES') return
    throw err
  }
  try {
    await fh.sync()
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code !== 'EINVAL' && code !== 'ENOTSUP' && code !== 'EBADF') throw err
  } finally {
    await fh.close()
  }
}

/**
 * A temp name next to `path`: same folder, so the final rename never crosses a file system.
 * It carries the writer's pid so a later open can tell a crashed writer's leftover from a live one's.
 */
export function tempPathFor (path: string): string {
  return `${path}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`
}

const TEMP_SUFFIX = /\.tmp-(\d+)-[0-9a-f]+$/

/** The pid embedded in a temp file name by tempPathFor, or null if `name` is not one. */
export function tempWriterPid (name: string): number | null {
  const m = TEMP_SUFFIX.exec(name)
  return m === null ? null : Number(m[1])
}

export function processAlive (pid: number): boolean {
  if (pid === process.pid) return true
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    // EPERM: the pid exists but belongs to another user.
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

export async function unlinkQuiet (path: string): Promise<void> {
  try {
    await unlink(path)
  } catch {
    // Best effort: the caller is already reporting the error that matters.
  }
}

export interface AtomicWriteOptions {
  mode?: number
  /** fsync the file and its folder (default true). False leaves durability to a later `sync`. */
  durable?: boolean
}

/**
 * Writes `data` to `path` so that readers see the old file or the new one, never a mix, and a
 * crash leaves at most a temp file behind. ENOSPC/EDQUOT become StorageFullError.
 */
export async function writeFileAtomic (path: string, data: Uint8Array | string, opts: AtomicWriteOptions = {}): Promise<void> {
  const durable = opts.durable ?? true
  const tmp = tempPathFor(path)
  try {
    const fh = await open(tmp, 'wx', opts.mode ?? 0o644)
    try {
      await fh.writeFile(data)
      if (durable) await fh.sync()
    } finally {
      await fh.close()
    }
    await rename(tmp, path)
  } catch (err) {
    await unlinkQuiet(tmp)
    mapDiskFull(err, dirname(path), basename(path))
  }
  if (durable) await fsyncDir(dirname(path))
}

const execFileP = promisify(execFile)

/**
 * Makes many files written without fsync durable at once: syncfs(2) of the file system holding
 * `dir` (`sync -f`), or a global sync where `-f` is missing. One call instead of an fsync per blob.
 */
export async function syncFilesystem (dir: string): Promise<void> {
  try {
    await execFileP('sync', ['-f', dir])
  } catch {
    await execFileP('sync', [])
  }
}

/**
 * Reads a whole file of at most `max` bytes. The cap holds while reading: a file that is larger,
 * grows while it is read, or has no size (a FIFO, /dev/zero) is refused with OversizeError once
 * `max` + 1 bytes are in, never read whole first. Errors from open (ENOENT…) pass through.
 */
export async function readFileCapped (path: string, max: number, what: string): Promise<Buffer> {
  const fh = await open(path, 'r')
  try {
    const st = await fh.stat()
    if (st.isFile() && st.size > max) throw new OversizeError(`${what} ${path}`, max)
    // one byte more than allowed tells "exactly max" from "too large"
    let buf = Buffer.allocUnsafe(Math.min(max, st.isFile() ? st.size : 64 * 1024) + 1)
    let n = 0
    for (;;) {
      if (n === buf.length) {
        if (n > max) throw new OversizeError(`${what} ${path}`, max)
        const next = Buffer.allocUnsafe(Math.min(max + 1, buf.length * 2))
        buf.copy(next, 0, 0, n)
        buf = next
      }
      const { bytesRead } = await fh.read(buf, n, buf.length - n, null)
      if (bytesRead === 0) break
      n += bytesRead
    }
    if (n > max) throw new OversizeError(`${what} ${path}`, max)
    return buf.subarray(0, n)
  } finally {
    await fh.close()
  }
}
