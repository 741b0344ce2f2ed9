// Issue 4's loopback integration: sites by label, one WAN copy per site, a lying peer banned.
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { registerBlobsProtocol } from '../../src/net/blobs.js'
import { BLOBS_PROTOCOL } from '../../src/net/constants.js'
import { snapshot } from '../helpers/tree.js'
import { Fleet, installedVersion, makeTree, until } from './helpers.js'
import type { Daemon } from '../../src/daemon/daemon.js'

let fleet: Fleet | undefined
afterEach(async () => { await fleet?.cleanup(); fleet = undefined })

async function seedBytes (eps: Daemon[]): Promise<number[]> {
  return await Promise.all(eps.map(async e => (await e.status()).bytes.seed))
}

describe('LAN swarm on loopback', () => {
  it('two sites of three: each changed byte crosses the "WAN" about once per site', async () => {
    fleet = await Fleet.create('swarm')
    await fleet.startSeed()
    const sites: Record<string, Daemon[]> = { s1: [], s2: [] }
    for (const s of Object.keys(sites)) {
      for (let i = 1; i <= 3; i++) sites[s]!.push(await fleet.startEndpoint(`${s}-e${i}`, { site: s, pollInterval: 500 }))
    }
    const all = Object.values(sites).flat()
    // let the seed's directory introduce label mates to each other
    await until(async () => all.every(e => e.endpoint!.site.members.size === 2), 20_000, 'site members introduced')

    for (const [n, version] of [[1, '1.0.0'], [2, '2.0.0']] as const) {
      const before = Object.fromEntries(await Promise.all(Object.entries(sites).map(async ([s, eps]) => [s, await seedBytes(eps)] as const)))
      const src = await makeTree(join(fleet.dir, `src-${n}`), n, { binaryBytes: 1_500_000 })
      const p = await fleet.publish(src, version)
      await fleet.push(p.manifestPath)
      for (const e of all) await until(async () => await installedVersion(e) === version, 60_000, `${version} installed`)
      for (const [s, eps] of Object.entries(sites)) {
        const after = await seedBytes(eps)
        const wan = after.reduce((sum, b, i) => sum + b - before[s]![i]!, 0)
        // what one holder of the previous release fetches (delta blobs for 2.0.0; every blob for 1.0.0), once per site
        expect(wan, `${s} WAN bytes for ${version}`).toBeGreaterThanOrEqual(p.fetchBytesFromPrevious)
        expect(wan, `${s} WAN bytes for ${version}`).toBeLessThanOrEqual(1.05 * p.fetchBytesFromPrevious)
      }
      const lan = (await Promise.all(all.map(async e => (await e.status()).bytes.lan))).reduce((a, b) => a + b, 0)
      expect(lan).toBeGreaterThan(0)
      for (const e of all) expect(await snapshot(join(e.cfg.installRoot, 'app', 'current'))).toEqual(await snapshot(src))
    }
  }, 120_000)

  it('a peer serving corrupted blobs is banned and every install is still correct', async () => {
    fleet = await Fleet.create('liar')
    await fleet.startSeed()
    const liar = await fleet.startEndpoint('liar', { site: 'x', pollInterval: 500 })
    const src = await makeTree(join(fleet.dir, 'src'), 1, { binaryBytes: 800_000 })
    const p = await fleet.publish(src, '1.0.0')
    await fleet.push(p.manifestPath)
    await until(async () => await installedVersion(liar) === '1.0.0')
    // from now on the liar flips a bit in every blob it serves
    await liar.node.unhandle(BLOBS_PROTOCOL)
    await registerBlobsProtocol(liar.node, {
      get: async cid => {
        const b = await liar.blobs.get(cid)
        if (b === null) return null
        const bad = Uint8Array.from(b); bad[bad.length - 1]! ^= 1
        return bad
      }
    })
    const honest = [await fleet.startEndpoint('a', { site: 'x', pollInterval: 500 }), await fleet.startEndpoint('b', { site: 'x', pollInterval: 500 })]
    for (const e of honest) await until(async () => await installedVersion(e) === '1.0.0', 90_000, 'honest endpoints installed')
    for (const e of honest) {
      expect(await snapshot(join(e.cfg.installRoot, 'app', 'current'))).toEqual(await snapshot(src))
    }
    const banned = honest.filter(e => e.endpoint!.scores.isBanned(liar.node.peerId.toString()))
    expect(banned.length).toBeGreaterThan(0)
    const metrics = await Promise.all(honest.map(async e => await e.metrics.text()))
    expect(metrics.some(m => /shoal_bad_blobs_total\{source="lan",role="endpoint"\} [1-9]/.test(m))).toBe(true)
  }, 120_000)
})
