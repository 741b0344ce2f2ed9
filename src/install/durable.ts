// The few file-system moves the crash-safety argument rests on: fsync a file or a folder, write a
// small file atomically, replace a symlink atomically. A rename is atomic against a crash of the
// process; it survives a power cut only once the folder holding it is fsynced, hence fsyncDir
// after every rename that matters.
import { constants } from 'node:fs'
import { open, rename, rm, symlink, unlink } from 'node:fs/promises'
import { randomBytes } from 'node:crypto'
import { basename, dirname, join } from 'node:path'

const RDONLY_NOFOLLOW = constants.O_RDONLY | constants.O_NOFOLLOW

/** fsync a folder so the names created, renamed or removed in it are on disk. */
export async function fsyncDir (dir: string): Promise<void> {
  let fh
  try {
    fh = await open(dir, RDONLY_NOFOLLOW | constants.O_DIRECTORY)
  } catch (err) {
    // A folder we may not read (mode 0o000 without root) cannot be fsynced; its entries were
    // already made durable through the files themselves, so this is a best effort, not a hole.
    if ((err as NodeJS.ErrnoException).code === 'EACCES') return
    throw err
  }
  try {
    await fh.sync()
  } catch (err) {
    // Some file systems refuse fsync on folders (EINVAL) although renames there are durable.
    const code = (err as NodeJS.ErrnoException).code
    if (code !== 'EINVAL' && code !== 'EISDIR' && code !== 'EPERM') throw err
  } finally {
    await fh.close()
  }
}

/** fsync many regular files, a few at a time: parallel fsyncs let the journal batch commits. */
export async function fsyncFiles (paths: readonly string[], concurrency = 16): Promise<void> {
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < paths.length) {
      const p = paths[next++] as string
      const fh = await open(p, RDONLY_NOFOLLOW)
      try { await fh.sync() } finally { await fh.close() }
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, paths.length) }, worker))
}

/** A fresh random suffix for temporary names (`.staging-…`, `current.tmp-…`). */
export function randomSuffix (): string {
  return randomBytes(6).toString('hex')
}

/** Write `data` to `path` so that a crash leaves either the old file or the new one. */
export async function writeFileAtomic (path: string, data: string | Uint8Array): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.tmp-${randomSuffix()}`)
  const fh = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o644)
  try {
    await fh.writeFile(data)
    await fh.sync()
  } finally {
    await fh.close()
  }
  try {
    await rename(tmp, path)
  } catch (err) {
    await rm(tmp, { force: true })
    throw err
  }
  await fsyncDir(dirname(path))
}

/**
 * Point the symlink `link` at `target`, atomically: make `<link>.tmp-<rand>`, then rename it over
 * `link` (rename replaces the link itself, never what it points to), then fsync the folder.
 * `tmpPrefix` names the temporary so `recover` can find leftovers.
 */
export async function replaceSymlink (link: string, target: string, tmpPrefix: string): Promise<void> {
  const tmp = join(dirname(link), `${tmpPrefix}${randomSuffix()}`)
  await symlink(target, tmp)
  try {
    await rename(tmp, link)
  } catch (err) {
    await unlink(tmp).catch(() => {})
    throw err
  }
  await fsyncDir(dirname(link))
}

/** Remove a path (folder trees included) if present, then fsync its parent. */
export async function removeDurably (path: string): Promise<void> {
  await rm(path, { recursive: true, force: true })
  await fsyncDir(dirname(path))
}
