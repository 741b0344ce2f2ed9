// Attacks of issue 7 mounted against real daemons on loopback (one process, real libp2p, LevelDB,
// installs). Only attacks whose code is on main live here; the rest are listed in docs/security.md.
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { readdir, readFile, writeFile } from 'node:fs/promises'
import { afterEach, describe, expect, it } from 'vitest'
import { loadHead, storeHead } from '../../src/daemon/announce.js'
import type { Daemon } from '../../src/daemon/daemon.js'
import { snapshot } from '../helpers/tree.js'
import { Fleet, installedVersion, makeTree, until } from './helpers.js'

let fleet: Fleet | undefined
afterEach(async () => { await fleet?.cleanup(); fleet = undefined })

/** Every regular file under `dir` (LevelDB tables and logs, blobs, keys…) whose bytes contain one of `needles`. */
async function filesContaining (dir: string, needles: readonly Buffer[]): Promise<string[]> {
  const hits: string[] = []
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (!e.isFile()) continue
    const path = join(e.parentPath, e.name)
    const bytes = await readFile(path)
    if (needles.some(n => bytes.includes(n))) hits.push(path)
  }
  return hits
}

describe('outsiders and fleet peers without the content key', () => {
  it('the seed holds no plaintext of a published file, nor its name: its whole state dir is searched', async () => {
    fleet = await Fleet.create('attack-seed-plaintext')
    const seed = await fleet.startSeed()
    const ep = await fleet.startEndpoint('e1')
    const tree = await makeTree(join(fleet.dir, 'src'), 1)
    // a marker unlikely anywhere by chance, in a file's contents and in a file's name
    const marker = `shoal-plaintext-marker-${randomBytes(16).toString('hex')}`
    const fileName = `secret-${randomBytes(8).toString('hex')}.txt`
    await writeFile(join(tree, 'lib', fileName), `config\n${marker}\nend\n`)
    await writeFile(join(tree, 'lib', 'plain.txt'), `${marker}\n`.repeat(3))
    const p = await fleet.publish(tree, '1.0.0')
    await fleet.push(p.manifestPath)
    await until(async () => await installedVersion(ep) === '1.0.0', 60_000, 'v1 installed')

    const needles = [Buffer.from(marker), Buffer.from(fileName)]
    // the search can find them: the endpoint, which holds the content key, has both on disk
    expect((await filesContaining(ep.cfg.stateDir, needles)).length).toBeGreaterThan(0)
    // the seed has every blob and the manifest, yet neither the marker nor the file name
    expect((await seed.status()).role).toBe('seed')
    const seedFiles = await readdir(seed.cfg.stateDir, { recursive: true })
    expect(seedFiles.some(f => f.endsWith('.pack'))).toBe(true)
    expect(await filesContaining(seed.cfg.stateDir, needles)).toEqual([])
  }, 120_000)
})

/** A seed and one endpoint with v1 then v2 installed; returns the head the seed served for v1. */
async function twoReleases (name: string, endpointClock?: () => Date): Promise<{ f: Fleet, seed: Daemon, ep: Daemon, v2dir: string, headV1: Uint8Array }> {
  const f = fleet = await Fleet.create(name)
  const seed = await f.startSeed()
  const ep = await f.startEndpoint('e1', {}, endpointClock === undefined ? {} : { now: endpointClock })
  const p1 = await f.publish(await makeTree(join(f.dir, 'src-v1'), 1), '1.0.0')
  await f.push(p1.manifestPath)
  await until(async () => await installedVersion(ep) === '1.0.0', 60_000, 'v1 installed')
  const headV1 = (await loadHead(seed.db, 'stable'))!
  const v2dir = await makeTree(join(f.dir, 'src-v2'), 2)
  const p2 = await f.publish(v2dir, '2.0.0')
  await f.push(p2.manifestPath)
  await until(async () => await installedVersion(ep) === '2.0.0', 60_000, 'v2 installed')
  return { f, seed, ep, v2dir, headV1 }
}

