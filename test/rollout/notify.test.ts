// The notify command as a real shell script: what it reads, exit 0 / 75 / other, the defer line,
// the deadline cap, and a clean environment.
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { DEFAULT_DEFER_MS, runNotify, type NotifyInfo } from '../../src/rollout/notify.js'

const now = new Date('2026-06-01T12:00:00Z')
const info: NotifyInfo = { event: 'install', package: 'app', version: '2.0.0', previous: '1.0.0', channel: 'stable', ring: 'broad', notes: 'Notes.', deadline: null, due: false }

describe('runNotify', () => {
  let dir: string
  beforeAll(async () => { dir = await mkdtemp(join(tmpdir(), 'shoal-notify-')) })
  afterAll(async () => { await rm(dir, { recursive: true, force: true }) })

  it('gives the JSON on stdin and a clean environment; exit 0 installs', async () => {
    process.env.SHOAL_TEST_SECRET = 'leak'
    const r = await runNotify(`cat > ${dir}/in.json; env > ${dir}/env.txt`, info, { timeoutMs: 10_000, now })
    delete process.env.SHOAL_TEST_SECRET
    expect(r.install).toBe(true)
    expect(JSON.parse(await readFile(join(dir, 'in.json'), 'utf8'))).toEqual(info)
    const env = await readFile(join(dir, 'env.txt'), 'utf8')
    expect(env).toMatch(/^SHOAL_RING=broad$/m)
    expect(env).toMatch(/^SHOAL_HOOK=notify$/m)
    expect(env).not.toMatch(/SHOAL_TEST_SECRET/)
  })

  it('exit 75 defers: for the "defer" duration, one hour by default, never past the deadline', async () => {
    const a = await runNotify('echo "defer 30m"; exit 75', info, { timeoutMs: 10_000, now })
    expect(a).toMatchObject({ install: false, deferUntil: '2026-06-01T12:30:00.000Z' })
    const b = await runNotify('exit 75', info, { timeoutMs: 10_000, now })
    expect(Date.parse(b.deferUntil!) - now.getTime()).toBe(DEFAULT_DEFER_MS)
    const c = await runNotify('echo "defer 2d"; exit 75', { ...info, deadline: '2026-06-01T18:00:00Z' }, { timeoutMs: 10_000, now })
    expect(c.deferUntil).toBe('2026-06-01T18:00:00.000Z')
    const due = await runNotify('exit 75', { ...info, deadline: '2026-06-01T11:00:00Z', due: true }, { timeoutMs: 10_000, now })
    expect(due).toMatchObject({ install: true, reason: expect.stringMatching(/deadline .* has passed/) })
  })

  it('installs anyway when the command fails or times out', async () => {
    expect((await runNotify('exit 3', info, { timeoutMs: 10_000, now })).install).toBe(true)
    const slow = await runNotify('sleep 30', info, { timeoutMs: 300, now })
    expect(slow).toMatchObject({ install: true, reason: expect.stringMatching(/timed out/) })
  })
})
