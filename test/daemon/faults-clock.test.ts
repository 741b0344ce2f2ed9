// Issue 7, faults: clock skew on an endpoint. Real endpoint processes whose clock is shifted with
// the test-only SHOAL_TEST_CLOCK_SKEW (docs/daemon.md, "Clock") against a seed whose heads live
// 2 h (the head of a release just published has all of it left). An endpoint 1 h ahead or 1 h
// behind installs; one 3 h ahead sees the head expired (beyond the 5 min grace), says so in
// /status and installs nothing — until its clock is right again.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { snapshot } from '../helpers/tree.js'
import { makeTree, until } from './helpers.js'
import { endpointProc, publishProc, startProcFleet, waitPeerId, type ProcFleet } from './process-helpers.js'

let f: ProcFleet | undefined
let dir = ''
afterAll(async () => {
  for (const p of f?.procs ?? []) await p.kill9()
  if (dir !== '') await rm(dir, { recursive: true, force: true, maxRetries: 5 })
})

describe('faults: clock skew on an endpoint', () => {
  it('± 1 h installs; 3 h ahead reports the head stale and installs nothing until the clock is right', async () => {
    dir = await mkdtemp(join(tmpdir(), 'shoal-faults-clock-'))
    const fleet = f = await startProcFleet(dir, { headLifetime: 2 * 3600_000 })
    const src = await makeTree(join(dir, 'v1'), 1, { binaryBytes: 50_000, textBytes: 20_000 })
    await publishProc(fleet, src, '1.0.0')
    const skews = { ahead: '+1h', behind: '-1h', far: '+3h' }
    const eps = await Promise.all(Object.keys(skews).map(async n => await endpointProc(fleet, n)))
    eps.forEach((e, i) => { e.start({ env: { SHOAL_TEST_CLOCK_SKEW: Object.values(skews)[i] } }) })
    for (const e of eps) await waitPeerId(e)
    const [ahead, behind, far] = eps as [typeof eps[0], typeof eps[0], typeof eps[0]]
    await until(async () => (await ahead.pkg())?.installed === '1.0.0' && (await behind.pkg())?.installed === '1.0.0', 30_000, '±1 h endpoints to install')
    const want = await snapshot(src)
    for (const e of [ahead, behind]) expect(await snapshot(join(dir, e.name, 'apps', 'app', 'current'))).toEqual(want)

    // 3 h ahead: the head (2 h lifetime) is past expiry + grace in its eyes.
    let head: { stale: boolean, error?: string } | undefined
    await until(async () => { head = (await far.status())?.heads?.[0]; return head?.stale === true }, 15_000, 'the far endpoint to report a stale head')
    expect(head?.error).toMatch(/expired/)
    expect(head?.error).toMatch(/ERR_/)
    expect((await far.pkg())?.installed ?? null).toBe(null)
    expect(far.tail(400)).toContain('channel head is stale')
    expect(far.tail(400)).toContain('SHOAL_TEST_CLOCK_SKEW is set')

    // Its clock put right (restart without the skew), it installs.
    await far.kill9()
    far.start()
    await until(async () => (await far.pkg())?.installed === '1.0.0', 30_000, 'the far endpoint to install with a right clock')
    expect((await far.status())?.heads?.[0]?.stale).toBe(false)
  }, 90_000)
})
