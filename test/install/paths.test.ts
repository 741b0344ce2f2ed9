import { describe, it, expect, afterEach } from 'vitest'
import { access, mkdir, readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { checkSymlinkTarget, resolveInside, safeName, safeRelativePath } from '../../src/install/paths.js'
import { InvalidTreeError, UnsafeModeError, UnsafePathError } from '../../src/install/errors.js'
import { planTree, writeTree } from '../../src/install/stage.js'
import { Installer } from '../../src/install/installer.js'
import { memSpec, tempDir, type MemEntry } from './helpers.js'

const BAD_PATHS: Array<[string, string]> = [
  ['', 'empty'],
  ['/etc/passwd', 'absolute'],
  ['//etc', 'absolute, double slash'],
  ['..', 'parent'],
  ['../x', 'leading ..'],
  ['a/../../x', '.. in the middle'],
  ['a/..', 'trailing ..'],
  ['.', 'dot'],
  ['./a', 'leading dot segment'],
  ['a/./b', 'dot segment'],
  ['a//b', 'empty segment'],
  ['a/', 'trailing slash'],
  ['a\0b', 'NUL'],
  ['a\\..\\b', 'backslash'],
  ['..\\x', 'backslash parent'],
  ['a\nb', 'newline'],
  ['a\x1bb', 'escape'],
  ['a\x7fb', 'DEL'],
  ['a\uD800b', 'lone surrogate'],
  ['x'.repeat(256), 'segment over 255 bytes'],
  ['é'.repeat(128), 'segment over 255 bytes in UTF-8'],
  [Array.from({ length: 20 }, () => 'd'.repeat(250)).join('/'), 'path over 4096 bytes']
]

const GOOD_PATHS = ['a', 'a/b/c', '.hidden', 'a/.b', '..a', 'a..', 'a/...', 'ünï cödé/файл', 'x'.repeat(255), 'a b/c-d_e.f~']

describe('safeRelativePath', () => {
  it.each(BAD_PATHS)('refuses %j (%s)', (p) => {
    expect(() => safeRelativePath(p)).toThrow(UnsafePathError)
  })

  it.each(GOOD_PATHS)('accepts %j unchanged', (p) => {
    expect(safeRelativePath(p)).toBe(p)
  })

  it('resolveInside joins under the root and refuses escapes', () => {
    expect(resolveInside('/srv/root', 'a/b')).toBe('/srv/root/a/b')
    expect(resolveInside('/srv/root/', 'a')).toBe('/srv/root/a')
    for (const [p] of BAD_PATHS) expect(() => resolveInside('/srv/root', p)).toThrow(UnsafePathError)
  })

  it('names for packages and versions are single plain segments', () => {
    for (const ok of ['hello', '1.2.3', '1.0.0-rc.1+build.5', '@scope~x']) expect(safeName('version', ok)).toBe(ok)
    for (const bad of ['', '.', '..', '.staging', 'a/b', 'a b', 'a\0', 'x'.repeat(129), 'current\n']) {
      expect(() => safeName('package', bad)).toThrow(UnsafePathError)
    }
  })
})

const BAD_LINKS: Array<[string, string]> = [
  ['l', '/etc/passwd'],
  ['l', '..'],
  ['l', '../x'],
  ['a/l', '../..'],
  ['a/l', '../../etc'],
  ['a/l', 'b/../../../x'],
  ['l', ''],
  ['l', 'a\0b'],
  ['l', 'a\nb']
]

describe('symlink targets', () => {
  it.each(BAD_LINKS)('refuses %s -> %j', (path, target) => {
    expect(() => checkSymlinkTarget(path, target)).toThrow(UnsafePathError)
  })

  it('accepts targets that stay inside', () => {
    for (const [p, t] of [['l', 'a'], ['l', '.'], ['a/l', '..'], ['a/b/l', '../../c'], ['a/l', './b/../c'], ['l', 'missing']]) {
      expect(() => checkSymlinkTarget(p as string, t as string)).not.toThrow()
    }
  })
})

// Whole trees that must be refused before the disk is touched.
const BAD_TREES: Array<[string, MemEntry[], new (...a: never[]) => Error]> = [
  ['absolute file path', [{ path: '/tmp/x', content: 'x' }], UnsafePathError],
  ['.. file path', [{ path: 'a/../../x', content: 'x' }], UnsafePathError],
  ['absolute symlink', [{ path: 'l', target: '/etc' }], UnsafePathError],
  ['escaping symlink', [{ path: 'd', type: 'dir' }, { path: 'd/l', target: '../../etc' }], UnsafePathError],
  // Each link alone stays inside; chained, the second lands above the root.
  ['escape through another link', [{ path: 'd', type: 'dir' }, { path: 'd/s', target: '..' }, { path: 'e', target: 'd/s/..' }], UnsafePathError],
  ['escape through a link chain', [{ path: 'a', type: 'dir' }, { path: 'a/b', type: 'dir' }, { path: 'a/b/up', target: '../..' }, { path: 'a/x', target: 'b/up/..' }], UnsafePathError],
  ['symlink loop', [{ path: 'p', target: 'q' }, { path: 'q', target: 'p' }], UnsafePathError],
  ['file written through a symlink', [{ path: 'd', type: 'dir' }, { path: 'l', target: 'd' }, { path: 'l/f', content: 'x' }], InvalidTreeError],
  ['file inside a file', [{ path: 'f', content: 'x' }, { path: 'f/g', content: 'y' }], InvalidTreeError],
  ['duplicate path', [{ path: 'f', content: 'x' }, { path: 'f', content: 'y' }], InvalidTreeError],
  ['setuid file', [{ path: 'f', content: 'x', mode: 0o4755 }], UnsafeModeError],
  ['setgid dir', [{ path: 'd', type: 'dir', mode: 0o2755 }], UnsafeModeError]
]

describe('trees refused before anything touches the disk', () => {
  let cleanup: (() => Promise<void>) | undefined
  afterEach(async () => { await cleanup?.(); cleanup = undefined })

  it.each(BAD_TREES)('%s', async (_name, entries, Err) => {
    const t = await tempDir()
    cleanup = t.cleanup
    const spec = memSpec('pkg', '1.0.0', entries)
    expect(() => planTree(spec.files)).toThrow(Err)

    const out = join(t.dir, 'out')
    await expect(writeTree(out, spec)).rejects.toThrow(Err)
    await expect(access(out)).rejects.toThrow() // not even created

    const inst = new Installer(join(t.dir, 'root'))
    await expect(inst.install(spec, { hookTimeoutMs: 1000 })).rejects.toThrow(Err)
    await expect(access(join(t.dir, 'root'))).rejects.toThrow()
  })

  it('a file entry without a sha256 or with a bad size is refused', () => {
    expect(() => planTree([{ path: 'f', type: 'file', mode: 0o644, size: 1 }])).toThrow(InvalidTreeError)
    expect(() => planTree([{ path: 'f', type: 'file', mode: 0o644, size: -1, sha256: 'a'.repeat(64) }])).toThrow(InvalidTreeError)
    expect(() => planTree([{ path: 'f', type: 'file', mode: 0o644, size: 1.5, sha256: 'a'.repeat(64) }])).toThrow(InvalidTreeError)
    expect(() => planTree([{ path: 'f', type: 'fifo' as 'file', mode: 0o644, size: 0 }])).toThrow(InvalidTreeError)
  })

  it('setuid is accepted when explicitly allowed, and implicit parents are planned', () => {
    const plan = planTree(memSpec('p', '1', [{ path: 'bin/su', content: 'x', mode: 0o4755 }]).files, { allowSetid: true })
    expect(plan.files[0]?.mode).toBe(0o4755)
    expect(plan.dirs.map(d => [d.path, d.mode])).toEqual([['bin', 0o755]])
  })

  it('writeTree refuses a target folder that is not empty, and a symlink as target', async () => {
    const t = await tempDir()
    cleanup = t.cleanup
    await mkdir(join(t.dir, 'full'))
    await mkdir(join(t.dir, 'full', 'x'))
    const spec = memSpec('p', '1', [{ path: 'f', content: 'x' }])
    await expect(writeTree(join(t.dir, 'full'), spec)).rejects.toMatchObject({ code: 'ERR_TARGET_NOT_EMPTY' })
    expect(await readdir(join(t.dir, 'full'))).toEqual(['x'])
    const { symlink } = await import('node:fs/promises')
    await mkdir(join(t.dir, 'empty'))
    await symlink(join(t.dir, 'empty'), join(t.dir, 'link'))
    await expect(writeTree(join(t.dir, 'link'), spec)).rejects.toMatchObject({ code: 'ERR_TARGET_NOT_EMPTY' })
    expect(await readdir(join(t.dir, 'empty'))).toEqual([])
  })
})
