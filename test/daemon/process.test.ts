// Issue 3's process-level test: real `shoal daemon` processes on 127.0.0.1, kill -9 during the
// download and during the install, restart; the end state is the old or the new tree, byte-identical.
import { existsSync } from 'node:fs'
import { lstat, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { snapshot } from '../helpers/tree.js'
import { makeTree, until } from './helpers.js'
import { endpointProc, killMarked, manifestBlobs, pgrep, publishProc, startProcFleet, type ProcFleet } from './process-helpers.js'

interface Env extends ProcFleet { marker: string }
let env: Env | undefined
let failed = false

afterEach(async (ctx) => {
  const e = env
  env = undefined
  if (e === undefined) return
  if (ctx.task.result?.state === 'fail' || failed) {
    for (const p of e.procs) console.error(p.tail())
  }
  failed = false
  for (const p of e.procs) await p.kill9()
  killMarked(e.marker)
  await rm(e.dir, { recursive: true, force: true })
})

async function setup (name: string): Promise<Env> {
  const dir = await mkdtemp(join(tmpdir(), `shoal-proc-${name}-`))
  const e: Env = { ...await startProcFleet(dir), marker: `shoalmark${Date.now()}${Math.floor(Math.random() * 1e6)}` }
  env = e
  return e
}

const endpoint = endpointProc
const publish = publishProc

/** Sum of the sizes of the manifest's unique blobs. */
async function blobBytes (manifestPath: string): Promise<number> {
  return [...(await manifestBlobs(manifestPath)).values()].reduce((a, b) => a + b, 0)
}

async function linkExists (p: string): Promise<boolean> {
  try { await lstat(p); return true } catch { return false }
}

describe('real shoal daemon processes', () => {
  it('kill -9 during the download: no current, resume without refetching, byte-identical', async () => {
    const e = await setup('dl')
    // ~1.6 MB of incompressible bytes at 400 kB/s: about 4 s of download
    const src = await makeTree(join(e.dir, 'v1'), 1, { binaryBytes: 1_600_000 })
    const manifest = await publish(e, src, '1.0.0')
    const total = await blobBytes(manifest)
    const ep = await endpoint(e, 'ep', { wanRate: 400_000 })
    ep.start()
    let seen = 0
    await until(async () => {
      const p = await ep.pkg()
      seen = p?.progress?.bytes ?? 0
      return p?.progress !== undefined && seen > total * 0.2 && seen < total * 0.8
    }, 20_000, 'part of the download')
    await ep.kill9()
    const current = join(e.dir, 'ep', 'apps', 'app', 'current')
    expect(await linkExists(current)).toBe(false)

    ep.start()
    await until(async () => (await ep.pkg())?.installed === '1.0.0', 30_000, 'install after restart')
    expect(await snapshot(current)).toEqual(await snapshot(src))
    // Verified blobs survived the kill and were not fetched again: the endpoint never counts more
    // than the release's blob bytes. The counter is written just after each blob is stored, so a
    // kill in between leaves a stored blob uncounted (a few blobs at most: the ones landing at that
    // instant); it must not lose more than that.
    const counted = (await ep.status())?.bytes.seed ?? 0
    expect(counted).toBeLessThanOrEqual(total)
    expect(counted).toBeGreaterThanOrEqual(total - 16 * 65_536)
  }, 45_000)

  it('kill -9 during the install: current is v1 or v2, never a mix; v2 after restart', async () => {
    const e = await setup('inst')
    const v1 = await makeTree(join(e.dir, 'v1'), 1)
    const v2 = await makeTree(join(e.dir, 'v2'), 2)
    const started = join(e.dir, 'hook-started')
    const flag = join(e.dir, 'hook-go')
    const hook = join(e.dir, 'pre.sh')
    await writeFile(hook, [
      '#!/bin/sh',
      `# ${e.marker}`,
      `echo $$ > '${started}'`,
      `[ -e '${flag}' ] && exit 0`,
      `while [ ! -e '${flag}' ]; do sleep 0.1; done # ${e.marker}`,
      'exit 0', ''
    ].join('\n'))
    await publish(e, v1, '1.0.0')
    const ep = await endpoint(e, 'ep')
    ep.start()
    await until(async () => (await ep.pkg())?.installed === '1.0.0', 20_000, 'v1 installed')
    const current = join(e.dir, 'ep', 'apps', 'app', 'current')
    const s1 = await snapshot(v1)
    expect(await snapshot(current)).toEqual(s1)

    await publish(e, v2, '2.0.0', ['--preinstall', hook])
    await until(() => existsSync(started), 20_000, 'preinstall hook running')
    expect((await ep.pkg())?.state).toBe('installing')
    await ep.kill9()
    // the hook is in its own process group and outlives the daemon: end it
    const hookPid = Number((await readFile(started, 'utf8')).trim())
    try { process.kill(-hookPid, 'SIGKILL') } catch { /* already gone */ }
    killMarked(e.marker)
    await until(() => pgrep(e.marker).length === 0, 5000, 'the orphaned hook to end')
    await rm(started)

    const s2 = await snapshot(v2)
    const mid = await snapshot(current)
    expect([s1, s2]).toContainEqual(mid)

    await writeFile(flag, '')
    ep.start()
    await until(async () => (await ep.pkg())?.installed === '2.0.0', 30_000, 'v2 installed after restart')
    expect(await snapshot(current)).toEqual(s2)
    expect(existsSync(started)).toBe(true) // the hook ran again on restart
  }, 45_000)

  it('SIGTERM stops a daemon cleanly with exit code 0', async () => {
    const e = await setup('term')
    const ep = await endpoint(e, 'ep')
    ep.start()
    await until(async () => (await ep.status()) !== null, 15_000, 'endpoint API')
    for (const p of [ep, e.seed]) {
      const t0 = Date.now()
      p.child?.kill('SIGTERM')
      const r = await Promise.race([p.exit, new Promise<null>(resolve => setTimeout(() => { resolve(null) }, 5000))])
      expect(r, `${p.name} did not exit within 5 s of SIGTERM`).toEqual({ code: 0, signal: null })
      expect(Date.now() - t0).toBeLessThan(5000)
    }
  }, 30_000)
})
