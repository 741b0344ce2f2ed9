// Issue 7, faults: a full disk. A small tmpfs as an endpoint's state dir and, separately, as
// another endpoint's install root, filled by a filler file: the download (or the install) stops
// with ERR_DISK_FULL, /status says so (`disk`), nothing partial is installed, the endpoint keeps
// serving the blobs it has to its site, and it finishes by itself once the filler is removed.
// Needs root (mount); skipped with the reason printed otherwise.
import { spawnSync } from 'node:child_process'
import { mkdir, mkdtemp, readdir, rm, statfs, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { snapshot } from '../helpers/tree.js'
import { makeTree, until } from './helpers.js'
import { endpointProc, manifestBlobs, publishProc, startProcFleet, waitPeerId, type Proc, type ProcFleet } from './process-helpers.js'

const isRoot = process.getuid?.() === 0
if (!isRoot) console.log('faults-disk: skipped, mounting a tmpfs needs root')

let f: ProcFleet | undefined
let dir = ''
const mounts: string[] = []
afterAll(async () => {
  for (const p of f?.procs ?? []) await p.kill9()
  for (const m of mounts.splice(0)) {
    const r = spawnSync('umount', [m])
    if (r.status !== 0) spawnSync('umount', ['-l', m])
  }
  if (dir !== '' && process.env.SHOAL_FAULT_KEEP === undefined) await rm(dir, { recursive: true, force: true, maxRetries: 5 })
})

/** Mounts a tmpfs; returns mount's complaint when it cannot (root in a container without CAP_SYS_ADMIN). */
async function tmpfs (path: string, size: string): Promise<string | null> {
  await mkdir(path, { recursive: true })
  const r = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0755`, 'tmpfs', path], { encoding: 'utf8' })
  if (r.status !== 0) return `mount -t tmpfs at ${path} failed: ${(r.stderr ?? '').trim() || `exit ${r.status}`}`
  mounts.push(path)
  return null
}

/** Fills the file system holding `path` until `leave` bytes are free. */
async function fill (path: string, leave: number): Promise<string> {
  const s = await statfs(path)
  const free = s.bavail * s.bsize
  const filler = join(path, 'filler')
  await writeFile(filler, Buffer.alloc(Math.max(0, free - leave)))
  return filler
}

async function leftovers (pkgDir: string): Promise<string[]> {
  const top = await readdir(pkgDir).catch(() => [] as string[])
  const versions = await readdir(join(pkgDir, 'versions')).catch(() => [] as string[])
  return [...top.filter(x => x !== 'versions'), ...versions.map(v => `versions/${v}`)]
}

describe.skipIf(!isRoot)('faults: disk full', () => {
  it('state dir full, then install root full: typed error in /status, nothing partial, serves its site, recovers when space returns', async (ctx) => {
    dir = await mkdtemp(join(tmpdir(), 'shoal-faults-disk-'))
    const cannot = await tmpfs(join(dir, 'statefs'), '16m')
    if (cannot !== null) {
      console.log(`faults-disk: skipped, ${cannot}`)
      ctx.skip()
      return
    }
    const fleet = f = await startProcFleet(dir)
    const src = await makeTree(join(dir, 'v1'), 1, { binaryBytes: 2_500_000, textBytes: 100_000 })
    const want = await snapshot(src)

    // 1. The state dir fills up during the download.
    const aApps = join(dir, 'a-apps')
    const a = await endpointProc(fleet, 'a', { stateDir: join(dir, 'statefs', 'a'), installRoot: aApps, site: 'lab', pollInterval: 4_000 })
    a.start()
    await waitPeerId(a)
    // Room for the first blobs, not the release (2.6 MB). The pack store writes the blobs of one
    // event-loop turn in one write and, when that does not fit, as many of them as do one by one.
    const filler = await fill(join(dir, 'statefs'), 1_500_000)
    const blobs = await manifestBlobs(await publishProc(fleet, src, '1.0.0'))
    const total = [...blobs.values()].reduce((x, y) => x + y, 0)
    let disk: Awaited<ReturnType<Proc['status']>> | undefined
    await until(async () => { disk = await a.status(); return disk?.disk?.full === true }, 30_000, '/status to say the disk is full')
    expect(disk?.disk?.code).toBe('ERR_DISK_FULL')
    expect(disk?.disk?.path).toContain(join(dir, 'statefs', 'a'))
    expect(disk?.disk?.message).toMatch(/no space left.*free space/)
    const held = (await a.pkg())?.progress?.blobs ?? 0
    expect(held).toBeGreaterThan(0)
    expect(held).toBeLessThan(blobs.size)
    expect((await a.pkg())?.installed ?? null).toBe(null)
    expect(await leftovers(join(aApps, 'app'))).toEqual([])
    expect(a.tail(200)).toContain('disk full: downloads and installs wait until space is freed')

    // It keeps serving what it holds: a site peer gets those blobs from it over the LAN.
    const b = await endpointProc(fleet, 'b', { site: 'lab' })
    b.start()
    await until(async () => (await b.pkg())?.installed === '1.0.0', 60_000, 'the site peer to install')
    expect((await b.status())?.bytes.lan ?? 0).toBeGreaterThan(0)
    const served = (await a.status())?.bytes.served ?? 0
    expect(served).toBeGreaterThan(0)
    expect(a.running).toBe(true)
    // Still full, it now finds every blob at its site peer: a blob it cannot store ends its fetch
    // (retried with the backoff), it does not fetch the same blobs from the peer again and again.
    const bServed0 = (await b.status())?.bytes.served ?? 0
    await new Promise(resolve => setTimeout(resolve, 4_000))
    const bServed = ((await b.status())?.bytes.served ?? 0) - bServed0
    expect(bServed, 'bytes the site peer served the full endpoint in 4 s').toBeLessThan(2 * total)
    expect((await a.status())?.disk?.full).toBe(true)

    // Space back: it finishes by itself, byte for byte.
    await rm(filler)
    const freedAt = Date.now()
    await until(async () => (await a.pkg())?.installed === '1.0.0', 30_000, 'the install once space is back')
    const recoveredMs = Date.now() - freedAt
    // /status says what the last pass met; the pass that installed may still be pruning.
    await until(async () => (await a.status())?.disk?.full === false, 10_000, '/status to say the disk has space again')
    expect(await snapshot(join(aApps, 'app', 'current'))).toEqual(want)

    // 2. The install root is full: the download lands, the install stops before anything partial stays.
    expect(await tmpfs(join(dir, 'appsfs'), '8m')).toBe(null)
    const cApps = join(dir, 'appsfs', 'c')
    await mkdir(cApps)
    const filler2 = await fill(join(dir, 'appsfs'), 600_000)
    const c = await endpointProc(fleet, 'c', { installRoot: cApps, pollInterval: 4_000 })
    c.start()
    await until(async () => { disk = await c.status(); return disk?.disk?.full === true }, 30_000, '/status to say the install root is full')
    expect(disk?.disk?.path).toBe(cApps)
    const pc = await c.pkg()
    expect(pc?.error?.code).toBe('ERR_DISK_FULL')
    expect(pc?.installed ?? null).toBe(null)
    expect(await leftovers(join(cApps, 'app'))).toEqual([])
    await rm(filler2)
    await until(async () => (await c.pkg())?.installed === '1.0.0', 30_000, 'the install once the install root has space')
    await until(async () => (await c.status())?.disk?.full === false, 10_000, '/status to say the install root has space again')
    expect(await snapshot(join(cApps, 'app', 'current'))).toEqual(want)
    console.log(`disk full: release ${blobs.size} blobs, ${total} B; state dir full after ${held} blobs; ${served} B served to the site peer meanwhile; the peer served it ${bServed} B in 4 s while it was still full; installed ${recoveredMs} ms after space came back; install root full: ${pc?.error?.message ?? ''}`)
  }, 180_000)
})
