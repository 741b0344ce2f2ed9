// Issue 7, faults: kill -9 of a real endpoint daemon at seeded random instants across fetch,
// assemble, switch and hooks. Each trial starts from a copy of one endpoint state (v1 installed,
// the seed's head names v2), kills the daemon at the trial's instant, then checks what the next
// start will find — the state DB opens, recover() leaves `current` byte-identical to v1 or v2 —,
// restarts it and checks that it installs v2 byte for byte without fetching any blob it had
// already verified and stored (its own byte counters and the bytes the seed served).
//
// SHOAL_FAULT_SEED replays a run; SHOAL_FAULT_TRIALS sets the number of trials (npm test runs the
// issue's 50: a trial costs two daemon starts, ~2 s each on a loaded 2-core machine, so ~5 min;
// .ci/run's second pass, under Node 24, runs 12 of them to keep CI under its time budget).
import { cp, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Installer } from '../../src/install/installer.js'
import { PackStore } from '../../src/store/pack-store.js'
import { StateDb } from '../../src/store/state-db.js'
import { cidFromHex } from '../../src/core/seal.js'
import { snapshot } from '../helpers/tree.js'
import { makeTree, until } from './helpers.js'
import { endpointProc, manifestBlobs, publishProc, startProcFleet, waitPeerId, type ProcFleet, type Proc } from './process-helpers.js'
import { prng as mulberry32 } from '../../bench/scale.js'

const SEED = Number(process.env.SHOAL_FAULT_SEED ?? 7_2026)
const TRIALS = Number(process.env.SHOAL_FAULT_TRIALS ?? 50)
const PHASES = ['fetch', 'assemble', 'hooks', 'switch'] as const
type Phase = typeof PHASES[number]

let f: ProcFleet | undefined
let dir = ''

afterAll(async () => {
  for (const p of f?.procs ?? []) await p.kill9()
  if (dir !== '') await rm(dir, { recursive: true, force: true, maxRetries: 5 })
})

interface Timing { fetch: [number, number], assemble: [number, number], hooks: [number, number], switch: [number, number], total: number }

/**
 * Starts `p` and calls `at` on the log line of `anchor`: a new head for the fetch, the end of the
 * download for the install's phases (so the fetch's variance does not smear the short ones).
 */
function startWatched (p: Proc, anchor: string, at: () => void): void {
  let seen = false
  p.start({
    onLine: (line) => {
      if (!seen && line.includes(`"${anchor}"`)) { seen = true; at() }
    }
  })
}

/** Millisecond timestamps the hooks append to `hooks.log`: `pre-start`, `pre-end`, `post-start`, `post-end`. */
async function hookTimes (file: string): Promise<Record<string, number>> {
  const out: Record<string, number> = {}
  for (const l of (await readFile(file, 'utf8').catch(() => '')).split('\n')) {
    const [what, ms] = l.split(' ')
    if (what !== undefined && ms !== undefined) out[what] = Number(ms)
  }
  return out
}

