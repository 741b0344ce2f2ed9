import { describe, it, expect, afterEach, beforeEach } from 'vitest'
import { mkdir, readFile, readdir, readlink, rename, symlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Installer } from '../../src/install/installer.js'
import { FileHashMismatchError, HookFailedError, InstallStateError, VersionNotInstalledError } from '../../src/install/errors.js'
import { writeTree } from '../../src/install/stage.js'
import { expectedSnapshot, memSpec, seededBytes, snapshot, tempDir, type MemEntry } from './helpers.js'

function tree (v: number): MemEntry[] {
  return [
    { path: 'bin', type: 'dir' },
    { path: 'bin/app', content: `#!/bin/sh\necho app v${v}\n`, mode: 0o755 },
    { path: 'share', type: 'dir', mode: 0o750 },
    { path: 'share/data.bin', content: seededBytes(`data-${v}`, 50_000 + v) },
    { path: `only-in-v${v}.txt`, content: `v${v}` },
    { path: 'app', target: 'bin/app' }
  ]
}

describe('Installer', () => {
  let root = ''
  let logDir = ''
  let cleanup: (() => Promise<void>) | undefined
  let inst: Installer
  const opts = { hookTimeoutMs: 10_000 }
  beforeEach(async () => {
    const t = await tempDir()
    cleanup = t.cleanup
    root = join(t.dir, 'apps')
    logDir = join(t.dir, 'log')
    await mkdir(logDir)
    inst = new Installer(root, { hookKillGraceMs: 200 })
  })
  afterEach(async () => { delete process.env.FOO; await cleanup?.() })

  const spec = (v: number, hooks?: { preinstall?: string, postinstall?: string }, lie?: Record<string, string>): ReturnType<typeof memSpec> =>
    memSpec('hello', `${v}.0.0`, tree(v), { hooks, lie })
  const pkgDir = (): string => join(root, 'hello')
  const currentTree = async (): Promise<unknown> => await snapshot(join(pkgDir(), 'current') + '/')
  const expectCurrent = async (v: number | null): Promise<void> => {
    expect(await inst.current('hello')).toBe(v === null ? null : `${v}.0.0`)
    if (v !== null) {
      expect(await readlink(join(pkgDir(), 'current'))).toBe(`versions/${v}.0.0`)
      expect(await currentTree()).toEqual(expectedSnapshot(spec(v).files))
    }
  }
  const leftovers = async (): Promise<string[]> => (await readdir(pkgDir())).filter(n => !['versions', 'current'].includes(n))

  it('installs v1, then v2, then v2 again is a no-op', async () => {
    expect(await inst.current('hello')).toBe(null)
    const r1 = await inst.install(spec(1), opts)
    expect(r1).toMatchObject({ status: 'installed', version: '1.0.0', previous: null, dir: join(pkgDir(), 'versions', '1.0.0'), files: 3 })
    await expectCurrent(1)
    const r2 = await inst.install(spec(2), opts)
    expect(r2).toMatchObject({ status: 'installed', version: '2.0.0', previous: '1.0.0' })
    await expectCurrent(2)
    const r3 = await inst.install(spec(2, { preinstall: `echo ran >> ${logDir}/noop` }), opts)
    expect(r3).toMatchObject({ status: 'noop', version: '2.0.0', previous: '2.0.0', hooks: {} })
    await expect(readFile(join(logDir, 'noop'))).rejects.toThrow()
    expect(await inst.versions('hello')).toEqual(['1.0.0', '2.0.0'])
    expect(await leftovers()).toEqual([])
    expect(await inst.packages()).toEqual(['hello'])
  })

  it('a file whose bytes do not match its sha256 → typed error, nothing switched, nothing left', async () => {
    await inst.install(spec(1), opts)
    const err = await inst.install(spec(2, { preinstall: `touch ${logDir}/pre` }, { 'share/data.bin': 'tampered' }), opts).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(FileHashMismatchError)
    expect(err).toMatchObject({ path: 'share/data.bin' })
    await expectCurrent(1)
    expect(await inst.versions('hello')).toEqual(['1.0.0'])
    expect(await readdir(join(pkgDir(), 'versions'))).toEqual(['.1.0.0.complete', '1.0.0'])
    expect(await leftovers()).toEqual([])
    await expect(readFile(join(logDir, 'pre'))).rejects.toThrow() // hooks never ran
  })

  it('preinstall failure → still v1, the new tree removed', async () => {
    await inst.install(spec(1), opts)
    const err = await inst.install(spec(2, { preinstall: 'echo checking\necho "disk too small" >&2\nexit 3\n' }), opts).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(HookFailedError)
    expect(err).toMatchObject({ hook: 'preinstall', exitCode: 3, signal: null, timedOut: false, logTail: 'checking\ndisk too small\n', activeVersion: '1.0.0', code: 'ERR_HOOK_FAILED' })
    await expectCurrent(1)
    expect(await inst.versions('hello')).toEqual(['1.0.0'])
    expect(await leftovers()).toEqual([])
  })

  it('postinstall failure → back to v1 with exit code and log tail', async () => {
    await inst.install(spec(1), opts)
    // The hook sees the switch done: current already names v2 while it runs.
    const post = 'readlink "$SHOAL_INSTALL_DIR/../../current"\ni=0; while [ $i -lt 500 ]; do echo "noise $i"; i=$((i+1)); done\necho "service failed to start" >&2\nexit 7\n'
    const err = await inst.install(spec(2, { postinstall: post }), opts).catch((e: unknown) => e) as HookFailedError
    expect(err).toBeInstanceOf(HookFailedError)
    expect(err).toMatchObject({ hook: 'postinstall', exitCode: 7, package: 'hello', version: '2.0.0', activeVersion: '1.0.0' })
    expect(err.logTail.endsWith('noise 499\nservice failed to start\n')).toBe(true)
    expect(Buffer.byteLength(err.logTail)).toBeLessThanOrEqual(4096)
    expect(err.logTail).not.toContain('versions/2.0.0\n') // the head fell out of the bounded tail
    expect(err.message).toContain('exited with status 7')
    await expectCurrent(1)
    expect(await inst.versions('hello')).toEqual(['1.0.0'])
    expect(await leftovers()).toEqual([])
  })

  it('postinstall that saw the switch, then failed, on a first install → no current at all', async () => {
    const err = await inst.install(spec(1, { postinstall: `readlink "$SHOAL_INSTALL_DIR/../../current" > ${logDir}/saw; exit 1` }), opts).catch((e: unknown) => e)
    expect(err).toMatchObject({ hook: 'postinstall', exitCode: 1, activeVersion: null })
    expect(await readFile(join(logDir, 'saw'), 'utf8')).toBe('versions/1.0.0\n')
    await expectCurrent(null)
    expect(await readdir(pkgDir())).toEqual(['versions'])
  })

  it('a postinstall timeout kills the hook and rolls back', async () => {
    await inst.install(spec(1), opts)
    const err = await inst.install(spec(2, { postinstall: 'echo starting\nsleep 100\n' }), { hookTimeoutMs: 300 }).catch((e: unknown) => e)
    expect(err).toMatchObject({ hook: 'postinstall', timedOut: true, exitCode: null, signal: 'SIGTERM', logTail: 'starting\n' })
    await expectCurrent(1)
  })

  it('hooks get a clean environment, the documented variables and the version folder as cwd', async () => {
    await inst.install(spec(1), opts)
    process.env.FOO = 'inherited-secret'
    const dump = (name: string): string => `env | sort > ${logDir}/${name}.env\npwd > ${logDir}/${name}.pwd\nreadlink ../../current > ${logDir}/${name}.cur\n`
    await inst.install(spec(2, { preinstall: dump('pre'), postinstall: dump('post') }), { ...opts, env: { SHOAL_RING: 'canary' } })
    const dir = join(pkgDir(), 'versions', '2.0.0')
    for (const hook of ['pre', 'post']) {
      const env = await readFile(join(logDir, `${hook}.env`), 'utf8')
      expect(env).not.toContain('FOO')
      expect(env).not.toContain('inherited-secret')
      const vars = Object.fromEntries(env.trim().split('\n').map(l => l.split(/=(.*)/s).slice(0, 2)))
      delete vars.PWD; delete vars.SHLVL; delete vars._
      expect(vars).toEqual({
        PATH: '/usr/sbin:/usr/bin:/sbin:/bin',
        LANG: 'C.UTF-8',
        SHOAL_PACKAGE: 'hello',
        SHOAL_VERSION: '2.0.0',
        SHOAL_INSTALL_DIR: dir,
        SHOAL_PREVIOUS_VERSION: '1.0.0',
        SHOAL_HOOK: `${hook}install`,
        SHOAL_RING: 'canary'
      })
      expect((await readFile(join(logDir, `${hook}.pwd`), 'utf8')).trim()).toBe(dir)
    }
    // preinstall runs before the switch, postinstall after it
    expect(await readFile(join(logDir, 'pre.cur'), 'utf8')).toBe('versions/1.0.0\n')
    expect(await readFile(join(logDir, 'post.cur'), 'utf8')).toBe('versions/2.0.0\n')
    await expect(inst.install(spec(3), { ...opts, env: { PATH: '/evil' } })).rejects.toThrow(/cannot be overridden/)
  })

  it('activate switches between installed versions (rollback) and refuses missing ones', async () => {
    await inst.install(spec(1), opts)
    await inst.install(spec(2), opts)
    expect(await inst.activate('hello', '1.0.0')).toEqual({ previous: '2.0.0' })
    await expectCurrent(1)
    expect(await inst.activate('hello', '1.0.0')).toEqual({ previous: '1.0.0' })
    await expect(inst.activate('hello', '9.0.0')).rejects.toThrow(VersionNotInstalledError)
    await expect(inst.activate('hello', '../x')).rejects.toThrow(/not a usable version name/)
    await inst.activate('hello', '2.0.0')
    await expectCurrent(2)
    // installing a version present but not current rebuilds it and switches to it
    await inst.install(spec(1), opts)
    await expectCurrent(1)
    expect(await leftovers()).toEqual([])
  })

  it('prune deletes every version but current and the kept ones', async () => {
    for (const v of [1, 2, 3, 4]) await inst.install(spec(v), opts)
    expect(await inst.prune('hello', ['2.0.0'])).toEqual(['1.0.0', '3.0.0'])
    expect(await inst.versions('hello')).toEqual(['2.0.0', '4.0.0'])
    expect(await inst.prune('hello', [])).toEqual(['2.0.0'])
    await expectCurrent(4)
    expect(await readdir(join(pkgDir(), 'versions'))).toEqual(['.4.0.0.complete', '4.0.0'])
  })

  it('installs of one package are serialised', async () => {
    const results = await Promise.all([1, 2, 3].map(async v => await inst.install(spec(v), opts)))
    expect(results.map(r => r.previous)).toEqual([null, '1.0.0', '2.0.0'])
    await expectCurrent(3)
  })

  describe('recover after simulated crashes', () => {
    beforeEach(async () => {
      await inst.install(spec(1), opts)
    })

    it('crash while staging: a half-written staging folder', async () => {
      const staging = join(pkgDir(), '.staging-2.0.0-0123456789ab')
      await mkdir(join(staging, 'bin'), { recursive: true })
      await writeFile(join(staging, 'bin', 'app'), 'half')
      const r = await inst.recover('hello')
      expect(r).toEqual({ package: 'hello', current: '1.0.0', removed: ['.staging-2.0.0-0123456789ab'] })
      await expectCurrent(1)
      expect(await leftovers()).toEqual([])
    })

    it('crash after the rename, before the completion marker: an incomplete version', async () => {
      await writeTree(join(pkgDir(), 'versions', '2.0.0'), spec(2))
      expect(await inst.versions('hello')).toEqual(['1.0.0'])
      const r = await inst.recover('hello')
      expect(r.removed).toEqual(['versions/2.0.0'])
      await expectCurrent(1)
      expect(await readdir(join(pkgDir(), 'versions'))).toEqual(['.1.0.0.complete', '1.0.0'])
    })

    it('crash while writing the marker or journal: temporary files', async () => {
      await writeFile(join(pkgDir(), 'versions', '..2.0.0.complete.tmp-0123456789ab'), '{')
      await writeFile(join(pkgDir(), '.pending.json.tmp-0123456789ab'), '{')
      const r = await inst.recover('hello')
      expect(r.removed.sort()).toEqual(['.pending.json.tmp-0123456789ab', 'versions/..2.0.0.complete.tmp-0123456789ab'])
      await expectCurrent(1)
    })

    it('crash during the switch: a current.tmp-* link', async () => {
      await inst.install(spec(2), opts)
      await inst.activate('hello', '1.0.0')
      await writeFile(join(pkgDir(), 'pending.json'), JSON.stringify({ version: '2.0.0', previous: '1.0.0' }))
      await symlink('versions/2.0.0', join(pkgDir(), 'current.tmp-0123456789ab'))
      const r = await inst.recover('hello')
      expect(r).toEqual({ package: 'hello', current: '1.0.0', removed: ['current.tmp-0123456789ab'] })
      await expectCurrent(1)
      expect(await inst.versions('hello')).toEqual(['1.0.0', '2.0.0'])
      expect(await leftovers()).toEqual([])
    })

    it('crash during postinstall (switched, unconfirmed) → rolled back to the old version', async () => {
      await inst.install(spec(2), opts)
      await writeFile(join(pkgDir(), 'pending.json'), JSON.stringify({ version: '2.0.0', previous: '1.0.0' }))
      const r = await inst.recover('hello')
      expect(r.interrupted).toEqual({ version: '2.0.0', restored: '1.0.0' })
      expect(r.current).toBe('1.0.0')
      await expectCurrent(1)
      expect(await inst.versions('hello')).toEqual(['1.0.0'])
      expect(await leftovers()).toEqual([])
      // and the next install of 2.0.0 goes through again
      expect((await inst.install(spec(2), opts)).status).toBe('installed')
      await expectCurrent(2)
    })

    it('crash during a first install\'s postinstall → no current', async () => {
      await inst.prune('hello', [])
      await writeFile(join(pkgDir(), 'pending.json'), JSON.stringify({ version: '1.0.0', previous: null }))
      const r = await inst.recover('hello')
      expect(r).toMatchObject({ current: null, interrupted: { version: '1.0.0', restored: null } })
      await expectCurrent(null)
    })

    it('crash while pruning: a trash folder, a version without its marker', async () => {
      await inst.install(spec(2), opts)
      await rename(join(pkgDir(), 'versions', '1.0.0'), join(pkgDir(), '.trash-0123456789ab'))
      const r = await inst.recover('hello')
      expect(r.removed.sort()).toEqual(['.trash-0123456789ab', 'versions/.1.0.0.complete'])
      await expectCurrent(2)
      expect(await readdir(join(pkgDir(), 'versions'))).toEqual(['.2.0.0.complete', '2.0.0'])
    })

    it('current pointing at an incomplete or foreign target is dropped', async () => {
      await writeTree(join(pkgDir(), 'versions', '2.0.0'), spec(2))
      await symlink('versions/2.0.0', join(pkgDir(), 'c'))
      await rename(join(pkgDir(), 'c'), join(pkgDir(), 'current'))
      expect(await inst.current('hello')).toBe(null) // never reports an incomplete tree
      const r = await inst.recover('hello')
      expect(r).toMatchObject({ current: null, droppedCurrent: '2.0.0', removed: ['versions/2.0.0'] })
      await symlink('/etc', join(pkgDir(), 'current'))
      expect(await inst.recover('hello')).toMatchObject({ current: null, droppedCurrent: '/etc' })
      await expectCurrent(null)
      expect(await inst.versions('hello')).toEqual(['1.0.0'])
    })

    it('a real folder named current is left alone and reported', async () => {
      await inst.prune('hello', [])
      await rename(join(pkgDir(), 'current'), join(pkgDir(), 'old-link'))
      await mkdir(join(pkgDir(), 'current'))
      await expect(inst.recover('hello')).rejects.toThrow(InstallStateError)
      await expect(inst.install(spec(2), opts)).rejects.toThrow(/is not a symlink/)
    })

    it('crash during a hook: its private script folder', async () => {
      await mkdir(join(pkgDir(), 'shoal-hook-Ab12Cd'))
      await writeFile(join(pkgDir(), 'shoal-hook-Ab12Cd', 'postinstall.sh'), 'true\n')
      expect((await inst.recover('hello')).removed).toEqual(['shoal-hook-Ab12Cd'])
      expect(await leftovers()).toEqual([])
    })

    it('recoverAll covers every package; an unknown package is a clean no-op', async () => {
      expect(await inst.recoverAll()).toEqual([{ package: 'hello', current: '1.0.0', removed: [] }])
      expect(await inst.recover('absent')).toEqual({ package: 'absent', current: null, removed: [] })
    })
  })
})
