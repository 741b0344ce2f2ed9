// Writes a release's file tree into a fresh folder: every path checked before the first byte is
// written, every file streamed and hashed as it is written, then fsynced, then modes applied and
// folders fsynced. Used by the installer (into its staging folder) and by `shoal extract --to`.
import { constants } from 'node:fs'
import { chmod, lstat, mkdir, open, readdir, rm, symlink, type FileHandle } from 'node:fs/promises'
import { createHash } from 'node:crypto'
import { dirname, join } from 'node:path'
import { FileHashMismatchError, InvalidTreeError, TargetNotEmptyError, UnsafeModeError } from './errors.js'
import { checkTreeSymlinks, resolveInside, safeRelativePath } from './paths.js'
import { fsyncDir, fsyncFiles } from './durable.js'

export interface InstallFile {
  /** Relative POSIX path inside the package. */
  path: string
  type: 'file' | 'dir' | 'symlink'
  /** Permission bits; anything above 0o7777 (file-type bits) is ignored. */
  mode: number
  /** Bytes, for files. */
  size: number
  /** Lowercase or uppercase hex SHA-256 of the plaintext; required for files. */
  sha256?: string
  /** Relative target, for symlinks. */
  target?: string
}

export interface InstallSpec {
  package: string
  version: string
  files: InstallFile[]
  /** Script text (signed, from the manifest payload), run with /bin/sh -e. */
  hooks?: { preinstall?: string, postinstall?: string }
  /**
   * Streams one regular file's plaintext bytes (the caller decrypts/verifies chunks). A piece must
   * stay unchanged once yielded: pieces are written in batches, after later ones were read.
   */
  open: (file: InstallFile) => AsyncIterable<Uint8Array>
  /**
   * A cheaper, unverified guess at a file's bytes (an update reads unchanged chunks from the
   * installed version's tree), or undefined. Checked like `open`'s bytes; on a size or SHA-256
   * mismatch, or any error of the guess, the file is emptied and written again from `open`.
   */
  reuse?: (file: InstallFile) => AsyncIterable<Uint8Array> | undefined
}

export interface StageProgress {
  /** The file being written. */
  path: string
  files: number
  totalFiles: number
  bytes: number
  totalBytes: number
}

export interface WriteTreeOptions {
  onProgress?: (p: StageProgress) => void
  /** Keep setuid/setgid bits (0o6000). Off by default: such files are refused, not stripped. */
  allowSetid?: boolean
  /** Files written at once (each streamed from its own `spec.open`). Default 4. */
  concurrency?: number
}

export interface WriteTreeResult {
  files: number
  dirs: number
  symlinks: number
  bytes: number
  /** Files written from `spec.reuse` (verified), and files whose guess failed and came from `open`. */
  reused: number
  reuseFailed: number
}

interface Planned { path: string, mode: number, size: number, sha256: string, target: string, file: InstallFile }

/** The validated tree, in write order: folders parent-first, then files, then symlinks. */
export interface TreePlan {
  dirs: Planned[]
  files: Planned[]
  symlinks: Planned[]
  totalBytes: number
}

const MAX_ENTRIES = 1_000_000
const SHA256_HEX = /^[0-9a-fA-F]{64}$/
/** Folders named only as the parent of an entry get this mode. */
const IMPLICIT_DIR_MODE = 0o755
const PROGRESS_EVERY = 1 << 20

/**
 * Validates a whole file list without touching the disk: safe paths, no duplicates, nothing inside
 * a file or a symlink, symlinks that stay inside the tree however they chain, sizes and hashes
 * present, no setuid/setgid unless allowed. Throws the first problem as a typed error.
 */
