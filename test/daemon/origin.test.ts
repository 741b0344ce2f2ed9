// Issue 8: static-HTTP origins. A real nginx serves the repository `publish --repo` writes, as is;
// endpoints use it as a WAN source beside (or instead of) seeds, and treat it as untrusted.
import { cp, open, readdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { pino } from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { loadHead } from '../../src/daemon/announce.js'
import type { Daemon } from '../../src/daemon/daemon.js'
import { writeRepoHead } from '../../src/publish/repo-head.js'
import type { PublishResult } from '../../src/publish/publisher.js'
import { Nginx, nginxBinary } from '../helpers/nginx.js'
import { snapshot } from '../helpers/tree.js'
import { Fleet, installedVersion, makeTree, until } from './helpers.js'

const NGINX = nginxBinary()
if (NGINX === null) console.log('origin tests skipped: no nginx binary (apt-get install -y nginx; .ci/run installs it)')

let fleet: Fleet | undefined
let nginx: Nginx | undefined
afterEach(async () => {
  await fleet?.cleanup(); fleet = undefined
  await nginx?.stop(); nginx = undefined
})

/** Publishes into the fleet's repo and signs its channel head there, as `shoal publish --repo` does. */
async function publishToRepo (f: Fleet, src: string, version: string): Promise<PublishResult> {
  const p = await f.publish(src, version)
  await writeRepoHead({
    repoDir: f.repo, channel: 'stable', onlineKey: f.keys.onlineKey!, root: f.keys.root, lifetimeMs: 86400_000, manifestBytes: await readFile(p.manifestPath)
  })
  return p
}

async function startOriginEndpoint (f: Fleet, name: string, origins: string[], raw: Record<string, unknown> = {}, logger?: pino.Logger): Promise<Daemon> {
  return await f.start(f.config(name, {
    role: 'endpoint', enroll: join(f.keysDir, 'enroll.json'), seeds: [], origins, pollInterval: 500, hookTimeout: 20_000, ...raw
  }), logger !== undefined ? { logger } : {})
}

/** A logger keeping warn-and-above records in memory. */
function captureLogger (): { logger: pino.Logger, records: Array<Record<string, unknown>> } {
  const records: Array<Record<string, unknown>> = []
  const logger = pino({ level: 'warn' }, { write: (line: string) => { records.push(JSON.parse(line) as Record<string, unknown>) } })
  return { logger, records }
}

async function blobPaths (repo: string): Promise<string[]> {
  const out: string[] = []
  for (const d of await readdir(join(repo, 'blobs'))) {
    if (!/^[0-9a-f]{2}$/.test(d)) continue
    for (const n of await readdir(join(repo, 'blobs', d))) if (/^[0-9a-f]{62}$/.test(n)) out.push(join(repo, 'blobs', d, n))
  }
  return out
}

async function flipLastByte (path: string): Promise<void> {
  const fh = await open(path, 'r+')
  try {
    const { size } = await fh.stat()
    const b = Buffer.alloc(1)
    await fh.read(b, 0, 1, size - 1)
    b[0] = b[0]! ^ 0xff
    await fh.write(b, 0, 1, size - 1)
  } finally { await fh.close() }
}

describe.skipIf(NGINX === null)('static-HTTP origin (real nginx)', () => {
  it('endpoints with no seed at all install v1 and v2 from the origin, over keep-alive', async () => {
    fleet = await Fleet.create('origin')
    const src1 = await makeTree(join(fleet.dir, 'src-1'), 1, { binaryBytes: 1_000_000 })
    const p1 = await publishToRepo(fleet, src1, '1.0.0')
    nginx = await Nginx.start({ repo: fleet.repo })
    const eps = [
      await startOriginEndpoint(fleet, 'e1', [nginx.url('repo')]),
      await startOriginEndpoint(fleet, 'e2', [nginx.url('repo')])
    ]
    let before = eps.map(() => 0)
    const src2 = await makeTree(join(fleet.dir, 'src-2'), 2, { binaryBytes: 1_000_000 })
    for (const [version, src, publish] of [['1.0.0', src1, async () => p1], ['2.0.0', src2, async () => await publishToRepo(fleet!, src2, '2.0.0')]] as const) {
      const p = await publish()
      for (const e of eps) await until(async () => await installedVersion(e) === version, 60_000, `${version} installed from the origin`)
      for (const [i, e] of eps.entries()) {
        const s = await e.status()
        expect(await snapshot(join(e.cfg.installRoot, 'app', 'current'))).toEqual(await snapshot(src))
        // no site: each endpoint fetches exactly what a holder of the previous release needs (delta
        // blobs where it holds their base, full blobs otherwise), all from the origin
        expect(s.bytes.origin - before[i]!, `${e.cfg.stateDir} origin bytes for ${version}`).toBe(p.fetchBytesFromPrevious)
        expect(s.bytes.seed).toBe(0)
        expect(s.heads[0]?.stale).toBe(false)
      }
      before = await Promise.all(eps.map(async e => (await e.status()).bytes.origin))
    }
    expect(await eps[0]!.metrics.text()).toMatch(/shoal_bytes_received_total\{source="origin",role="endpoint"\} [1-9]/)
    const log = await nginx.accessLog()
    const blobGets = log.filter(l => l.path.startsWith('/repo/blobs/'))
    expect(blobGets.every(l => l.status === 200)).toBe(true)
    // keep-alive: far fewer connections than blob requests
    const connections = new Set(blobGets.map(l => l.connection)).size
    expect(blobGets.length).toBeGreaterThan(20)
    expect(connections).toBeLessThan(blobGets.length / 2)
    expect(Math.max(...blobGets.map(l => l.request))).toBeGreaterThan(2)
  }, 120_000)

  it('a tampered blob and a forged head on one origin are refused; the install comes from the next origin, byte-identical', async () => {
    fleet = await Fleet.create('origin-bad')
    const src = await makeTree(join(fleet.dir, 'src'), 1, { binaryBytes: 600_000 })
    await publishToRepo(fleet, src, '1.0.0')
    const bad = join(fleet.dir, 'bad-repo')
    await cp(fleet.repo, bad, { recursive: true })
    const blobs = await blobPaths(bad)
    for (const b of blobs) await flipLastByte(b) // every blob: whichever is asked first is wrong
    const headPath = join(bad, 'heads', 'stable.json')
    const head = await readFile(headPath, 'utf8')
    const at = head.indexOf('"sig":"') + 20
    await writeFile(headPath, head.slice(0, at) + (head[at] === 'A' ? 'B' : 'A') + head.slice(at + 1))
    nginx = await Nginx.start({ bad, good: fleet.repo })
    const { logger, records } = captureLogger()
    const e = await startOriginEndpoint(fleet, 'e', [nginx.url('bad'), nginx.url('good')], {}, logger)
    await until(async () => await installedVersion(e) === '1.0.0', 60_000, 'installed despite the tampered origin')
    expect(await snapshot(join(e.cfg.installRoot, 'app', 'current'))).toEqual(await snapshot(src))
    // head polls rotate over the sources: the forged head gets its turn and is refused, logged
    await until(() => records.some(r => r.msg === 'channel head refused' && r.source === nginx!.url('bad')), 20_000, 'forged head refused')
    const refusal = records.find(r => r.msg === 'channel head refused' && r.source === nginx!.url('bad'))
    expect((refusal?.err as { code?: string }).code).toBe('ERR_SIGNATURE_THRESHOLD')
    expect(records.some(r => r.msg?.toString().includes('failed its cid') === true && r.source === nginx!.url('bad'))).toBe(true)
    expect(await e.metrics.text()).toMatch(/shoal_bad_blobs_total\{source="origin",role="endpoint"\} [1-9]/)
    // a blob the bad origin served was then asked of the good one
    const log = await nginx.accessLog()
    const badGets = log.filter(l => l.path.startsWith('/bad/blobs/')).map(l => l.path.slice('/bad/'.length))
    const goodGets = new Set(log.filter(l => l.path.startsWith('/good/blobs/')).map(l => l.path.slice('/good/'.length)))
    expect(badGets.length).toBeGreaterThan(0)
    expect(badGets.some(p => goodGets.has(p))).toBe(true)
    expect((await e.status()).heads[0]?.error).toBeUndefined()
  }, 120_000)

  it('a stale origin (an older, validly signed head) is refused as a rollback and logged; the fresh one wins', async () => {
    fleet = await Fleet.create('origin-stale')
    const src1 = await makeTree(join(fleet.dir, 'src-1'), 1, { binaryBytes: 200_000 })
    await publishToRepo(fleet, src1, '1.0.0')
    const stale = join(fleet.dir, 'stale-repo')
    await cp(fleet.repo, stale, { recursive: true }) // a mirror that stopped syncing after 1.0.0
    const src2 = await makeTree(join(fleet.dir, 'src-2'), 2, { binaryBytes: 200_000 })
    await publishToRepo(fleet, src2, '2.0.0')
    nginx = await Nginx.start({ stale, fresh: fleet.repo })
    const { logger, records } = captureLogger()
    const e = await startOriginEndpoint(fleet, 'e', [nginx.url('stale'), nginx.url('fresh')], {}, logger)
    await until(async () => await installedVersion(e) === '2.0.0', 60_000, '2.0.0 installed')
    expect(await snapshot(join(e.cfg.installRoot, 'app', 'current'))).toEqual(await snapshot(src2))
    const refusedStale = (): Record<string, unknown> | undefined =>
      records.find(r => r.msg === 'channel head refused' && r.source === nginx!.url('stale') && (r.err as { code?: string }).code === 'ERR_ROLLBACK')
    await until(() => refusedStale() !== undefined, 20_000, 'the stale head refused as a rollback')
    expect((await e.status()).heads[0]?.seq).toBe(2)
  }, 120_000)

  it('a seed with only an origin behind it adopts the origin\'s heads and serves endpoints', async () => {
    fleet = await Fleet.create('origin-seed')
    const src1 = await makeTree(join(fleet.dir, 'src-1'), 1, { binaryBytes: 400_000 })
    const p1 = await publishToRepo(fleet, src1, '1.0.0')
    nginx = await Nginx.start({ repo: fleet.repo })
    const seed = await fleet.startSeed({ origins: [nginx.url('repo')], pollInterval: 500 })
    const e = await fleet.startEndpoint('e', { pollInterval: 500 })
    await until(async () => await installedVersion(e) === '1.0.0', 60_000, 'installed through the seed')
    const src2 = await makeTree(join(fleet.dir, 'src-2'), 2, { binaryBytes: 400_000 })
    const p2 = await publishToRepo(fleet, src2, '2.0.0')
    await until(async () => await installedVersion(e) === '2.0.0', 60_000, '2.0.0 installed through the seed')
    expect(await snapshot(join(e.cfg.installRoot, 'app', 'current'))).toEqual(await snapshot(src2))
    expect((await e.status()).bytes.seed).toBe(p1.blobBytes + p2.fetchBytesFromPrevious)
    expect((await e.status()).bytes.origin).toBe(0)
    // the seed holds every blob of both releases: full blobs and delta blobs
    expect((await seed.status()).bytes.origin).toBe(p1.blobBytes + p2.newBlobBytes + p2.deltaBytes)
  }, 120_000)

  it('a caching seed in front of the origin keeps no full copy: fetches on demand, stays within cacheSize (LRU)', async () => {
    fleet = await Fleet.create('origin-cache')
    const src = await makeTree(join(fleet.dir, 'src'), 1, { binaryBytes: 900_000 })
    const p = await publishToRepo(fleet, src, '1.0.0')
    nginx = await Nginx.start({ repo: fleet.repo })
    const cacheSize = Math.floor(p.blobBytes / 3)
    const seed = await fleet.startSeed({ origins: [nginx.url('repo')], pollInterval: 500, cacheSize })
    await until(async () => (await loadHead(seed.db, 'stable')) !== null, 20_000, 'the caching seed adopted the origin head')
    expect((await seed.blobs.stats()).blobs).toBe(0) // nothing pulled before anyone asks
    // one after the other: the second asks again for blobs the first one's pass evicted
    const eps: Daemon[] = []
    for (const name of ['e1', 'e2']) {
      const e = await fleet.startEndpoint(name, { pollInterval: 500 })
      await until(async () => await installedVersion(e) === '1.0.0', 90_000, 'installed through the caching seed')
      eps.push(e)
    }
    for (const e of eps) expect(await snapshot(join(e.cfg.installRoot, 'app', 'current'))).toEqual(await snapshot(src))
    const stored = await seed.blobs.stats()
    expect(stored.bytes).toBeLessThanOrEqual(cacheSize)
    expect(stored.bytes).toBeGreaterThan(0)
    // the second endpoint's requests missed the evicted blobs: the seed fetched them again
    expect((await seed.status()).bytes.origin).toBeGreaterThan(p.blobBytes)
    const refused = await fleet.push(p.manifestPath).then(() => null, (err: unknown) => err as Error)
    expect(refused?.message).toMatch(/cache in front of its origins/)
  }, 150_000)

  it('an endpoint whose seed is down falls over to the origin for heads, manifest and blobs', async () => {
    fleet = await Fleet.create('origin-failover')
    await fleet.startSeed()
    const seedAddr = fleet.seedAddr
    const src = await makeTree(join(fleet.dir, 'src'), 1, { binaryBytes: 400_000 })
    const p = await publishToRepo(fleet, src, '1.0.0')
    await fleet.push(p.manifestPath)
    await fleet.stopDaemon(fleet.seed)
    nginx = await Nginx.start({ repo: fleet.repo })
    const { logger, records } = captureLogger()
    const e = await startOriginEndpoint(fleet, 'e', [nginx.url('repo')], { seeds: [seedAddr] }, logger)
    await until(async () => await installedVersion(e) === '1.0.0', 60_000, 'installed from the origin')
    expect(await snapshot(join(e.cfg.installRoot, 'app', 'current'))).toEqual(await snapshot(src))
    const s = await e.status()
    expect(s.bytes.origin).toBe(p.blobBytes)
    expect(s.bytes.seed).toBe(0)
    // head polls rotate over the sources, so the dead seed gets its turn (and is logged) sooner or later
    await until(() => records.some(r => r.msg === 'cannot reach seed or origin' && r.source === seedAddr), 20_000, 'the dead seed logged')
  }, 120_000)
})