describe('faults: kill -9 of an endpoint daemon', () => {
  let tpl = ''
  let v1Snap: Record<string, unknown> = {}
  let v2Snap: Record<string, unknown> = {}
  let v2Blobs = new Map<string, number>()
  let v2Bytes = 0
  let timing: Timing
  const hookLog = (): string => join(dir, 'hooks.log')

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'shoal-faults-kill-'))
    f = await startProcFleet(dir)
    const v1 = await makeTree(join(dir, 'v1'), 1, { binaryBytes: 100_000, textBytes: 50_000 })
    // ~1.5 MB in ~190 chunks; no delta blobs, so every byte of v2 is a blob of its own table.
    const v2 = await makeTree(join(dir, 'v2'), 2, { binaryBytes: 1_300_000, textBytes: 200_000 })
    v1Snap = await snapshot(v1)
    v2Snap = await snapshot(v2)
    await publishProc(f, v1, '1.0.0')
    // The template: an endpoint that installed v1, stopped cleanly.
    const t = await endpointProc(f, 'tpl')
    t.start()
    await waitPeerId(t)
    await until(async () => (await t.pkg())?.installed === '1.0.0', 30_000, 'v1 on the template endpoint')
    t.child?.kill('SIGTERM')
    await t.exit
    t.child = null
    tpl = join(dir, 'tpl')
    const stamp = (what: string): string => `echo "${what} $(date +%s%3N)" >> '${hookLog()}'`
    const pre = join(dir, 'pre.sh')
    const post = join(dir, 'post.sh')
    await writeFile(pre, `${stamp('pre-start')}\nsleep 0.2\n${stamp('pre-end')}\n`)
    await writeFile(post, `${stamp('post-start')}\nsleep 0.2\n${stamp('post-end')}\n`)
    const manifest = await publishProc(f, v2, '2.0.0', ['--preinstall', pre, '--postinstall', post, '--delta-releases', '0', '--min-chunk', '2KiB', '--avg-chunk', '8KiB', '--max-chunk', '32KiB'])
    v2Blobs = await manifestBlobs(manifest)
    v2Bytes = [...v2Blobs.values()].reduce((a, b) => a + b, 0)

    // Calibration: one full install of v2 from a copy of the template, phases timed from the log
    // line of the new head (the daemon's start is not a phase: nothing is written before it).
    const cal = await trialProc('cal')
    let t0 = 0
    let installedAt = 0
    let downloadedAt = 0
    // Date.now(), like the hooks' stamps
    cal.start({
      onLine: (line) => {
        const now = Date.now()
        if (t0 === 0 && line.includes('"new channel head"')) t0 = now
        if (line.includes('"release downloaded"')) downloadedAt = now
        if (line.includes('"release installed"')) installedAt = now
      }
    })
    await until(() => installedAt > 0, 60_000, 'calibration install')
    const h = await hookTimes(hookLog())
    const dl = downloadedAt - t0
    const rel = (k: string): number => Math.max(0, (h[k] ?? 0) - downloadedAt)
    // fetch: ms after the new head; the others: ms after the download ended
    timing = {
      fetch: [0, dl * 0.9],
      assemble: [0, rel('pre-start')],
      hooks: [rel('pre-start'), rel('post-end')],
      // the switch lies between the two hooks; a window a little wider than it, so kills land on both sides
      switch: [Math.max(0, rel('pre-end') - 15), rel('post-start') + 15],
      total: installedAt - t0
    }
    await cal.kill9()
    await rm(join(dir, 'cal'), { recursive: true, force: true })
    await rm(hookLog(), { force: true })
    console.log(`kill -9 calibration: ${v2Blobs.size} blobs, ${v2Bytes} bytes; windows (fetch: ms after the new head; others: ms after the download): ${JSON.stringify(timing)}`)
  }, 120_000)

  /** An endpoint whose state dir is a fresh copy of the template. */
  async function trialProc (name: string): Promise<Proc> {
    await cp(tpl, join(dir, name), { recursive: true, verbatimSymlinks: true })
    // wanRate stretches the fetch to a few hundred ms, so instants land in it
    return await endpointProc(f as ProcFleet, name, { wanRate: 4_000_000 })
  }

  it(`leaves v1 or v2, byte for byte, after each of ${TRIALS} kills; nothing verified is fetched again (seed ${SEED})`, async () => {
    const fleet = f as ProcFleet
    const rand = mulberry32(SEED)
    const rows: string[] = []
    const found: Record<string, number> = {}
    const t00 = Date.now()
    for (let i = 0; i < TRIALS; i++) {
      const phase: Phase = PHASES[i % PHASES.length] as Phase
      const [a, b] = timing[phase]
      const at = Math.round(a + rand() * Math.max(1, b - a))
      const name = `t${i}`
      const p = await trialProc(name)
      const stateDir = join(dir, name)
      const pdir = join(stateDir, 'apps', 'app')
      let timer: NodeJS.Timeout | undefined
      startWatched(p, phase === 'fetch' ? 'new channel head' : 'release downloaded', () => { timer = setTimeout(() => { p.child?.kill('SIGKILL') }, at) })
      const fallback = setTimeout(() => { p.child?.kill('SIGKILL') }, 30_000) // the anchor never came: fail below, do not hang
      await p.exit
      clearTimeout(timer)
      clearTimeout(fallback)
      p.child = null
      await new Promise(resolve => setTimeout(resolve, 100)) // hooks orphaned by the kill run out (0.2 s sleeps)

      // What the restart will find: the DB opens, the blobs it stored verified, the tree v1 or v2.
      const db = await StateDb.open(stateDir)
      const counted = (await db.counters.all())['bytes.seed'] ?? 0
      const rec = await db.releases.get('app@2.0.0')
      await db.close()
      const packs = await PackStore.open(stateDir)
      let heldBytes = 0
      let held = 0
      for (const [cid, size] of v2Blobs) if (await packs.has(cidFromHex(cid))) { held++; heldBytes += size }
      await packs.close()
      const inst = new Installer(join(stateDir, 'apps'))
      const r = await inst.recover('app')
      const cur = await inst.current('app')
      expect(['1.0.0', '2.0.0'], `trial ${i}: current after recover`).toContain(cur)
      expect(await snapshot(join(pdir, 'current') + '/'), `trial ${i}: current = ${cur}`).toEqual(cur === '1.0.0' ? v1Snap : v2Snap)
      for (const v of await inst.versions('app')) expect(await snapshot(join(pdir, 'versions', v)), `trial ${i}: versions/${v}`).toEqual(v === '1.0.0' ? v1Snap : v2Snap)
      expect((await readdir(pdir)).filter(x => x !== 'versions' && x !== 'current'), `trial ${i}: leftovers`).toEqual([])
      const what = rec === null ? 'before the release was recorded' : `${rec.state}, ${held}/${v2Blobs.size} blobs held, current ${cur}${r.interrupted !== undefined ? ', postinstall interrupted' : ''}${r.removed.length > 0 ? `, removed ${r.removed.join(' ')}` : ''}`
      // what the kill hit, read off what it left (docs/install.md, "What recover(package) does")
      const removed = r.removed.join(' ')
      const kind = rec === null
        ? 'before the release was recorded'
        : rec.state === 'downloading'
          ? 'fetch'
          : rec.state === 'installed'
            ? 'after the install'
            : r.interrupted !== undefined
              ? 'switched, postinstall not confirmed: rolled back'
              : removed.includes('.staging-')
                ? 'assemble: staging tree removed'
                : removed.includes('versions/2.0.0')
                  ? 'tree renamed, marker not written: removed'
                  : removed.includes('shoal-hook-')
                    ? 'preinstall running: v2 complete, kept'
                    : removed.includes('pending.json')
                      ? 'journal being written'
                      : 'installing, nothing to undo'
      found[kind] = (found[kind] ?? 0) + 1

      const servedBefore = (await fleet.seed.status())?.bytes.served ?? 0
      p.start()
      await until(async () => (await p.pkg())?.installed === '2.0.0', 60_000, `trial ${i}: v2 after the restart`)
      const st = await p.status()
      await p.kill9()
      const servedAfter = (await fleet.seed.status())?.bytes.served ?? 0
      expect(await snapshot(join(pdir, 'current') + '/'), `trial ${i}: v2 after the restart`).toEqual(v2Snap)
      // Nothing stored before the kill was fetched again: after it, exactly the blobs it lacked.
      const refetch = (st?.bytes.seed ?? 0) - counted
      expect(refetch, `trial ${i}: bytes fetched after the restart`).toBe(v2Bytes - heldBytes)
      expect(servedAfter - servedBefore, `trial ${i}: bytes the seed served after the restart`).toBe(v2Bytes - heldBytes)
      rows.push(`${String(i).padStart(2)} ${phase.padEnd(8)} +${String(at).padStart(4)} ms: ${what}; then fetched ${refetch} B`)
      await rm(stateDir, { recursive: true, force: true })
    }
    console.log(`kill -9 trials (seed ${SEED}, ${TRIALS} trials, ${((Date.now() - t00) / 1000).toFixed(1)} s):\n  ${rows.join('\n  ')}\n  found at the kill: ${JSON.stringify(found)}`)
  }, 30_000 + TRIALS * 20_000)
})