export function planTree (files: readonly InstallFile[], opts: { allowSetid?: boolean } = {}): TreePlan {
  if (!Array.isArray(files)) throw new InvalidTreeError('', 'the file list is not an array')
  if (files.length > MAX_ENTRIES) throw new InvalidTreeError('', `more than ${MAX_ENTRIES} entries`)
  const byPath = new Map<string, Planned & { type: InstallFile['type'] }>()
  const plan: TreePlan = { dirs: [], files: [], symlinks: [], totalBytes: 0 }
  for (const f of files) {
    if (f === null || typeof f !== 'object') throw new InvalidTreeError(String(f), 'entry is not an object')
    const path = safeRelativePath(f.path)
    if (byPath.has(path)) throw new InvalidTreeError(path, 'listed twice')
    if (f.type !== 'file' && f.type !== 'dir' && f.type !== 'symlink') throw new InvalidTreeError(path, `unknown type ${JSON.stringify(f.type)}`)
    if (!Number.isSafeInteger(f.mode) || f.mode < 0) throw new InvalidTreeError(path, `mode ${String(f.mode)} is not a non-negative integer`)
    const mode = f.mode & 0o7777
    if (f.type !== 'symlink' && (mode & 0o6000) !== 0 && opts.allowSetid !== true) throw new UnsafeModeError(path, mode)
    const p: Planned & { type: InstallFile['type'] } = { path, type: f.type, mode, size: 0, sha256: '', target: '', file: f }
    if (f.type === 'file') {
      if (!Number.isSafeInteger(f.size) || f.size < 0) throw new InvalidTreeError(path, `size ${String(f.size)} is not a non-negative integer`)
      if (typeof f.sha256 !== 'string' || !SHA256_HEX.test(f.sha256)) throw new InvalidTreeError(path, 'file has no valid sha256 (64 hex digits)')
      p.size = f.size
      p.sha256 = f.sha256.toLowerCase()
      plan.totalBytes += f.size
      plan.files.push(p)
    } else if (f.type === 'dir') {
      plan.dirs.push(p)
    } else {
      p.target = f.target as string
      plan.symlinks.push(p)
    }
    byPath.set(path, p)
  }
  // Every ancestor must be a folder: listed as one, or implied (created with IMPLICIT_DIR_MODE).
  for (const p of [...byPath.values()]) {
    const segs = p.path.split('/')
    for (let i = 1; i < segs.length; i++) {
      const anc = segs.slice(0, i).join('/')
      const a = byPath.get(anc)
      if (a === undefined) {
        const implied = { path: anc, type: 'dir' as const, mode: IMPLICIT_DIR_MODE, size: 0, sha256: '', target: '', file: { path: anc, type: 'dir' as const, mode: IMPLICIT_DIR_MODE, size: 0 } }
        byPath.set(anc, implied)
        plan.dirs.push(implied)
      } else if (a.type !== 'dir') {
        throw new InvalidTreeError(p.path, `its parent ${anc} is a ${a.type}, not a folder (a write through it could leave the tree)`)
      }
    }
  }
  checkTreeSymlinks([...byPath.values()])
  plan.dirs.sort((a, b) => depth(a.path) - depth(b.path))
  return plan
}

function depth (p: string): number {
  let n = 0
  for (let i = 0; i < p.length; i++) if (p.charCodeAt(i) === 0x2f) n++
  return n
}

// O_EXCL makes open fail on any existing name, a dangling symlink included; O_NOFOLLOW says the
// same thing twice. Together: a file write never goes through a symlink.
const CREATE_NEW = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW

/**
 * Writes `spec`'s tree into `dir`, which must be absent (it is created, mode 0o700 while being
 * written, 0o755 at the end) or an empty folder. Every path is validated first (`planTree`), so a
 * bad manifest leaves the disk untouched. Each file is streamed from `spec.open`, hashed while it
 * is written, and refused as soon as it runs past its size; a size or SHA-256 mismatch throws
 * `FileHashMismatchError` naming the path. On any failure what was written is removed again.
 * Symlinks are created last, so none can exist while a file is being written.
 */
export async function writeTree (dir: string, spec: InstallSpec, opts: WriteTreeOptions = {}): Promise<WriteTreeResult> {
  const plan = planTree(spec.files, opts)
  const created = await prepareTarget(dir)
  try {
    for (const d of plan.dirs) await mkdir(resolveInside(dir, d.path), { mode: 0o700 })
    let done = 0
    let bytes = 0
    let reused = 0
    let reuseFailed = 0
    const report = (path: string, files: number): void => {
      opts.onProgress?.({ path, files, totalFiles: plan.files.length, bytes, totalBytes: plan.totalBytes })
    }
    // A few files at a time: small files are bound by per-file syscalls, not bandwidth. The first
    // failure stops new files from starting; the ones in flight finish or fail on their own.
    const paths = plan.files.map(f => resolveInside(dir, f.path))
    let next = 0
    let failed = false
    const worker = async (): Promise<void> => {
      while (!failed && next < plan.files.length) {
        const i = next++
        const f = plan.files[i] as Planned
        let sinceReport = 0
        const onBytes = (n: number): void => {
          bytes += n
          sinceReport += n
          if (sinceReport >= PROGRESS_EVERY) { sinceReport = 0; report(f.path, done) }
        }
        try {
          const outcome = await writeOneFile(paths[i] as string, f, spec, onBytes)
          if (outcome === 'reused') reused++
          else if (outcome === 'reuse-failed') reuseFailed++
        } catch (err) {
          failed = true
          throw err
        }
        report(f.path, ++done)
      }
    }
    const results = await Promise.allSettled(Array.from({ length: Math.min(opts.concurrency ?? 4, plan.files.length) }, worker))
    const firstError = results.find((r): r is PromiseRejectedResult => r.status === 'rejected')
    if (firstError !== undefined) throw firstError.reason
    const written = paths
    await fsyncFiles(written)
    for (const s of plan.symlinks) await symlink(s.target, resolveInside(dir, s.path))
    // Deepest first, so a read-only folder does not stop us setting its children; chmod follows
    // symlinks, but none of these paths is one (planTree refused links as parents).
    const deepestFirst = [...plan.dirs].reverse()
    for (const d of deepestFirst) await chmod(resolveInside(dir, d.path), d.mode)
    if (created) await chmod(dir, 0o755)
    for (const d of deepestFirst) await fsyncDir(resolveInside(dir, d.path))
    await fsyncDir(dir)
    if (created) await fsyncDir(dirname(dir))
    return { files: plan.files.length, dirs: plan.dirs.length, symlinks: plan.symlinks.length, bytes, reused, reuseFailed }
  } catch (err) {
    await undo(dir, created)
    throw err
  }
}

