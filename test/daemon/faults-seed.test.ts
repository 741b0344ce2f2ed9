// Issue 7, faults: the seed goes down mid-rollout. A seed and three endpoint processes of one site
// (introduced by label through the seed's directory); the seed is killed (-9) while each endpoint
// holds part of the release. While it is away the endpoints swap what they hold over the LAN until
// each holds the union, and retry the WAN with a bounded backoff; when the seed comes back on the
// same state dir and port, they finish, byte for byte.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { readFileSync } from 'node:fs'
import { afterAll, describe, expect, it } from 'vitest'
import { retryDelay } from '../../src/daemon/endpoint.js'
import { snapshot } from '../helpers/tree.js'
import { makeTree, until } from './helpers.js'
import { endpointProc, manifestBlobs, publishProc, startProcFleet, waitPeerId, type Proc, type ProcFleet } from './process-helpers.js'

let f: ProcFleet | undefined
let dir = ''
afterAll(async () => {
  for (const p of f?.procs ?? []) await p.kill9()
  if (dir !== '' && process.env.SHOAL_FAULT_KEEP === undefined) await rm(dir, { recursive: true, force: true, maxRetries: 5 })
})

/** Times (ms) of the endpoint's log lines with this message. */
function logTimes (p: Proc, msg: string): number[] {
  return readFileSync(p.logPath, 'utf8').split('\n').filter(l => l.includes(`"msg":"${msg}"`)).map(l => (JSON.parse(l) as { time: number }).time)
}

// An endpoint polls every POLL ms; a failed pass is retried sooner, backing off up to POLL.
const POLL = 30_000

describe('faults: the seed goes down mid-rollout', () => {
  it('site peers finish from each other what they can, retry with a bounded backoff, and finish when the seed returns', async () => {
    dir = await mkdtemp(join(tmpdir(), 'shoal-faults-seed-'))
    const fleet = f = await startProcFleet(dir)
    const eps: Proc[] = []
    // the site's WAN budget: ~2.4 MB at 400 kB/s keeps the download going for a few seconds
    for (let i = 1; i <= 3; i++) eps.push(await endpointProc(fleet, `e${i}`, { site: 'lab', wanRate: 400_000, pollInterval: POLL }))
    for (const e of eps) e.start()
    for (const e of eps) await waitPeerId(e)
    await until(async () => (await Promise.all(eps.map(async e => (await e.status()) as unknown as { siteMembers: number }))).every(s => s?.siteMembers === 2), 30_000, 'the site members to meet')

    const src = await makeTree(join(dir, 'v1'), 1, { binaryBytes: 2_200_000, textBytes: 200_000 })
    const blobs = await manifestBlobs(await publishProc(fleet, src, '1.0.0'))
    const total = [...blobs.values()].reduce((a, b) => a + b, 0)
    const held = async (): Promise<number[]> => await Promise.all(eps.map(async e => (await e.pkg())?.progress?.blobs ?? 0))
    // every endpoint holds part of it, none all of it, and not the same amount: there is something to
    // swap (the one holding fewer must gain from the LAN once the seed is gone). One blob of spread is
    // enough for that; asking for more made this wait timing-dependent, since site peers copy an
    // owner's chunk within a poll or two and the counts run close together.
    const before: string[] = []
    await until(async () => {
      const h = await held()
      before.push(h.join('/'))
      return h.every(n => n >= blobs.size * 0.1 && n < blobs.size) && h.reduce((a, b) => a + b, 0) >= blobs.size * 0.4 && Math.max(...h) > Math.min(...h)
    }, 30_000, 'part of the release on every endpoint, not the same part')
      .catch((err: Error) => { throw new Error(`${err.message}; of ${blobs.size} blobs held ${[...new Set(before)].join(' ')}`) })
    await fleet.seed.kill9()
    const downAt = Date.now()
    const sts = await Promise.all(eps.map(async e => await e.status()))
    const atKill = sts.map(s => s?.packages.find(p => p.name === 'app')?.progress?.blobs ?? 0)
    const lanAtKill = sts.map(s => s?.bytes.lan ?? 0)
    expect(atKill.every(n => n < blobs.size), `an endpoint finished before the seed went down: ${atKill.join(' ')}`).toBe(true)

    // LAN: each ends with the same count, at least what the best of them held (the union of the three).
    const seen: string[] = []
    await until(async () => { const h = await held(); seen.push(h.join('/')); return h.every(n => n === h[0]) && (h[0] ?? 0) >= Math.max(...atKill) }, 30_000, 'the site to swap what it holds')
      .catch((err: Error) => { throw new Error(`${err.message}; held at the kill ${atKill.join('/')}, then ${[...new Set(seen)].join(' ')}`) })
    const union = (await held())[0] ?? 0
    const lanGain = (await Promise.all(eps.map(async e => (await e.status())?.bytes.lan ?? 0))).reduce((a, b, i) => a + b - (lanAtKill[i] ?? 0), 0)
    // With the seed gone, an endpoint that held fewer than another at the kill can only have caught up
    // over the LAN. (The counts were apart just before the kill; should they have met in between,
    // there is nothing this step can prove and the log says so.)
    if (Math.max(...atKill) > Math.min(...atKill)) expect(lanGain, `LAN bytes at the kill ${lanAtKill.join('/')}; swap ${seen.join(' ')}`).toBeGreaterThan(0)
    else console.log(`seed down mid-rollout: the counts met (${atKill.join('/')}) between the check and the kill; LAN gain ${lanGain} B not asserted`)
    for (const e of eps) expect((await e.pkg())?.installed ?? null).toBe(null)

    // Backoff: stay down until each endpoint retried three times, pairing each failed attempt with
    // the start of the next pass (its first line: the seed cannot be reached). The poll interval
    // is long enough not to step in.
    const retryDelays = (e: Proc): number[] => {
      const starts = logTimes(e, 'cannot reach seed or origin')
      return logTimes(e, 'release not installed yet').filter(x => x >= downAt)
        .flatMap(t => { const s = starts.find(x => x > t); return s === undefined ? [] : [s - t] })
    }
    await until(() => eps.every(e => retryDelays(e).length >= 3), 60_000, 'three retries on every endpoint')
    const delays: number[][] = []
    for (const e of eps) {
      const d = retryDelays(e).slice(0, 3)
      delays.push(d)
      // attempt i waits retryDelay(i): at least ½ × min(pollInterval, 2^i s) (timers never fire
      // early: so the delays grow), and far less than the poll interval (give or take a loaded
      // machine's late timers and the dial that fails before the pass logs its first line)
      d.forEach((ms, i) => {
        expect(ms, `${e.name}: delay before retry ${i} (${d.join(', ')})`).toBeGreaterThanOrEqual(retryDelay(i, POLL, 0) - 100)
        expect(ms, `${e.name}: delay before retry ${i} (${d.join(', ')})`).toBeLessThanOrEqual(retryDelay(i, POLL, 1) + 4_000)
      })
    }

    // The seed comes back on the same state dir and port; everyone finishes.
    fleet.seed.start()
    const upAt = Date.now()
    await waitPeerId(fleet.seed)
    await until(async () => (await Promise.all(eps.map(async e => (await e.pkg())?.installed))).every(v => v === '1.0.0'), POLL + 20_000, 'every endpoint to finish after the seed returned')
    const finished = Date.now() - upAt
    const want = await snapshot(src)
    for (const e of eps) expect(await snapshot(join(dir, e.name, 'apps', 'app', 'current'))).toEqual(want)
    const wan = (await Promise.all(eps.map(async e => (await e.status())?.bytes.seed ?? 0))).reduce((a, b) => a + b, 0)
    console.log(`seed down mid-rollout: ${blobs.size} blobs, ${total} B; held at the kill ${atKill.join('/')}, after the LAN swap ${union} each (${lanGain} B over the LAN); ` +
      `delays before each retry (ms): ${delays.map(g => g.join(',')).join(' | ')}; all installed ${finished} ms after the seed restarted; WAN bytes for the site ${wan} (${(wan / total).toFixed(2)}x the release)`)
  }, 180_000)
})

