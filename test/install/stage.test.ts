import { describe, it, expect, afterEach } from 'vitest'
import { access, lstat, mkdir, readdir, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { writeTree, type InstallFile } from '../../src/install/stage.js'
import { FileHashMismatchError } from '../../src/install/errors.js'
import { expectedSnapshot, memSpec, seededBytes, snapshot, tempDir, type MemEntry } from './helpers.js'

const TREE: MemEntry[] = [
  { path: 'bin', type: 'dir', mode: 0o755 },
  { path: 'bin/run', content: '#!/bin/sh\necho hi\n', mode: 0o755 },
  { path: 'lib/big.bin', content: seededBytes('big', 300_000), mode: 0o644 },
  { path: 'lib/empty', content: '', mode: 0o600 },
  { path: 'etc', type: 'dir', mode: 0o750 },
  { path: 'etc/secret.conf', content: 'k=v\n', mode: 0o400 },
  { path: 'ro', type: 'dir', mode: 0o555 },
  { path: 'ro/file', content: 'read only folder', mode: 0o444 },
  { path: 'tmpish', type: 'dir', mode: 0o1777 },
  { path: 'ünïcode/файл.txt', content: 'utf8 name' },
  { path: 'current-bin', target: 'bin/run' },
  { path: 'lib/up', target: '../etc' },
  { path: 'dangling', target: 'not/there' },
  { path: 'self', target: '.' }
]

describe('writeTree', () => {
  let cleanup: (() => Promise<void>) | undefined
  afterEach(async () => { await cleanup?.(); cleanup = undefined })

  it('writes a tree byte-identical, modes included, with progress', async () => {
    const t = await tempDir()
    cleanup = t.cleanup
    const spec = memSpec('p', '1', TREE)
    const seen: number[] = []
    const out = join(t.dir, 'a', 'b', 'out')
    const res = await writeTree(out, spec, { onProgress: (p) => { seen.push(p.files); expect(p.totalFiles).toBe(6) } })
    expect(res).toMatchObject({ files: 6, symlinks: 4, bytes: 300_000 + 18 + 4 + 16 + 9 })
    expect(res.dirs).toBe(6) // bin, etc, ro, tmpish + implied lib, ünïcode
    const want = expectedSnapshot(spec.files)
    want.lib = { type: 'dir', mode: 0o755 }
    want['ünïcode'] = { type: 'dir', mode: 0o755 }
    expect(await snapshot(out)).toEqual(want)
    expect((await stat(out)).mode & 0o7777).toBe(0o755)
    expect(seen.at(-1)).toBe(6)
  })

  it('writes into an existing empty folder and leaves its mode alone', async () => {
    const t = await tempDir()
    cleanup = t.cleanup
    const out = join(t.dir, 'out')
    await mkdir(out, { mode: 0o710 })
    const spec = memSpec('p', '1', [{ path: 'f', content: 'x' }])
    await writeTree(out, spec)
    expect(await snapshot(out)).toEqual(expectedSnapshot(spec.files))
    expect((await stat(out)).mode & 0o7777).toBe(0o710)
  })

  it.each([
    ['wrong bytes, same size', 'lib/big.bin', seededBytes('other', 300_000), 'sha256'],
    ['one byte short', 'bin/run', '#!/bin/sh\necho hi', 'size'],
    ['one byte long', 'bin/run', '#!/bin/sh\necho hi\n\n', 'size'],
    ['endless-looking stream', 'etc/secret.conf', Buffer.alloc(10_000_000), 'size']
  ])('%s → FileHashMismatchError naming the path, nothing left behind', async (_n, path, lie, field) => {
    const t = await tempDir()
    cleanup = t.cleanup
    const spec = memSpec('p', '1', TREE, { lie: { [path]: lie } })
    const out = join(t.dir, 'out')
    const err = await writeTree(out, spec).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(FileHashMismatchError)
    expect(err).toMatchObject({ path, field, code: 'ERR_FILE_MISMATCH' })
    expect((err as Error).message).toContain(path)
    await expect(access(out)).rejects.toThrow()
  })

  it('a failure in an existing folder empties it again', async () => {
    const t = await tempDir()
    cleanup = t.cleanup
    const out = join(t.dir, 'out')
    await mkdir(out)
    const spec = memSpec('p', '1', TREE, { lie: { 'ro/file': 'nope' } })
    await expect(writeTree(out, spec)).rejects.toThrow(FileHashMismatchError)
    expect(await readdir(out)).toEqual([])
  })

  it('an error from the byte source propagates and cleans up', async () => {
    const t = await tempDir()
    cleanup = t.cleanup
    const spec = memSpec('p', '1', TREE)
    spec.open = async function * (f: InstallFile) { yield Buffer.from('x'); throw new Error(`blob missing for ${f.path}`) }
    const out = join(t.dir, 'out')
    await expect(writeTree(out, spec)).rejects.toThrow(/blob missing/)
    await expect(lstat(out)).rejects.toThrow()
  })

  it('setuid bits are kept only when allowed', async () => {
    const t = await tempDir()
    cleanup = t.cleanup
    const spec = memSpec('p', '1', [{ path: 'su', content: 'x', mode: 0o4755 }, { path: 'g', type: 'dir', mode: 0o2775 }])
    await expect(writeTree(join(t.dir, 'no'), spec)).rejects.toMatchObject({ code: 'ERR_UNSAFE_MODE' })
    await writeTree(join(t.dir, 'yes'), spec, { allowSetid: true })
    expect(await snapshot(join(t.dir, 'yes'))).toEqual(expectedSnapshot(spec.files))
  })

  it('mode bits above 0o7777 (file type) are ignored', async () => {
    const t = await tempDir()
    cleanup = t.cleanup
    const spec = memSpec('p', '1', [{ path: 'f', content: 'x', mode: 0o100640 }])
    await writeTree(join(t.dir, 'o'), spec)
    expect((await stat(join(t.dir, 'o', 'f'))).mode & 0o7777).toBe(0o640)
  })

  it('writes a file of many pieces in batches, byte-identical (3 MiB in 7000-byte pieces)', async () => {
    const t = await tempDir()
    cleanup = t.cleanup
    const spec = memSpec('p', '1', [{ path: 'big', content: seededBytes('batches', 3 * 1024 * 1024 + 17) }, { path: 'one', content: 'y' }])
    const res = await writeTree(join(t.dir, 'o'), spec)
    expect(res).toMatchObject({ bytes: 3 * 1024 * 1024 + 18, reused: 0, reuseFailed: 0 })
    expect(await snapshot(join(t.dir, 'o'))).toEqual(expectedSnapshot(spec.files))
  })

  it('a reuse guess that verifies is kept; a wrong, long, short or failing one is replaced from open', async () => {
    const t = await tempDir()
    cleanup = t.cleanup
    const big = seededBytes('reuse', 1_500_000)
    const spec = memSpec('p', '1', [
      { path: 'right', content: big },
      { path: 'wrong', content: big },
      { path: 'long', content: 'abc' },
      { path: 'short', content: big },
      { path: 'throws', content: big },
      { path: 'none', content: 'n' }
    ])
    const opened: string[] = []
    const open = spec.open
    spec.open = (f) => { opened.push(f.path); return open(f) }
    const flipped = Buffer.from(big)
    flipped[1_000_000]! ^= 1
    const pieces = async function * (b: Buffer): AsyncGenerator<Uint8Array> { for (let i = 0; i < b.length; i += 65536) yield b.subarray(i, i + 65536) }
    spec.reuse = (f) => {
      switch (f.path) {
        case 'right': return pieces(big)
        case 'wrong': return pieces(flipped)
        case 'long': return pieces(Buffer.from('abcd'))
        case 'short': return pieces(big.subarray(0, 1000))
        case 'throws': return (async function * () { yield big.subarray(0, 70_000); throw new Error('installed file vanished') })()
        default: return undefined
      }
    }
    const res = await writeTree(join(t.dir, 'o'), spec)
    expect(res).toMatchObject({ files: 6, reused: 1, reuseFailed: 4, bytes: 4 * big.length + 3 + 1 })
    expect(opened.sort()).toEqual(['long', 'none', 'short', 'throws', 'wrong'])
    expect(await snapshot(join(t.dir, 'o'))).toEqual(expectedSnapshot(spec.files))
  })

  it('a wrong reuse guess and a wrong open still fail the file', async () => {
    const t = await tempDir()
    cleanup = t.cleanup
    const spec = memSpec('p', '1', [{ path: 'f', content: 'good' }], { lie: { f: 'evil' } })
    spec.reuse = () => (async function * () { yield Buffer.from('bad!') })()
    await expect(writeTree(join(t.dir, 'o'), spec)).rejects.toMatchObject({ code: 'ERR_FILE_MISMATCH', path: 'f', field: 'sha256' })
    await expect(lstat(join(t.dir, 'o'))).rejects.toThrow()
  })
})