/** Writes one file from `spec.reuse` if it offers a guess that verifies, else from `spec.open`. */
async function writeOneFile (abs: string, f: Planned, spec: InstallSpec, onBytes: (n: number) => void): Promise<'reused' | 'reuse-failed' | 'opened'> {
  const fh = await open(abs, CREATE_NEW, 0o600)
  try {
    const guess = spec.reuse?.(f.file)
    let outcome: 'reused' | 'reuse-failed' | 'opened' = 'opened'
    if (guess !== undefined) {
      let counted = 0
      try {
        await writeStream(fh, f, guess, (n) => { counted += n; onBytes(n) })
        outcome = 'reused'
      } catch {
        // Whatever went wrong (a locally changed or missing file, a short read), the verified
        // source decides: start the file again from empty.
        onBytes(-counted)
        await fh.truncate(0)
        outcome = 'reuse-failed'
      }
    }
    if (outcome !== 'reused') await writeStream(fh, f, spec.open(f.file), onBytes)
    // fchmod on the descriptor: exact bits whatever the umask, and no path lookup to redirect.
    await fh.chmod(f.mode)
    return outcome
  } finally {
    await fh.close()
  }
}

/** Streams `source` into `fh` from offset 0, checking it against `f`'s size and SHA-256. */
async function writeStream (fh: FileHandle, f: Planned, source: AsyncIterable<Uint8Array>, onBytes: (n: number) => void): Promise<void> {
  const hash = createHash('sha256')
  let n = 0
  // Pieces go down in batches (one writev per MiB): a write per 16 KiB chunk cost a thread-pool
  // hop and a promise each, as much CPU as hashing the chunk (docs/install.md, "Cost").
  const batch: Uint8Array[] = []
  let batched = 0
  for await (const piece of source) {
    // Stop an endless or oversized stream at the declared size instead of filling the disk.
    if (n + piece.byteLength > f.size) throw new FileHashMismatchError(f.path, 'size', f.size, `more than ${f.size}`)
    hash.update(piece)
    batch.push(piece)
    batched += piece.byteLength
    if (batched >= WRITE_BATCH_BYTES || batch.length >= WRITE_BATCH_PIECES) {
      await writevAll(fh, batch, batched, n + piece.byteLength - batched)
      batch.length = 0
      batched = 0
    }
    n += piece.byteLength
    onBytes(piece.byteLength)
  }
  await writevAll(fh, batch, batched, n - batched)
  if (n !== f.size) throw new FileHashMismatchError(f.path, 'size', f.size, n)
  const actual = hash.digest('hex')
  if (actual !== f.sha256) throw new FileHashMismatchError(f.path, 'sha256', f.sha256, actual)
}

const WRITE_BATCH_BYTES = 1024 * 1024
/** Below IOV_MAX (1024 on Linux). */
const WRITE_BATCH_PIECES = 512

/** Writes `pieces` (`bytes` in all) at `pos`, whatever short writes the kernel makes. */
async function writevAll (fh: FileHandle, pieces: Uint8Array[], bytes: number, pos: number): Promise<void> {
  if (bytes === 0) return
  let { bytesWritten } = await fh.writev(pieces, pos)
  if (bytesWritten === bytes) return
  // A short write (rare for a regular file): the rest, piece by piece.
  let at = pos
  for (const p of pieces) {
    if (bytesWritten >= p.byteLength) { bytesWritten -= p.byteLength; at += p.byteLength; continue }
    let off = bytesWritten
    bytesWritten = 0
    at += off
    while (off < p.byteLength) {
      const w = (await fh.write(p, off, p.byteLength - off, at)).bytesWritten
      off += w
      at += w
    }
  }
}

/** True when we created `dir`; false when it existed empty. Refuses anything else. */
async function prepareTarget (dir: string): Promise<boolean> {
  let st
  try {
    st = await lstat(dir)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    await mkdir(dirname(dir), { recursive: true })
    try {
      await mkdir(dir, { mode: 0o700 })
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') throw new TargetNotEmptyError(dir, 'it appeared while we were creating it')
      throw e
    }
    return true
  }
  if (st.isSymbolicLink()) throw new TargetNotEmptyError(dir, 'it is a symlink')
  if (!st.isDirectory()) throw new TargetNotEmptyError(dir, 'it is not a folder')
  if ((await readdir(dir)).length > 0) throw new TargetNotEmptyError(dir, 'it is not empty')
  return false
}

async function undo (dir: string, created: boolean): Promise<void> {
  try {
    if (created) {
      await rm(dir, { recursive: true, force: true })
    } else {
      for (const name of await readdir(dir)) await rm(join(dir, name), { recursive: true, force: true })
    }
  } catch {
    // The original error matters more; a leftover staging folder is removed by Installer.recover.
  }
}
