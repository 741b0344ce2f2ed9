// Builds InstallSpecs from in-memory trees and snapshots trees on disk, modes and hashes included.
import { createCipheriv, createHash } from 'node:crypto'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { InstallFile, InstallSpec } from '../../src/install/stage.js'

/** Deterministic pseudo-random bytes: an AES-256-CTR keystream keyed by `seed`. */
export function seededBytes (seed: string, n: number): Buffer {
  const c = createCipheriv('aes-256-ctr', createHash('sha256').update(seed).digest(), Buffer.alloc(16))
  return c.update(Buffer.alloc(n))
}

export interface MemEntry { path: string, type?: 'file' | 'dir' | 'symlink', mode?: number, content?: string | Buffer, target?: string }

export function sha256 (b: string | Uint8Array): string {
  return createHash('sha256').update(b).digest('hex')
}

/** A spec whose files stream `content` in small pieces; `lie` swaps the bytes served for a path. */
export function memSpec (pkg: string, version: string, entries: MemEntry[], extra: Partial<InstallSpec> & { lie?: Record<string, string | Buffer> } = {}): InstallSpec {
  const bytes = new Map<string, Buffer>()
  const files: InstallFile[] = entries.map(e => {
    const type = e.type ?? (e.target !== undefined ? 'symlink' : e.content !== undefined ? 'file' : 'dir')
    if (type === 'file') {
      const b = Buffer.from(e.content ?? '')
      bytes.set(e.path, b)
      return { path: e.path, type, mode: e.mode ?? 0o644, size: b.length, sha256: sha256(b) }
    }
    if (type === 'symlink') return { path: e.path, type, mode: 0o777, size: 0, target: e.target as string }
    return { path: e.path, type, mode: e.mode ?? 0o755, size: 0 }
  })
  const lie = extra.lie ?? {}
  return {
    package: pkg,
    version,
    files,
    hooks: extra.hooks,
    open: async function * (f: InstallFile) {
      const b = lie[f.path] !== undefined ? Buffer.from(lie[f.path] as string | Buffer) : bytes.get(f.path)
      if (b === undefined) throw new Error(`no bytes for ${f.path}`)
      for (let i = 0; i < b.length; i += 7000) yield b.subarray(i, i + 7000)
    }
  }
}

export { snapshot, type TreeEntry as Snap } from '../helpers/tree.js'
import type { TreeEntry as Snap } from '../helpers/tree.js'

/** What `snapshot` should return for a tree written from `files`. */
export function expectedSnapshot (files: readonly InstallFile[]): Record<string, Snap> {
  const out: Record<string, Snap> = {}
  for (const f of [...files].sort((a, b) => (a.path < b.path ? -1 : 1))) {
    if (f.type === 'file') out[f.path] = { type: 'file', mode: f.mode & 0o7777, sha256: f.sha256 }
    else if (f.type === 'symlink') out[f.path] = { type: 'symlink', mode: 0o777, target: f.target }
    else out[f.path] = { type: 'dir', mode: f.mode & 0o7777 }
  }
  return out
}

export async function tempDir (): Promise<{ dir: string, cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'shoal-install-test-'))
  return { dir, cleanup: async () => { await rm(dir, { recursive: true, force: true }) } }
}

/** True if `pid` is gone or a zombie waiting to be reaped (it runs no code either way). */
export async function processGone (pid: number): Promise<boolean> {
  try {
    process.kill(pid, 0)
  } catch {
    return true
  }
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')
  } catch {
    return true
  }
}
