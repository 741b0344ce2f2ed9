// What a publisher hands us — a folder, a .tar, a .tgz or a .zip — turned into one ordered list of
// entries on disk. Archives are unpacked into a private temp folder first: chunking an archive's
// compressed bytes defeats deduplication (measured: 95–100 % of a .tgz comes out "new").
import { createReadStream } from 'node:fs'
import { lstat, mkdtemp, open, readdir, readlink, rm, mkdir, symlink, chmod } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, posix, dirname } from 'node:path'
import { pipeline } from 'node:stream/promises'
import { createWriteStream } from 'node:fs'
import * as tar from 'tar'
import yauzl from 'yauzl'
import { ShoalError } from '../core/errors.js'

export interface InputEntry {
  /** POSIX path relative to the input root, no leading `./`. */
  path: string
  type: 'file' | 'dir' | 'symlink'
  /** Permission bits only (0o7777). */
  mode: number
  /** Bytes for files, 0 otherwise. */
  size: number
  absPath: string
  target?: string
}

export interface PreparedInput {
  kind: 'folder' | 'tar' | 'zip'
  root: string
  /** Sorted by path, bytewise on UTF-8: the order is part of what makes a publish reproducible. */
  entries: InputEntry[]
  cleanup: () => Promise<void>
}

export class InputError extends ShoalError {
  constructor (message: string, options?: { cause?: unknown }) {
    super('ERR_INPUT', message, options)
  }
}

const MAX_ENTRIES = 1_000_000
const MAX_PATH_BYTES = 4096

type ArchiveKind = 'tar' | 'tgz' | 'zip'

async function sniffArchive (file: string): Promise<ArchiveKind | null> {
  const fh = await open(file, 'r')
  try {
    const head = Buffer.alloc(512)
    const { bytesRead } = await fh.read(head, 0, 512, 0)
    if (bytesRead >= 2 && head[0] === 0x1f && head[1] === 0x8b) return 'tgz'
    if (bytesRead >= 4 && head.readUInt32LE(0) === 0x04034b50) return 'zip'
    if (bytesRead >= 4 && head.readUInt32LE(0) === 0x06054b50) return 'zip' // empty zip
    if (bytesRead === 512 && head.subarray(257, 262).toString('latin1') === 'ustar') return 'tar'
    return null
  } finally {
    await fh.close()
  }
}

/** Opens the publisher's input. Call `cleanup()` when done (removes an unpacked archive). */
export async function prepareInput (input: string): Promise<PreparedInput> {
  let st
  try {
    st = await lstat(input)
  } catch (err) {
    throw new InputError(`cannot read input ${input}: ${(err as Error).message}`, { cause: err })
  }
  if (st.isDirectory()) {
    return { kind: 'folder', root: input, entries: await walk(input), cleanup: async () => {} }
  }
  if (!st.isFile()) throw new InputError(`input ${input} is neither a folder nor an archive file`)
  const kind = await sniffArchive(input)
  if (kind === null) {
    throw new InputError(`input ${input} is not a folder, .tar, .tgz/.tar.gz or .zip (unrecognised file header)`)
  }
  const dir = await mkdtemp(join(tmpdir(), 'shoal-input-'))
  const cleanup = async (): Promise<void> => { await rm(dir, { recursive: true, force: true }) }
  try {
    if (kind === 'zip') await unzip(input, dir)
    else await untar(input, dir)
    return { kind: kind === 'zip' ? 'zip' : 'tar', root: dir, entries: await walk(dir), cleanup }
  } catch (err) {
    await cleanup()
    if (err instanceof ShoalError) throw err
    throw new InputError(`cannot unpack ${input}: ${(err as Error).message}`, { cause: err })
  }
}

async function untar (file: string, dir: string): Promise<void> {
  const refused: string[] = []
  await tar.x({
    file,
    cwd: dir,
    strict: true,
    // The defaults already strip leading `/` and refuse `..` and writing through symlinks.
    preservePaths: false,
    preserveOwner: false,
    filter: (path, entry) => {
      const type = (entry as { type?: string }).type
      const ok = type === 'File' || type === 'OldFile' || type === 'ContiguousFile' || type === 'Directory' ||
        type === 'SymbolicLink' || type === 'Link'
      if (!ok) refused.push(`${path} (${type ?? 'unknown type'})`)
      return ok
    },
    onwarn: (code, message) => { refused.push(`${code}: ${String(message)}`) }
  })
  if (refused.length > 0) {
    throw new InputError(`archive ${file} has entries shoal does not publish: ${refused.slice(0, 5).join(', ')}${refused.length > 5 ? ', …' : ''}`)
  }
}

