import { describe, it, expect, afterEach, beforeEach } from 'vitest'
import { readFile, readdir, realpath } from 'node:fs/promises'
import { join } from 'node:path'
import { hookEnv, runHook, type RunHookOptions } from '../../src/install/hooks.js'
import { processGone, tempDir } from './helpers.js'

describe('runHook', () => {
  let dir = ''
  let cleanup: (() => Promise<void>) | undefined
  const pids: number[] = []
  beforeEach(async () => { const t = await tempDir(); dir = t.dir; cleanup = t.cleanup })
  afterEach(async () => {
    for (const pid of pids.splice(0)) { try { process.kill(pid, 'SIGKILL') } catch { /* gone */ } }
    delete process.env.FOO
    await cleanup?.()
  })

  const base = (o: Partial<RunHookOptions> = {}): RunHookOptions => ({
    hook: 'postinstall',
    cwd: dir,
    env: hookEnv({ hook: 'postinstall', package: 'hello', version: '2.0.0', installDir: dir, previousVersion: '1.0.0' }),
    timeoutMs: 10_000,
    killGraceMs: 300,
    tmpDir: dir,
    ...o
  })

  it('runs in a clean environment with the documented variables, in cwd', async () => {
    process.env.FOO = 'leaked-secret'
    const r = await runHook('env > env.txt\npwd > pwd.txt\n', base())
    expect(r).toMatchObject({ ok: true, exitCode: 0, signal: null, timedOut: false })
    const env = Object.fromEntries((await readFile(join(dir, 'env.txt'), 'utf8')).trim().split('\n').map(l => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]))
    delete env.PWD; delete env.SHLVL; delete env._ // the shell sets these itself
    expect(env).toEqual({
      PATH: '/usr/sbin:/usr/bin:/sbin:/bin',
      LANG: 'C.UTF-8',
      SHOAL_PACKAGE: 'hello',
      SHOAL_VERSION: '2.0.0',
      SHOAL_INSTALL_DIR: dir,
      SHOAL_PREVIOUS_VERSION: '1.0.0',
      SHOAL_HOOK: 'postinstall'
    })
    expect((await readFile(join(dir, 'pwd.txt'), 'utf8')).trim()).toBe(await realpath(dir))
    // the script file and its private folder are gone afterwards
    expect((await readdir(dir)).sort()).toEqual(['env.txt', 'pwd.txt'])
  })

  it('extra variables are added; reserved ones cannot be overridden', () => {
    const ctx = { hook: 'preinstall' as const, package: 'p', version: '1', installDir: '/x', previousVersion: null }
    expect(hookEnv(ctx, { SHOAL_RING: 'canary' })).toMatchObject({ SHOAL_RING: 'canary', SHOAL_PREVIOUS_VERSION: '' })
    expect(() => hookEnv(ctx, { PATH: '/tmp' })).toThrow(/cannot be overridden/)
    expect(() => hookEnv(ctx, { SHOAL_VERSION: '9' })).toThrow(/cannot be overridden/)
    expect(() => hookEnv(ctx, { 'lower-case': 'x' })).toThrow(/upper-case/)
  })

  it('-e: the first failing command fails the hook with its status', async () => {
    const r = await runHook('echo before\nfalse\necho after\n', base())
    expect(r).toMatchObject({ ok: false, exitCode: 1, timedOut: false })
    expect(r.logTail).toBe('before\n')
    const r2 = await runHook('echo oops >&2\nexit 42\n', base())
    expect(r2).toMatchObject({ ok: false, exitCode: 42 })
    expect(r2.logTail).toBe('oops\n')
  })

  it('keeps only the tail of a large output', async () => {
    const r = await runHook('i=0\nwhile [ $i -lt 3000 ]; do echo "line $i"; i=$((i+1)); done\necho THE-END\n', base({ logTailBytes: 1000 }))
    expect(r.ok).toBe(true)
    expect(r.outputBytes).toBeGreaterThan(20_000)
    expect(Buffer.byteLength(r.logTail)).toBeLessThanOrEqual(1000)
    expect(r.logTail.endsWith('line 2999\nTHE-END\n')).toBe(true)
  })

  it('a script reading stdin cannot eat the rest of itself', async () => {
    const r = await runHook('cat > /dev/null || true\necho still-here\n', base())
    expect(r).toMatchObject({ ok: true, logTail: 'still-here\n' })
  })

  it('a timeout kills the whole process group, background children included', async () => {
    const r = await runHook('sleep 100 &\necho $! > bg.pid\nsleep 100\n', base({ timeoutMs: 400 }))
    expect(r).toMatchObject({ ok: false, timedOut: true, exitCode: null, signal: 'SIGTERM' })
    const bg = Number(await readFile(join(dir, 'bg.pid'), 'utf8'))
    pids.push(bg)
    expect(await processGone(bg)).toBe(true)
  })

  it('a hook ignoring SIGTERM gets SIGKILL after the grace period', async () => {
    const r = await runHook("trap '' TERM\nsleep 100 &\necho $! > bg.pid\nwhile true; do sleep 1; done\n", base({ timeoutMs: 300, killGraceMs: 300 }))
    expect(r).toMatchObject({ ok: false, timedOut: true, signal: 'SIGKILL' })
    const bg = Number(await readFile(join(dir, 'bg.pid'), 'utf8'))
    pids.push(bg)
    expect(await processGone(bg)).toBe(true)
  })

  it('a hook that exits leaving a background process does not leave it running', async () => {
    const r = await runHook('sleep 100 &\necho $! > bg.pid\necho done\n', base())
    expect(r).toMatchObject({ ok: true, exitCode: 0, logTail: 'done\n' })
    const bg = Number(await readFile(join(dir, 'bg.pid'), 'utf8'))
    pids.push(bg)
    expect(await processGone(bg)).toBe(true)
  })

  it('a missing working folder is a failed run, not a throw', async () => {
    const r = await runHook('true\n', base({ cwd: join(dir, 'missing') }))
    expect(r.ok).toBe(false)
    expect(r.logTail).toMatch(/could not start the postinstall hook/)
  })
})