describe('faults: the seed restarts mid-download', () => {
  it('a seed away for a moment costs no failed pass: the download waits, resumes, and fetches nothing twice', async () => {
    const d = await mkdtemp(join(tmpdir(), 'shoal-faults-seed-'))
    const fleet = await startProcFleet(d)
    try {
      const eps: Proc[] = []
      for (let i = 1; i <= 2; i++) eps.push(await endpointProc(fleet, `r${i}`, { site: 'lab', wanRate: 400_000, pollInterval: POLL }))
      for (const e of eps) e.start()
      for (const e of eps) await waitPeerId(e)
      await until(async () => (await Promise.all(eps.map(async e => (await e.status()) as unknown as { siteMembers: number }))).every(s => s?.siteMembers === 1), 30_000, 'the site members to meet')
      const src = await makeTree(join(d, 'v1'), 2, { binaryBytes: 2_200_000, textBytes: 200_000 })
      const blobs = await manifestBlobs(await publishProc(fleet, src, '1.0.0'))
      const total = [...blobs.values()].reduce((a, b) => a + b, 0)
      const held = async (): Promise<number[]> => await Promise.all(eps.map(async e => (await e.pkg())?.progress?.blobs ?? 0))
      await until(async () => (await held()).every(n => n >= blobs.size * 0.1), 30_000, 'part of the release on every endpoint')
      await fleet.seed.kill9()
      const atKill = await held()
      fleet.seed.start()
      await waitPeerId(fleet.seed)
      await until(async () => (await Promise.all(eps.map(async e => (await e.pkg())?.installed))).every(v => v === '1.0.0'), 60_000, 'every endpoint to finish')
      const want = await snapshot(src)
      for (const e of eps) expect(await snapshot(join(d, e.name, 'apps', 'app', 'current'))).toEqual(want)
      // One pass each: before, the first failed blob request ended the pass ('release not installed yet').
      for (const e of eps) expect(logTimes(e, 'release not installed yet'), `${e.name} failed a pass`).toEqual([])
      const wan = (await Promise.all(eps.map(async e => (await e.status())?.bytes.seed ?? 0))).reduce((a, b) => a + b, 0)
      expect(wan).toBe(total)
      console.log(`seed restart mid-download: ${blobs.size} blobs; held at the kill ${atKill.join('/')}; WAN bytes ${wan} = ${(wan / total).toFixed(2)}x the release, no failed pass`)
    } finally {
      for (const p of fleet.procs) await p.kill9()
      if (process.env.SHOAL_FAULT_KEEP === undefined) await rm(d, { recursive: true, force: true, maxRetries: 5 })
    }
  }, 120_000)
})

describe('retryDelay', () => {
  it('doubles from 1 s, stays within the poll interval, and is drawn in the upper half', () => {
    expect([0, 1, 2, 3].map(a => retryDelay(a, 60_000, 1))).toEqual([1_000, 2_000, 4_000, 8_000])
    expect(retryDelay(0, 60_000, 0)).toBe(500)
    expect(retryDelay(10, 60_000, 1)).toBe(60_000)
    expect(retryDelay(1e9, 60_000, 0.5)).toBe(45_000)
    expect(retryDelay(3, 500, 1)).toBe(500)
  })
})