const headStatus = async (d: Daemon) => (await d.status()).heads.find(h => h.channel === 'stable')

describe('a seed that lies about the channel head', () => {
  it('rollback: the seed replays the older, validly signed head; the endpoint refuses it, says so, and keeps v2', async () => {
    const { seed, ep, v2dir, headV1 } = await twoReleases('attack-rollback')
    expect((await headStatus(ep))?.seq).toBe(2)
    await storeHead(seed.db, 'stable', headV1) // what a compromised seed (or a replaying MITM) serves
    await until(async () => (await headStatus(ep))?.error?.includes('ERR_ROLLBACK') === true, 30_000, 'rollback reported')
    const h = await headStatus(ep)
    expect(h).toMatchObject({ seq: 2, stale: false })
    expect(h?.error).toMatch(/sequence|older|seq/i)
    expect(await installedVersion(ep)).toBe('2.0.0')
    expect(await snapshot(join(ep.cfg.installRoot, 'app', 'current'))).toEqual(await snapshot(v2dir))
  }, 180_000)

  it('indefinite freeze: the head the seed serves has expired for the endpoint; it reports stale and keeps v2', async () => {
    let skew = 0
    const { seed, ep, v2dir } = await twoReleases('attack-freeze', () => new Date(Date.now() + skew))
    const served = (await loadHead(seed.db, 'stable'))!
    const expires = Date.parse((JSON.parse(Buffer.from(served).toString()) as { signed: { expires: string } }).signed.expires)
    // the endpoint's clock moves past the head's expiry (+ grace) while the seed keeps serving it
    skew = expires - Date.now() + (ep.cfg.expiryGrace + 60) * 1000
    await until(async () => (await headStatus(ep))?.stale === true && (await headStatus(ep))?.error?.includes('ERR_EXPIRED') === true, 30_000, 'stale head reported')
    expect(await installedVersion(ep)).toBe('2.0.0')
    expect(await snapshot(join(ep.cfg.installRoot, 'app', 'current'))).toEqual(await snapshot(v2dir))
  }, 180_000)
})

describe('a seed that serves the wrong software', () => {
  it('another validly signed manifest (another package) under the id the head names is refused; nothing is installed', async () => {
    const f = fleet = await Fleet.create('attack-wrong-package')
    const seed = await f.startSeed()
    let ep = await f.startEndpoint('e1')
    const v1dir = await makeTree(join(f.dir, 'src-v1'), 1)
    await f.push((await f.publish(v1dir, '1.0.0')).manifestPath)
    await until(async () => await installedVersion(ep) === '1.0.0', 60_000, 'v1 installed')
    // the endpoint is away while v2 is published, and the seed swaps v2's manifest for a valid
    // manifest of another package (same publisher keys, same channel) before it comes back
    const cfg = ep.cfg
    await f.stopDaemon(ep)
    const p2 = await f.publish(await makeTree(join(f.dir, 'src-v2'), 2), '2.0.0')
    await f.push(p2.manifestPath)
    const other = await f.publish(await makeTree(join(f.dir, 'src-tool'), 3), '9.0.0', { package: 'tool' })
    await seed.db.manifests.put(p2.manifestId, await readFile(other.manifestPath))
    ep = await f.start(cfg)
    await until(async () => (await ep.status()).packages.some(p => p.name === 'app' && p.error !== undefined), 30_000, 'refusal reported')
    const app = (await ep.status()).packages.find(p => p.name === 'app')!
    expect(app.installed).toBe('1.0.0')
    expect(app.error?.code).toMatch(/ERR_MIX_AND_MATCH|ERR_WRONG_PACKAGE/)
    expect(await snapshot(join(ep.cfg.installRoot, 'app', 'current'))).toEqual(await snapshot(v1dir))
    expect(await readdir(ep.cfg.installRoot)).toEqual(['app'])
  }, 180_000)
})
