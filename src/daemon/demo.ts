// `shoal demo`: the main job on loopback for a newcomer, no root needed. A seed and S sites of N
// endpoints (sites by label) run in this process with real libp2p, LevelDB and installs in a temp
// folder; a package is published as v1 then v2, and the report says, per site, how many bytes
// came over the "WAN" (from the seed) and how many from LAN peers, and what each endpoint installed.
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { InvalidArgumentError } from '../core/errors.js'
import { initKeysDir, loadPublisherKeys } from '../publish/keys-dir.js'
import { publishRelease } from '../publish/publisher.js'
import { SeedSession } from '../publish/push.js'
import { BlobStore } from '../store/blob-store.js'
import { parseConfig } from './config.js'
import { startDaemon, type Daemon } from './daemon.js'
import { createLogger } from './log.js'

export interface DemoOptions {
  sites: number
  perSite: number
  package: string
  /** Folders published as the first and the second release. */
  releases: Array<{ version: string, dir: string }>
  /** Keep the work folder (state, installs) instead of deleting it. */
  keep?: boolean
  timeoutMs?: number
  onProgress?: (line: string) => void
}

export interface DemoSiteReport { site: string, endpoints: number, wanBytes: number, lanBytes: number }
export interface DemoEndpointReport { name: string, site: string, installed: string | null, wanBytes: number, lanBytes: number }
export interface DemoReleaseReport {
  version: string
  newBlobBytes: number
  /** What one endpoint holding the previous release fetches: delta blobs where they serve (publish --json). */
  fetchBytesFromPrevious: number
  deltaBlobs: number
  blobBytes: number
  seconds: number
  sites: DemoSiteReport[]
  endpoints: DemoEndpointReport[]
}
export interface DemoReport { package: string, workDir: string | null, releases: DemoReleaseReport[] }

async function until (cond: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms
  while (Date.now() < end) {
    if (await cond()) return
    await new Promise(resolve => setTimeout(resolve, 100))
  }
  throw new InvalidArgumentError(`demo: timed out after ${ms / 1000} s waiting for ${what}`)
}

export async function runDemo (o: DemoOptions): Promise<DemoReport> {
  if (!Number.isInteger(o.sites) || o.sites < 1 || o.sites > 10) throw new InvalidArgumentError('--sites must be 1–10')
  if (!Number.isInteger(o.perSite) || o.perSite < 1 || o.perSite > 20) throw new InvalidArgumentError('--endpoints must be 1–20')
  const say = o.onProgress ?? (() => {})
  const work = await mkdtemp(join(tmpdir(), 'shoal-demo-'))
  const log = createLogger('silent')
  const daemons: Daemon[] = []
  try {
    const keysDir = join(work, 'keys')
    await initKeysDir({ dir: keysDir, rootKeys: 1, rootThreshold: 1, publisherKeys: 1, publisherThreshold: 1, expires: new Date(Date.now() + 7 * 86400_000) })
    const keys = await loadPublisherKeys(keysDir)
    const common = { listen: ['/ip4/127.0.0.1/tcp/0'], api: null, logLevel: 'silent', mdns: false }
    const seed = await startDaemon(parseConfig({ ...common, role: 'seed', stateDir: join(work, 'seed'), enroll: join(keysDir, 'seed-enroll.json') }, work), { logger: log })
    daemons.push(seed)
    const seedAddr = seed.node.getMultiaddrs()[0]?.toString() as string
    say(`seed ${seed.node.peerId.toString()} on ${seedAddr}`)
    const endpoints: Array<{ name: string, site: string, d: Daemon }> = []
    for (let s = 1; s <= o.sites; s++) {
      for (let e = 1; e <= o.perSite; e++) {
        const name = `site${s}-ep${e}`
        const d = await startDaemon(parseConfig({
          ...common, role: 'endpoint', stateDir: join(work, name), enroll: join(keysDir, 'enroll.json'),
          seeds: [seedAddr], site: `site${s}`, pollInterval: 2000, link: 'wired', power: 'ac'
        }, work), { logger: log })
        daemons.push(d)
        endpoints.push({ name, site: `site${s}`, d })
      }
    }
    say(`${endpoints.length} endpoints in ${o.sites} site(s) started`)

    const repo = join(work, 'repo')
    const reports: DemoReleaseReport[] = []
    let seq = 0
    for (const rel of o.releases) {
      const before = await Promise.all(endpoints.map(async e => (await e.d.status()).bytes))
      const started = Date.now()
      const pub = await publishRelease({
        input: rel.dir, package: o.package, version: rel.version, channel: 'stable', repoDir: repo,
        signers: keys.publisherKeys, contentKey: keys.fleet.contentKey, seq: ++seq,
        expires: new Date(Date.now() + 86400_000), threads: 1
      })
      const session = await SeedSession.open({ seed: seedAddr, networkKey: keys.fleet.networkKey, privateKey: await generateKeyPair('Ed25519'), blobs: await BlobStore.open(repo) })
      try {
        await session.commit(await readFile(pub.manifestPath))
      } finally {
        await session.close()
      }
      say(`published ${o.package}@${rel.version}: ${pub.newChunks} new blob(s), ${pub.newBlobBytes} bytes; ${pub.deltaBlobs} delta blob(s), a holder of the previous release fetches ${pub.fetchBytesFromPrevious} bytes`)
      await until(async () => {
        const st = await Promise.all(endpoints.map(async e => await e.d.status()))
        return st.every(s => s.packages.some(p => p.name === o.package && p.installed === rel.version))
      }, o.timeoutMs ?? 120_000, `every endpoint to install ${rel.version}`)
      const after = await Promise.all(endpoints.map(async e => await e.d.status()))
      const eps: DemoEndpointReport[] = endpoints.map((e, i) => ({
        name: e.name,
        site: e.site,
        installed: after[i]?.packages.find(p => p.name === o.package)?.installed ?? null,
        wanBytes: (after[i]?.bytes.seed ?? 0) - (before[i]?.seed ?? 0),
        lanBytes: (after[i]?.bytes.lan ?? 0) - (before[i]?.lan ?? 0)
      }))
      const sites = [...new Set(endpoints.map(e => e.site))].map(site => {
        const mine = eps.filter(e => e.site === site)
        return { site, endpoints: mine.length, wanBytes: mine.reduce((n, e) => n + e.wanBytes, 0), lanBytes: mine.reduce((n, e) => n + e.lanBytes, 0) }
      })
      reports.push({ version: rel.version, newBlobBytes: pub.newBlobBytes, fetchBytesFromPrevious: pub.fetchBytesFromPrevious, deltaBlobs: pub.deltaBlobs, blobBytes: pub.blobBytes, seconds: (Date.now() - started) / 1000, sites, endpoints: eps })
      say(`${rel.version} installed everywhere in ${((Date.now() - started) / 1000).toFixed(1)} s`)
    }
    return { package: o.package, workDir: o.keep === true ? work : null, releases: reports }
  } finally {
    for (const d of daemons.reverse()) await d.stop().catch(() => {})
    if (o.keep !== true) await rm(work, { recursive: true, force: true })
  }
}
