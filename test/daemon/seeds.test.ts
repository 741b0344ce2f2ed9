// Issue 8: several seeds. A release published to one seed reaches the other (SeedSync), endpoints
// list both and fail over for heads, manifests and blobs when one stops mid-rollout.
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { decodeHead } from '../../src/core/head.js'
import { decodeManifest } from '../../src/core/manifest.js'
import { cidFromHex } from '../../src/core/seal.js'
import { loadHead, patchKey } from '../../src/daemon/announce.js'
import type { Daemon } from '../../src/daemon/daemon.js'
import { snapshot } from '../helpers/tree.js'
import { Fleet, installedVersion, makeTree, until } from './helpers.js'

let fleet: Fleet | undefined
afterEach(async () => { await fleet?.cleanup(); fleet = undefined })

async function headVersion (seed: Daemon): Promise<string | undefined> {
  const bytes = await loadHead(seed.db, 'stable')
  return bytes === null ? undefined : decodeHead(bytes).signed.packages.app?.version
}

describe('several seeds', () => {
  it('a publish to one seed reaches the other; with one stopped mid-rollout every endpoint still finishes', async () => {
    fleet = await Fleet.create('seeds')
    const a = await fleet.startSeed()
    const aAddr = fleet.seedAddr
    const b = await fleet.start(fleet.config('seed-b', { role: 'seed', enroll: join(fleet.keysDir, 'seed-enroll.json'), seeds: [aAddr], pollInterval: 500 }))
    const bAddr = b.node.getMultiaddrs()[0]!.toString()
    // a modest WAN budget so the rollout takes a few seconds and the stop lands in the middle
    const eps: Daemon[] = []
    for (let i = 1; i <= 3; i++) eps.push(await fleet.startEndpoint(`e${i}`, { seeds: [aAddr, bAddr], pollInterval: 500, wanRate: 400_000 }))

    const src1 = await makeTree(join(fleet.dir, 'src-1'), 1, { binaryBytes: 300_000 })
    const p1 = await fleet.publish(src1, '1.0.0')
    await fleet.push(p1.manifestPath)
    await until(async () => await headVersion(b) === '1.0.0', 30_000, 'seed b adopted the head of 1.0.0')
    for (const e of eps) await until(async () => await installedVersion(e) === '1.0.0', 60_000, '1.0.0 installed')
    // seed b holds every blob it serves: it pulled them from seed a
    expect((await b.status()).bytes.seed).toBe(p1.blobBytes)
    for (const c of decodeManifest(await b.db.manifests.get(p1.manifestId) as Uint8Array).signed.chunks) {
      expect(await b.blobs.has(cidFromHex(c.cid))).toBe(true)
    }

    const src2 = await makeTree(join(fleet.dir, 'src-2'), 2, { binaryBytes: 3_000_000 })
    const p2 = await fleet.publish(src2, '2.0.0')
    // endpoints hold off until seed b has 2.0.0 too, so the rollout below cannot finish from a alone first
    for (const e of eps) e.endpoint!.paused = true
    await fleet.push(p2.manifestPath)
    await until(async () => await headVersion(b) === '2.0.0', 30_000, 'seed b adopted the head of 2.0.0')
    // with the payload patch the publisher uploaded to seed a, byte for byte (seeds cannot make one)
    const patch = await a.db.manifestPatches.get(patchKey(p2.manifestId, p1.manifestId))
    expect(patch).not.toBeNull()
    expect(Buffer.from((await b.db.manifestPatches.get(patchKey(p2.manifestId, p1.manifestId)))!).equals(patch!)).toBe(true)
    for (const e of eps) { e.endpoint!.paused = false; e.endpoint!.kick() }
    // stop seed a (the one published to) once the rollout is under way: a download of 2.0.0 started, not finished
    const downloading = async (e: Daemon): Promise<boolean> => {
      const pkg = (await e.status()).packages.find(p => p.name === 'app')
      const prog = pkg?.progress
      return pkg?.target === '2.0.0' && prog !== undefined && prog.blobs > 0 && prog.blobs < prog.blobsTotal
    }
    await until(async () => (await Promise.all(eps.map(downloading))).some(Boolean), 30_000, 'a download of 2.0.0 in progress')
    await fleet.stopDaemon(a)
    for (const e of eps) await until(async () => await installedVersion(e) === '2.0.0', 90_000, '2.0.0 installed after seed a stopped')
    for (const e of eps) expect(await snapshot(join(e.cfg.installRoot, 'app', 'current'))).toEqual(await snapshot(src2))
    // each endpoint fetched exactly what a holder of 1.0.0 needs for 2.0.0 (deltas where it holds
    // their base), from one seed or the other
    for (const e of eps) expect((await e.status()).bytes.seed).toBe(p1.blobBytes + p2.fetchBytesFromPrevious)
    // the rest came from seed b
    expect(b.serverStats.bytesServed).toBeGreaterThan(0)
  }, 180_000)

  it('conflicting heads signed by two seeds converge on a merged head', async () => {
    fleet = await Fleet.create('seeds-merge')
    const a = await fleet.startSeed()
    const aAddr = fleet.seedAddr
    const src1 = await makeTree(join(fleet.dir, 'src-1'), 1, { binaryBytes: 100_000 })
    const p1 = await fleet.publish(src1, '1.0.0')
    await fleet.push(p1.manifestPath)
    // seed b starts alone and gets another package published to it: both hold seq 1 for "stable"
    const b = await fleet.start(fleet.config('seed-b', { role: 'seed', enroll: join(fleet.keysDir, 'seed-enroll.json'), pollInterval: 500 }))
    const other = await fleet.publish(src1, '1.0.0', { package: 'other' })
    fleet.seed = b
    await fleet.push(other.manifestPath)
    fleet.seed = a
    // now b learns of a: a conflict at seq 1, each with a package the other lacks
    await fleet.stopDaemon(b)
    const b2 = await fleet.start(fleet.config('seed-b', { role: 'seed', enroll: join(fleet.keysDir, 'seed-enroll.json'), seeds: [aAddr], pollInterval: 500 }))
    const both = async (d: Daemon): Promise<string | null> => {
      const bytes = await loadHead(d.db, 'stable')
      if (bytes === null) return null
      const pk = decodeHead(bytes).signed.packages
      return pk.app !== undefined && pk.other !== undefined ? Buffer.from(bytes).toString('base64') : null
    }
    await until(async () => { const x = await both(a); return x !== null && x === await both(b2) }, 30_000, 'both seeds on one merged head')
    const merged = decodeHead(await loadHead(a.db, 'stable') as Uint8Array).signed
    expect(merged.seq).toBeGreaterThan(1)
    expect(await a.db.manifests.get(other.manifestId)).not.toBeNull()
    expect(await b2.db.manifests.get(p1.manifestId)).not.toBeNull()
  }, 120_000)
})
