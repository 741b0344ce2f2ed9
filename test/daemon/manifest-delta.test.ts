// Manifests cross as deltas against the one an endpoint holds (docs/protocol.md §6.5), and a
// delta is only a transport: a site member serving a tampered one is refused and the install is
// still the release the head names.
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { manifestId } from '../../src/core/manifest.js'
import { Announce } from '../../src/daemon/announce.js'
import type { Daemon } from '../../src/daemon/daemon.js'
import { ANNOUNCE_PROTOCOL } from '../../src/net/constants.js'
import type { StateDb } from '../../src/store/state-db.js'
import { snapshot } from '../helpers/tree.js'
import { Fleet, installedVersion, makeTree, until } from './helpers.js'

let fleet: Fleet | undefined
afterEach(async () => { await fleet?.cleanup(); fleet = undefined })

/** `deltas`: manifests rebuilt from a plain delta or (since the publisher uploads payload patches) a patched one. */
async function manifests (e: Daemon): Promise<{ wire: number, deltas: number, refused: number }> {
  const m = (await e.status()).manifests
  return { wire: m.seed + m.lan + m.origin, deltas: m.deltas + m.patches, refused: m.refused }
}

describe('manifest deltas between daemons', () => {
  it("v2's manifest crosses as a delta; a lying member's tampered delta is refused and the install is correct", async () => {
    fleet = await Fleet.create('mdelta')
    await fleet.startSeed()
    const liar = await fleet.startEndpoint('liar', { site: 'x', pollInterval: 300 })
    const honest = await fleet.startEndpoint('honest', { site: 'x', pollInterval: 300 })
    await until(async () => honest.endpoint!.site.members.size === 1 && liar.endpoint!.site.members.size === 1, 15_000, 'site members introduced')
    const src1 = await makeTree(join(fleet.dir, 'src-1'), 1, { binaryBytes: 600_000 })
    await fleet.push((await fleet.publish(src1, '1.0.0')).manifestPath)
    for (const e of [liar, honest]) await until(async () => await installedVersion(e) === '1.0.0', 30_000, '1.0.0 installed')
    expect((await manifests(honest)).deltas).toBe(0) // nothing to take a delta against

    // From now on the liar serves a forged v2 manifest, as a delta when asked for one.
    const src2 = await makeTree(join(fleet.dir, 'src-2'), 2, { binaryBytes: 600_000 })
    const p2 = await fleet.publish(src2, '2.0.0')
    const v2 = await readFile(p2.manifestPath)
    const v2id = manifestId(v2)
    const forged = Buffer.from(v2); forged[forged.length - 40] = forged[forged.length - 40] === 0x41 ? 0x42 : 0x41
    const db = liar.db
    const lyingDb = new Proxy(db, {
      get: (t, k) => k === 'manifests'
        ? { get: async (id: string) => id === v2id ? forged : await t.manifests.get(id) }
        : Reflect.get(t, k) as unknown
    }) as StateDb
    await liar.node.unhandle(ANNOUNCE_PROTOCOL)
    const lying = new Announce(liar.node, lyingDb)
    await lying.start()

    honest.endpoint!.paused = true
    const before = await manifests(liar)
    await fleet.push(p2.manifestPath)
    await until(async () => await installedVersion(liar) === '2.0.0', 30_000, 'liar installed 2.0.0')
    const viaSeed = await manifests(liar)
    expect(viaSeed.deltas - before.deltas).toBe(1)
    // the shared chunk table costs almost nothing; what is left is mostly the sealed payload (random per release)
    expect(viaSeed.wire - before.wire).toBeLessThan(0.7 * v2.length)
    expect(viaSeed.wire - before.wire).toBeGreaterThan(0)

    // The honest endpoint asks the member that holds v2 first: it gets the forged delta, refuses it.
    await until(async () => [...honest.endpoint!.site.members.values()].some(m => m.haves.has(v2id)), 15_000, 'the liar announces 2.0.0')
    const h0 = await manifests(honest)
    honest.endpoint!.paused = false
    await until(async () => await installedVersion(honest) === '2.0.0', 30_000, 'honest installed 2.0.0')
    const h1 = await manifests(honest)
    expect(h1.refused - h0.refused).toBeGreaterThanOrEqual(1)
    expect(h1.deltas - h0.deltas).toBe(1) // then the seed's delta, which rebuilt the true bytes
    expect(Buffer.from((await honest.db.manifests.get(v2id))!).equals(v2)).toBe(true)
    expect(await snapshot(join(honest.cfg.installRoot, 'app', 'current'))).toEqual(await snapshot(src2))
    await lying.stop()
  }, 60_000)
})