async function unzip (file: string, dir: string): Promise<void> {
  const zip = await new Promise<yauzl.ZipFile>((resolve, reject) => {
    yauzl.open(file, { lazyEntries: true, autoClose: true, strictFileNames: true, validateEntrySizes: true }, (err, z) => {
      if (err != null || z == null) reject(err ?? new Error('no zip file')); else resolve(z)
    })
  })
  await new Promise<void>((resolve, reject) => {
    const fail = (err: unknown): void => { zip.close(); reject(err) }
    zip.on('error', fail)
    zip.on('end', () => resolve())
    zip.on('entry', (entry: yauzl.Entry) => {
      void (async () => {
        // yauzl has already refused absolute paths and `..` (validateFileName).
        const name = entry.fileName
        const unixMode = (entry.externalFileAttributes >>> 16) & 0xffff
        const fileType = unixMode & 0o170000
        const target = join(dir, name)
        if (name.endsWith('/')) {
          await mkdir(target, { recursive: true })
          zip.readEntry()
          return
        }
        await mkdir(dirname(target), { recursive: true })
        const stream = await new Promise<NodeJS.ReadableStream>((res, rej) => {
          zip.openReadStream(entry, (err, s) => { if (err != null || s == null) rej(err ?? new Error('no stream')); else res(s) })
        })
        if (fileType === 0o120000) {
          const parts: Buffer[] = []
          for await (const p of stream) parts.push(p as Buffer)
          await symlink(Buffer.concat(parts).toString('utf8'), target)
        } else if (fileType === 0 || fileType === 0o100000) {
          await pipeline(stream, createWriteStream(target, { flags: 'wx' }))
          if (fileType !== 0) await chmod(target, unixMode & 0o777)
        } else {
          throw new InputError(`zip entry ${name} is a special file (mode ${unixMode.toString(8)}); shoal publishes files, folders and symlinks only`)
        }
        zip.readEntry()
      })().catch(fail)
    })
    zip.readEntry()
  })
}

function byteOrder (a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'))
}

/** Every entry under root, sorted; refuses what cannot be installed faithfully. */
export async function walk (root: string): Promise<InputEntry[]> {
  const out: InputEntry[] = []
  const stack: string[] = ['']
  while (stack.length > 0) {
    const rel = stack.pop() as string
    const abs = rel === '' ? root : join(root, rel)
    const names = await readdir(abs)
    for (const name of names) {
      const childRel = rel === '' ? name : posix.join(rel, name)
      if (Buffer.byteLength(childRel) > MAX_PATH_BYTES) throw new InputError(`path too long (over ${MAX_PATH_BYTES} bytes): ${childRel.slice(0, 80)}…`)
      // eslint-disable-next-line no-control-regex -- control characters are exactly what is refused
      if (/[\\\0-\x1f]/.test(name)) throw new InputError(`file name with a backslash or control character cannot be published: ${JSON.stringify(childRel)}`)
      const childAbs = join(abs, name)
      const st = await lstat(childAbs)
      const mode = st.mode & 0o7777
      if (st.isDirectory()) {
        out.push({ path: childRel, type: 'dir', mode, size: 0, absPath: childAbs })
        stack.push(childRel)
      } else if (st.isFile()) {
        out.push({ path: childRel, type: 'file', mode, size: st.size, absPath: childAbs })
      } else if (st.isSymbolicLink()) {
        const target = await readlink(childAbs)
        checkSymlinkTarget(childRel, target)
        out.push({ path: childRel, type: 'symlink', mode: 0o777, size: 0, absPath: childAbs, target })
      } else {
        throw new InputError(`${childRel} is a special file (socket, fifo or device); shoal publishes files, folders and symlinks only`)
      }
      if (out.length > MAX_ENTRIES) throw new InputError(`input has more than ${MAX_ENTRIES} entries`)
    }
  }
  out.sort((a, b) => byteOrder(a.path, b.path))
  return out
}

/** A symlink must stay inside the package: endpoints refuse anything else, so refuse it early. */
export function checkSymlinkTarget (path: string, target: string): void {
  if (target === '' || target.startsWith('/') || target.includes('\0')) {
    throw new InputError(`symlink ${path} -> ${target} points outside the package (absolute or empty target)`)
  }
  const resolved = posix.normalize(posix.join(posix.dirname(path), target))
  if (resolved === '..' || resolved.startsWith('../')) {
    throw new InputError(`symlink ${path} -> ${target} points outside the package`)
  }
}

/** Reads a file as a stream of pieces of at most `pieceSize` bytes. */
export function readFilePieces (absPath: string, pieceSize = 1 << 20): AsyncIterable<Uint8Array> {
  return createReadStream(absPath, { highWaterMark: pieceSize })
}
