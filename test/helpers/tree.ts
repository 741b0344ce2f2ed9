// Builds sample trees and compares trees byte for byte, modes included.
import { createHash } from 'node:crypto'
import { lstat, readFile, readdir, readlink } from 'node:fs/promises'
import { join, posix } from 'node:path'

/** Deterministic pseudo-random bytes (xorshift), so failures reproduce. */
export function prng (seed: number): (n: number) => Buffer {
  let x = seed >>> 0 || 1
  return (n: number) => {
    const out = Buffer.alloc(n)
    for (let i = 0; i < n; i++) {
      x ^= x << 13; x >>>= 0
      x ^= x >>> 17
      x ^= x << 5; x >>>= 0
      out[i] = x & 0xff
    }
    return out
  }
}

/** Text-like bytes that compress and chunk like source code. */
export function textLike (seed: number, n: number): Buffer {
  const rand = prng(seed)
  const words = ['function', 'return', 'const', 'shoal', 'chunk', 'manifest', 'export', 'import', 'await', '{', '}', '(', ')', ';', '\n', 'peer', 'blob', 'seed']
  const parts: string[] = []
  let len = 0
  while (len < n) {
    const r = rand(2)
    const w = words[(r[0] as number) % words.length] as string
    const s = (r[1] as number) % 7 === 0 ? `${w}${r[1]} ` : `${w} `
    parts.push(s)
    len += s.length
  }
  return Buffer.from(parts.join('')).subarray(0, n)
}

export interface TreeEntry { type: 'file' | 'dir' | 'symlink', mode: number, sha256?: string, target?: string }

export async function snapshot (root: string): Promise<Record<string, TreeEntry>> {
  const out: Record<string, TreeEntry> = {}
  const visit = async (rel: string): Promise<void> => {
    for (const name of (await readdir(join(root, rel))).sort()) {
      const r = rel === '' ? name : posix.join(rel, name)
      const abs = join(root, r)
      const st = await lstat(abs)
      if (st.isDirectory()) {
        out[r] = { type: 'dir', mode: st.mode & 0o7777 }
        await visit(r)
      } else if (st.isSymbolicLink()) {
        out[r] = { type: 'symlink', mode: 0o777, target: await readlink(abs) }
      } else {
        out[r] = { type: 'file', mode: st.mode & 0o7777, sha256: createHash('sha256').update(await readFile(abs)).digest('hex') }
      }
    }
  }
  await visit('')
  return out
}
