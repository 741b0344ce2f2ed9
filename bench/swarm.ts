// The LAN swarm in network namespaces (issue 4, "Benchmark"; DESIGN §6, §10): one site of N
// endpoints behind a shaped uplink (50 Mbit/s, 40 ms by default; LAN unshaped), a release of
// `bytes` random data (a few large files and some small ones), then a v2 that rewrites ~10 % of
// the bytes in place, so FastCDC keeps ~90 % of the chunks. Per release and per N it reports:
//   uplink ÷ new    bytes over the site's uplink (router interface counter, `wanBytes(1).down`)
//                   ÷ the release's newBlobBytes (target ≤ 1.05; one copy per endpoint would be N)
//   seed ÷ new      the endpoints' own `bytes.seed` counters summed ÷ newBlobBytes
//   time ÷ ideal    push end → last endpoint installed, ÷ (newBlobBytes × 8 ÷ uplink bit rate)
//                   (target ≤ 1.2)
// plus the CPU time of the endpoint daemons (/proc/<pid>/stat), the machine's busy share of its
// cores, and the endpoints' RSS, which say what limits the time when the uplink does not.
//
// Both releases are published once into a cached repository (bench/.cache/swarm-<bytes>/: keys,
// repo, publish results). Each N gets a fresh test bed (test/e2e/testbed.ts: namespaces, a fresh
// seed, N empty endpoints); the cached releases are pushed to its seed from the datacenter
// namespace by this file run as `node dist/bench/swarm.js --push …` (what `shoal publish --to`
// does after publishing). Root only; docs/bench-swarm.md has the method and the figures.
//
//   npm run build && node dist/bench/swarm.js [--bytes N] [--endpoints 2,10,20] [--rate 50e6]
//                                             [--delay 40] [--no-cache] [--keep]
import '../src/polyfills.js'
import { randomBytes } from 'node:crypto'
import { closeSync, existsSync, openSync, readFileSync, readSync, statSync } from 'node:fs'
import { cp, mkdir, mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises'
import { cpus, loadavg, tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

const MiB = 1024 * 1024
const PACKAGE = 'app'
const RELEASES = [{ label: 'v1', version: '1.0.0' }, { label: 'v2', version: '2.0.0' }] as const
/** USER_HZ: the unit of utime/stime in /proc/<pid>/stat. */
const CLK_TCK = 100
const SAMPLE_MS = 500
/** Share of the bytes of v2 rewritten in place. */
const CHANGED = 0.10
const LARGE_FILES = 4
const SMALL_FILES = 40
/** Share of the release in small files. */
const SMALL_SHARE = 0.10

const here = fileURLToPath(new URL('.', import.meta.url))
/** This file runs from dist/bench/ (bin/shoal needs dist/ anyway). */
const repoRoot = resolve(here, '..', '..')
const shoalBin = join(repoRoot, 'bin', 'shoal')
const thisFile = fileURLToPath(import.meta.url)

export interface BenchSwarmOptions {
  /** Release size in bytes (random data); default 200 MiB. */
  bytes?: number
  /** Site sizes to measure; default 2, 10, 20. */
  endpoints?: number[]
  /** Uplink rate in bit/s; default 50 Mbit/s. */
  uplinkRate?: number
  /** One-way uplink delay in ms (needs sch_netem; recorded when absent); default 40. */
  uplinkDelayMs?: number
  /** Reuse the published releases under bench/.cache (default true). */
  cache?: boolean
  /** Keep each test bed's work folder (daemon logs, configs, state). */
  keep?: boolean
  log?: (line: string) => void
}

export interface SwarmRow {
  release: string
  N: number
  newBlob_MB: number
  uplink_MB: number
  /** uplink bytes ÷ newBlobBytes (target ≤ 1.05). */
  uplink_ratio: number
  /** The signed manifest's full size. */
  manifest_MB: number
  /** Manifest bytes the endpoints received from the seed (full or as deltas), summed: the manifests' share of the uplink. */
  manifest_seed_MB: number
  /** … and from site members. */
  manifest_lan_MB: number
  /** Manifests rebuilt from a delta, summed over the endpoints. */
  manifest_deltas: number
  /** (uplink bytes − manifest_seed bytes) ÷ newBlobBytes: the blobs' own share, with TCP/IP headers. */
  uplink_less_manifests_ratio: number
  /** Σ endpoints' bytes.seed ÷ newBlobBytes. */
  seed_ratio: number
  /** Blob bytes the seed served (its shoal_bytes_served_total) ÷ newBlobBytes: above seed_ratio, blobs sent and never landed (cancelled mid-way). */
  seed_served_ratio: number
  /** The seed's TCP segments retransmitted during the phase (nstat in its namespace), and its IP bytes out ÷ the uplink's bytes. */
  seed_retrans_segs: number
  seed_ip_out_MB: number
  /** Σ endpoints' bytes.lan ÷ newBlobBytes (ideal N − 1). */
  lan_ratio: number
  ideal_s: number
  /** push end → last endpoint installed. */
  complete_s: number
  /** complete_s ÷ ideal_s (target ≤ 1.2). */
  time_ratio: number
  /** push end → 1 % / 99 % of the phase's uplink bytes had crossed. */
  uplink1_s: number
  uplink99_s: number
  /** Uplink rate between those two points, Mbit/s. */
  uplink_Mbps: number
  /** push end → last endpoint logged 'release downloaded'. */
  downloaded_s: number
  /** CPU time of the endpoint daemons (sum), of the seed, in the phase. */
  endpoints_cpu_s: number
  seed_cpu_s: number
  /** Busy share of all cores in the phase (everything on the machine), %. */
  machine_busy_pct: number
  /** Share of that busy time spent by this bench's daemons, %. */
  ours_pct_of_busy: number
  /** Highest sampled RSS of one endpoint in the phase, and the mean of the per-endpoint peaks. */
  rss_max_MB: number
  rss_mean_MB: number
}

/** A site size whose run failed (a daemon died, a wait timed out): this release and the later ones. */
export interface SwarmFailure { release: string, N: number, error: string }

export type BenchSwarmResult = Array<SwarmRow | SwarmFailure> | { skipped: string }

// ---------------------------------------------------------------------------------------------
// The test bed, loaded from its TypeScript source: compiled into dist/, test/e2e/testbed.ts would
// find bin/shoal under dist/ (it locates the repo from its own path). Vite (vitest's) runs it
// from source with the right import.meta.url. The types below are the part of its API used here.

interface RunResult { code: number, stdout: string, stderr: string }
interface ProcHandle { pid: number, logFile: string, exitCode: number | null, tail: (lines?: number) => string }
interface DaemonStatus { peerId: string, siteMembers?: number, packages: Array<{ name: string, installed: string | null }>, bytes: { seed: number, lan: number }, manifests?: { seed: number, lan: number, deltas: number, patches?: number } }
interface ShoalDaemon { name: string, ns: string, proc: ProcHandle, status: () => Promise<DaemonStatus>, multiaddr: () => Promise<string>, get: (path: string) => Promise<string> }
interface Testbed {
  prefix: string
  workDir: string
  dcNs: string
  shaping: { rate: string, delay: string, note: string | null }
  sites: Array<{ endpoints: Array<{ ns: string, index: number }> }>
  wanBytes: (site: number) => Promise<{ down: number, up: number }>
  shoal: (ns: string | null, args: string[], opts?: { timeoutMs?: number }) => Promise<RunResult>
  startSeed: (keysDir: string, config?: Record<string, unknown>) => Promise<ShoalDaemon>
  startEndpoint: (site: number, index: number, keysDir: string, seeds: string[], config?: Record<string, unknown>) => Promise<ShoalDaemon>
  logTails: (lines?: number) => string
  destroy: () => Promise<void>
}
interface TestbedModule {
  skipReason: () => string | null
  Testbed: { create: (o: { sites: number, endpointsPerSite: number, uplinkRate?: number, uplinkDelayMs?: number, keepWorkDir?: boolean }) => Promise<Testbed> }
  run: (argv: string[], opts?: { timeoutMs?: number }) => Promise<RunResult>
  runIn: (ns: string, argv: string[], opts?: { timeoutMs?: number }) => Promise<RunResult>
  waitFor: (cond: () => Promise<boolean> | boolean, opts?: { timeoutMs?: number, intervalMs?: number, what?: string, tail?: () => string }) => Promise<void>
}

async function loadTestbed (): Promise<TestbedModule> {
  const { runnerImport } = await import('vite')
  const { module } = await runnerImport<TestbedModule>(join(repoRoot, 'test', 'e2e', 'testbed.ts'), { configFile: false, logLevel: 'error' })
  return module
}

// ---------------------------------------------------------------------------------------------
// The releases (published once, cached)

interface PublishJson { blobBytes: number, manifestBytes: number, newBlobBytes: number, inputBytes: number, chunks: number, uniqueChunks: number, newChunks: number, manifestPath: string, seconds: number, deltaBlobs?: number, deltaBytes?: number }
interface Published { label: string, version: string, manifestPath: string, pub: PublishJson }
interface Cache { bytes: number, at: string, keysDir: string, repo: string, releases: Published[], note: string }

async function writeRandomFile (path: string, bytes: number): Promise<void> {
  const f = await open(path, 'w')
  try {
    for (let written = 0; written < bytes;) {
      const n = Math.min(4 * MiB, bytes - written)
      await f.write(randomBytes(n))
      written += n
    }
  } finally { await f.close() }
}

/** v1: LARGE_FILES large files (90 % of the bytes) and SMALL_FILES small ones, all random. */
async function makeV1 (dir: string, bytes: number): Promise<void> {
  await mkdir(join(dir, 'small'), { recursive: true })
  const small = Math.max(1, Math.floor(bytes * SMALL_SHARE / SMALL_FILES))
  const large = Math.ceil((bytes - small * SMALL_FILES) / LARGE_FILES)
  for (let i = 0; i < LARGE_FILES; i++) await writeRandomFile(join(dir, `large${i}.bin`), large)
  for (let i = 0; i < SMALL_FILES; i++) await writeRandomFile(join(dir, 'small', `s${String(i).padStart(2, '0')}.bin`), small)
}

/**
 * v2: a copy of v1 with CHANGED of the bytes rewritten in place (same sizes): in each large file
 * two regions of CHANGED / 2 of its length at random offsets, and every tenth small file
 * rewritten whole. FastCDC resynchronises after each region, so only the chunks overlapping a
 * rewritten region (plus about one at each edge) are new.
 */
async function makeV2 (v1: string, dir: string): Promise<void> {
  await cp(v1, dir, { recursive: true })
  for (let i = 0; i < LARGE_FILES; i++) {
    const path = join(dir, `large${i}.bin`)
    const size = statSync(path).size
    const region = Math.floor(size * CHANGED / 2)
    const f = await open(path, 'r+')
    try {
      // one region in each half, so they do not overlap
      for (const half of [0, 1]) {
        const start = Math.floor(half * size / 2 + Math.random() * (size / 2 - region))
        for (let off = 0; off < region; off += 4 * MiB) {
          const n = Math.min(4 * MiB, region - off)
          await f.write(randomBytes(n), 0, n, start + off)
        }
      }
    } finally { await f.close() }
  }
  for (let i = 0; i < SMALL_FILES; i += 10) {
    const path = join(dir, 'small', `s${String(i).padStart(2, '0')}.bin`)
    await writeRandomFile(path, statSync(path).size)
  }
}

async function shoalCli (tb: TestbedModule, args: string[], timeoutMs: number): Promise<string> {
  const r = await tb.run([process.execPath, shoalBin, ...args], { timeoutMs })
  if (r.code !== 0) throw new Error(`shoal ${args.slice(0, 2).join(' ')} failed (exit ${r.code}): ${r.stderr.trim() || r.stdout.trim()}`)
  return r.stdout
}

async function prepareReleases (tb: TestbedModule, bytes: number, useCache: boolean, log: (l: string) => void): Promise<Cache> {
  const dir = useCache ? join(repoRoot, 'bench', '.cache', `swarm-${bytes}`) : await mkdtemp(join(tmpdir(), 'shoal-bench-swarm-'))
  const metaPath = join(dir, 'releases.json')
  if (useCache && existsSync(metaPath)) {
    const meta = JSON.parse(await readFile(metaPath, 'utf8')) as Cache
    if (meta.bytes === bytes && meta.releases.every(r => existsSync(r.manifestPath))) {
      log(`releases: cached in ${dir} (published ${meta.at})`)
      return meta
    }
  }
  await rm(dir, { recursive: true, force: true })
  await mkdir(dir, { recursive: true })
  const keysDir = join(dir, 'keys')
  const repo = join(dir, 'repo')
  await shoalCli(tb, ['keys', 'init', '--dir', keysDir, '--expires', '365d'], 60_000)
  // Whole chunks only: delta blobs (a separate feature, when the CLI has it) are not what the
  // swarm benchmark measures, and they would make newBlobBytes count two encodings of a change.
  const help = await tb.run([process.execPath, shoalBin, 'publish', '--help'])
  const extra = help.stdout.includes('--delta-releases') ? ['--delta-releases', '0'] : []
  const releases: Published[] = []
  const trees = join(dir, 'trees')
  for (const r of RELEASES) {
    const tree = join(trees, r.label)
    log(`releases: writing ${r.label} (${(bytes / MiB).toFixed(0)} MiB) and publishing it into ${repo}…`)
    if (r.label === 'v1') await makeV1(tree, bytes)
    else await makeV2(join(trees, 'v1'), tree)
    const out = await shoalCli(tb, ['publish', tree, '--name', PACKAGE, '--version', r.version, '--keys', keysDir, '--repo', repo, ...extra, '--json'], 60 * 60_000)
    const pub = JSON.parse(out) as PublishJson
    log(`releases: ${r.label} ${pub.chunks} chunks, blobs ${(pub.blobBytes / 1e6).toFixed(1)} MB, new ${(pub.newBlobBytes / 1e6).toFixed(1)} MB, ${pub.seconds.toFixed(1)} s`)
    releases.push({ label: r.label, version: r.version, manifestPath: pub.manifestPath, pub })
  }
  await rm(trees, { recursive: true, force: true })
  const meta: Cache = { bytes, at: new Date().toISOString(), keysDir, repo, releases, note: extra.length > 0 ? 'published with --delta-releases 0' : '' }
  await writeFile(metaPath, JSON.stringify(meta, null, 2) + '\n')
  return meta
}

/** `node dist/bench/swarm.js --push <seed> --repo R --manifest M --keys K`: what `shoal publish --to` sends. */
async function pushMain (argv: string[]): Promise<void> {
  const val = (flag: string): string => {
    const i = argv.indexOf(flag)
    const v = i >= 0 ? argv[i + 1] : undefined
    if (v === undefined) throw new Error(`--push needs ${flag}`)
    return v
  }
  const { SeedSession } = await import('../src/publish/push.js')
  const { BlobStore } = await import('../src/store/blob-store.js')
  const { loadPublisherKeys } = await import('../src/publish/keys-dir.js')
  const { loadOrCreatePeerKey } = await import('../src/net/peer-key.js')
  const keysDir = val('--keys')
  const keys = await loadPublisherKeys(keysDir)
  const s = await SeedSession.open({ seed: val('--push'), networkKey: keys.fleet.networkKey, privateKey: await loadOrCreatePeerKey(keysDir), blobs: await BlobStore.open(val('--repo')) })
  try {
    const { RepoLayout } = await import('../src/store/repo.js')
    const r = await s.publish(await readFile(val('--manifest')), { contentKey: keys.fleet.contentKey, repo: await RepoLayout.open(val('--repo')) })
    process.stdout.write(JSON.stringify({ ...r.commit, missingBefore: r.offer.missing, payloadPatches: r.patches }) + '\n')
  } finally {
    await s.close()
  }
}

// ---------------------------------------------------------------------------------------------
// /proc

interface ProcSample { cpuTicks: number, rss: number }

function readProc (pid: number): ProcSample | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ') // f[0] is field 3 (state)
    const status = readFileSync(`/proc/${pid}/status`, 'utf8')
    const rss = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) * 1024
    return { cpuTicks: Number(f[11]) + Number(f[12]), rss }
  } catch { return null }
}

/** All cores, from /proc/stat: busy and total jiffies. */
function machineTicks (): { busy: number, total: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!
  const v = line.trim().split(/\s+/).slice(1).map(Number)
  const total = v.slice(0, 8).reduce((a, b) => a + b, 0) // user … steal (guest is inside user)
  const idle = (v[3] ?? 0) + (v[4] ?? 0)
  return { busy: total - idle, total }
}

async function nsPids (tb: TestbedModule, ns: string): Promise<number[]> {
  const r = await tb.run(['ip', 'netns', 'pids', ns])
  return r.stdout.split(/\s+/).filter(Boolean).map(Number)
    .filter(pid => { try { return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('daemon') } catch { return false } })
}

// ---------------------------------------------------------------------------------------------
// Daemon logs (pino JSON lines): the times endpoints downloaded and installed a release

interface LogEvent { msg: string, time: number, release?: string }

class LogWatch {
  private offset = 0
  private rest = ''
  readonly events: LogEvent[] = []
  constructor (private readonly path: string) {}

  poll (): void {
    if (!existsSync(this.path)) return
    const size = statSync(this.path).size
    if (size <= this.offset) return
    const fd = openSync(this.path, 'r')
    try {
      const buf = Buffer.alloc(size - this.offset)
      readSync(fd, buf, 0, buf.length, this.offset)
      this.offset = size
      const lines = (this.rest + buf.toString('utf8')).split('\n')
      this.rest = lines.pop() ?? ''
      for (const l of lines) {
        if (!l.startsWith('{')) continue
        try {
          const j = JSON.parse(l) as { msg?: unknown, time?: unknown, release?: unknown }
          if (typeof j.msg === 'string' && typeof j.time === 'number') this.events.push({ msg: j.msg, time: j.time, ...(typeof j.release === 'string' ? { release: j.release } : {}) })
        } catch { /* not JSON */ }
      }
    } finally { closeSync(fd) }
  }

  find (msg: string, release: string): LogEvent | undefined {
    return this.events.find(e => e.msg === msg && e.release === release)
  }
}

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

/** Time at which `value` first reaches `target`, interpolated between samples. */
function crossing (samples: Array<{ t: number, v: number }>, target: number): number | undefined {
  for (let i = 0; i < samples.length; i++) {
    const b = samples[i]!
    if (b.v < target) continue
    const a = samples[i - 1]
    if (a === undefined || b.v === a.v) return b.t
    return a.t + (b.t - a.t) * (target - a.v) / (b.v - a.v)
  }
  return undefined
}

// ---------------------------------------------------------------------------------------------
// One site of N

/** Measures every release on a fresh site of N; rows go into `rows` as they are measured. */
async function measureSite (m: TestbedModule, cache: Cache, N: number, o: Required<Omit<BenchSwarmOptions, 'log'>>, log: (l: string) => void, rows: SwarmRow[]): Promise<void> {
  const tb = await m.Testbed.create({ sites: 1, endpointsPerSite: N, uplinkRate: o.uplinkRate, uplinkDelayMs: o.uplinkDelayMs, keepWorkDir: o.keep })
  try {
    log(`N=${N}: test bed ${tb.prefix}, uplink shaping ${tb.shaping.rate}/${tb.shaping.delay}${tb.shaping.note !== null ? ` (${tb.shaping.note})` : ''}`)
    const seed = await tb.startSeed(cache.keysDir)
    const seedAddr = await seed.multiaddr()
    // Started a few at a time: 20 Node processes booting at once on 2 cores miss the bed's 30 s
    // readiness wait. The release appears only once all of them are up and know each other.
    // The default poll interval (60 s), as deployed: the seed pushes each new head to the
    // endpoints connected to it, and they to their site. The bed's 500 ms polls added ~2.6 KB/s
    // per endpoint to the uplink (1.4 Mbit/s at 10 endpoints), 120 × what a real site sends.
    const endpointConfig = { pollInterval: 60_000 }
    const endpoints: ShoalDaemon[] = []
    const eps = tb.sites[0]!.endpoints
    for (let i = 0; i < eps.length; i += 4) {
      endpoints.push(...await Promise.all(eps.slice(i, i + 4).map(async ep => await tb.startEndpoint(1, ep.index, cache.keysDir, [seedAddr], endpointConfig))))
    }
    await m.waitFor(async () => {
      const sts = await Promise.all(endpoints.map(async d => await d.status().catch(() => null)))
      return sts.every(st => st !== null && (st.siteMembers === undefined || st.siteMembers >= N - 1))
    }, { timeoutMs: 120_000, intervalMs: 1000, what: `the site of ${N} to form`, tail: () => tb.logTails(5) })
    const epPids = (await Promise.all(endpoints.map(async d => await nsPids(m, d.ns)))).flat()
    const seedPids = await nsPids(m, tb.dcNs)
    if (epPids.length !== N) log(`N=${N}: found ${epPids.length} endpoint daemon processes`)
    const watches = endpoints.map(d => new LogWatch(d.proc.logFile))

    for (const r of cache.releases) {
      const key = `${PACKAGE}@${r.version}`
      const newBlobBytes = r.pub.newBlobBytes
      const ideal = newBlobBytes * 8 / o.uplinkRate
      await sleep(2000) // let the previous phase's have-map traffic and writes settle
      const st0 = await Promise.all(endpoints.map(async d => await d.status()))
      const served0 = await servedBytes(seed)
      const net0 = await seedNet(m, tb.dcNs)
      const w0 = await tb.wanBytes(1)
      const tPush = Date.now()
      const push = await m.runIn(tb.dcNs, [process.execPath, thisFile, '--push', seedAddr, '--repo', cache.repo, '--manifest', r.manifestPath, '--keys', cache.keysDir], { timeoutMs: 30 * 60_000 })
      if (push.code !== 0) throw new Error(`push of ${key} failed (exit ${push.code}): ${push.stderr.trim()}`)
      const t0 = Date.now()
      const cpu0 = new Map([...epPids, ...seedPids].map(pid => [pid, readProc(pid)?.cpuTicks ?? 0]))
      const mach0 = machineTicks()
      // Samples every second: the uplink counter (for when the transfer really ended) and RSS.
      const wanSamples: Array<{ t: number, v: number }> = [{ t: t0, v: (await tb.wanBytes(1)).down - w0.down }]
      const rssPeak = new Map<number, number>()
      let sampling = true
      const sampler = (async () => {
        while (sampling) {
          const w = await tb.wanBytes(1).catch(() => null)
          if (w !== null) wanSamples.push({ t: Date.now(), v: w.down - w0.down })
          for (const pid of epPids) {
            const s = readProc(pid)
            if (s !== null) rssPeak.set(pid, Math.max(rssPeak.get(pid) ?? 0, s.rss))
          }
          await sleep(SAMPLE_MS)
        }
      })()
      let done: LogEvent[] = []
      try {
        const timeoutMs = 120_000 + N * newBlobBytes / 1e6 * 1000 // ≥ 1 MB/s per endpoint
        await m.waitFor(() => {
          for (const w of watches) w.poll()
          const failed = watches.findIndex(w => w.events.some(e => e.release === key && e.msg.startsWith('install failed')))
          if (failed >= 0) throw new Error(`${endpoints[failed]!.name}: install of ${key} failed`)
          const dead = endpoints.find(d => d.proc.exitCode !== null)
          if (dead !== undefined) throw new Error(`${dead.name} exited with ${dead.proc.exitCode} during ${key}:\n${dead.proc.tail(30)}`)
          done = watches.map(w => w.find('release installed', key)).filter((e): e is LogEvent => e !== undefined)
          return done.length === N
        }, { timeoutMs, intervalMs: 250, what: `all ${N} endpoints to install ${key}`, tail: () => tb.logTails(5) })
      } finally {
        sampling = false
        await sampler
      }
      const tEnd = Math.max(...done.map(e => e.time))
      const cpu = (pids: number[]): number => pids.reduce((n, pid) => n + (readProc(pid)?.cpuTicks ?? 0) - (cpu0.get(pid) ?? 0), 0) / CLK_TCK
      const epCpu = cpu(epPids)
      const seedCpu = cpu(seedPids)
      const mach1 = machineTicks()
      const w1 = await tb.wanBytes(1)
      const net1 = await seedNet(m, tb.dcNs)
      const served = await servedBytes(seed) - served0
      const st1 = await Promise.all(endpoints.map(async d => await d.status()))
      for (const st of st1) {
        if (!st.packages.some(p => p.name === PACKAGE && p.installed === r.version)) throw new Error(`${st.peerId}: ${key} not installed: ${JSON.stringify(st.packages)}`)
      }
      const sum = (sts: DaemonStatus[], k: 'seed' | 'lan'): number => sts.reduce((n, st) => n + st.bytes[k], 0)
      const seedBytes = sum(st1, 'seed') - sum(st0, 'seed')
      const lanBytes = sum(st1, 'lan') - sum(st0, 'lan')
      const down = w1.down - w0.down
      wanSamples.push({ t: Date.now(), v: down })
      const t1 = crossing(wanSamples, 0.01 * down) ?? t0
      const t99 = crossing(wanSamples, 0.99 * down) ?? tEnd
      const manifestBytes = r.pub.manifestBytes
      // Daemons before the manifest counters report none: then assume one full copy per endpoint, as they fetched.
      const mf = (sts: DaemonStatus[], k: 'seed' | 'lan' | 'deltas' | 'patches'): number => sts.reduce((n, st) => n + (st.manifests?.[k] ?? 0), 0)
      const counted = st1[0]?.manifests !== undefined
      const manifestSeed = counted ? mf(st1, 'seed') - mf(st0, 'seed') : N * manifestBytes
      const downloaded = watches.map(w => w.find('release downloaded', key)?.time ?? tEnd)
      const busyTicks = mach1.busy - mach0.busy
      const peaks = [...rssPeak.values()]
      const row: SwarmRow = {
        release: r.label,
        N,
        newBlob_MB: newBlobBytes / 1e6,
        uplink_MB: down / 1e6,
        uplink_ratio: down / newBlobBytes,
        manifest_MB: manifestBytes / 1e6,
        manifest_seed_MB: manifestSeed / 1e6,
        manifest_lan_MB: counted ? (mf(st1, 'lan') - mf(st0, 'lan')) / 1e6 : 0,
        // rebuilt from a plain delta or a payload patch (docs/protocol.md §6.5)
        manifest_deltas: counted ? mf(st1, 'deltas') - mf(st0, 'deltas') + mf(st1, 'patches') - mf(st0, 'patches') : 0,
        uplink_less_manifests_ratio: (down - manifestSeed) / newBlobBytes,
        seed_ratio: seedBytes / newBlobBytes,
        seed_served_ratio: served / newBlobBytes,
        seed_retrans_segs: net1.retrans - net0.retrans,
        seed_ip_out_MB: (net1.outOctets - net0.outOctets) / 1e6,
        lan_ratio: lanBytes / newBlobBytes,
        ideal_s: ideal,
        complete_s: (tEnd - t0) / 1000,
        time_ratio: (tEnd - t0) / 1000 / ideal,
        uplink1_s: (t1 - t0) / 1000,
        uplink99_s: (t99 - t0) / 1000,
        uplink_Mbps: t99 > t1 ? 0.98 * down * 8 / ((t99 - t1) / 1000) / 1e6 : 0,
        downloaded_s: (Math.max(...downloaded) - t0) / 1000,
        endpoints_cpu_s: epCpu,
        seed_cpu_s: seedCpu,
        machine_busy_pct: 100 * busyTicks / Math.max(1, mach1.total - mach0.total),
        ours_pct_of_busy: 100 * (epCpu + seedCpu) * CLK_TCK / Math.max(1, busyTicks),
        rss_max_MB: Math.max(0, ...peaks) / 1e6,
        rss_mean_MB: peaks.length > 0 ? peaks.reduce((a, b) => a + b, 0) / peaks.length / 1e6 : 0
      }
      rows.push(row)
      log(`N=${N} ${r.label}: push ${((t0 - tPush) / 1000).toFixed(1)} s; uplink ${row.uplink_MB.toFixed(1)} MB = ${row.uplink_ratio.toFixed(3)} × new blobs ` +
        `(${row.newBlob_MB.toFixed(1)} MB; ${row.uplink_less_manifests_ratio.toFixed(3)} × without the ${row.manifest_seed_MB.toFixed(2)} MB of manifests from the seed, ${row.manifest_deltas} rebuilt from deltas; full manifest ${row.manifest_MB.toFixed(2)} MB), seed ${row.seed_ratio.toFixed(3)} × (served ${row.seed_served_ratio.toFixed(3)} ×; seed IP out ${row.seed_ip_out_MB.toFixed(1)} MB, ${row.seed_retrans_segs} TCP segments retransmitted), LAN ${row.lan_ratio.toFixed(2)} ×; installed by all in ${row.complete_s.toFixed(1)} s = ` +
        `${row.time_ratio.toFixed(2)} × ideal ${row.ideal_s.toFixed(1)} s (uplink 1 % at ${row.uplink1_s.toFixed(1)} s, 99 % at ${row.uplink99_s.toFixed(1)} s, ${row.uplink_Mbps.toFixed(1)} Mbit/s between; downloaded by all at ` +
        `${row.downloaded_s.toFixed(1)} s); CPU endpoints ${epCpu.toFixed(1)} s, seed ${seedCpu.toFixed(1)} s, machine ${row.machine_busy_pct.toFixed(0)} % busy ` +
        `(${row.ours_pct_of_busy.toFixed(0)} % of it ours); RSS ≤ ${row.rss_max_MB.toFixed(0)} MB (mean peak ${row.rss_mean_MB.toFixed(0)} MB)`)
    }
  } finally {
    await tb.destroy()
  }
}

/** The seed's blob bytes served so far, from its /metrics. */
async function servedBytes (seed: ShoalDaemon): Promise<number> {
  const text = await seed.get('/metrics').catch(() => '')
  const m = /^shoal_bytes_served_total\{role="seed"\} (\d+(?:\.\d+)?(?:e[+-]?\d+)?)$/m.exec(text)
  return m === null ? 0 : Number(m[1])
}

/** The seed namespace's TCP retransmissions and IP bytes sent so far (nstat -az: absolute counters). */
async function seedNet (m: TestbedModule, ns: string): Promise<{ retrans: number, outOctets: number }> {
  const r = await m.runIn(ns, ['nstat', '-asz', '--json']).catch(() => null)
  try {
    const j = JSON.parse(r?.stdout ?? '') as { kernel?: Record<string, number> }
    return { retrans: j.kernel?.TcpRetransSegs ?? 0, outOctets: j.kernel?.IpExtOutOctets ?? 0 }
  } catch { return { retrans: 0, outOctets: 0 } }
}

function formatTable (rows: SwarmRow[], failures: SwarmFailure[]): string {
  const head = ['release', 'N', 'new MB', 'uplink MB', 'uplink÷new', 'manifest MB seed/LAN (deltas)', 'w/o manifests', 'seed÷new', 'LAN÷new', 'ideal s', 'done s', 'time÷ideal',
    'uplink 1–99 % s', 'Mbit/s', 'downloaded s', 'ep CPU s', 'busy %', 'ours %', 'RSS MB']
  const body = rows.map(r => [r.release, String(r.N), r.newBlob_MB.toFixed(1), r.uplink_MB.toFixed(1), r.uplink_ratio.toFixed(3),
    `${r.manifest_seed_MB.toFixed(2)}/${r.manifest_lan_MB.toFixed(2)} (${r.manifest_deltas})`, r.uplink_less_manifests_ratio.toFixed(3),
    r.seed_ratio.toFixed(3), r.lan_ratio.toFixed(2), r.ideal_s.toFixed(1), r.complete_s.toFixed(1), r.time_ratio.toFixed(2),
    `${r.uplink1_s.toFixed(1)}–${r.uplink99_s.toFixed(1)}`, r.uplink_Mbps.toFixed(1), r.downloaded_s.toFixed(1), r.endpoints_cpu_s.toFixed(1),
    r.machine_busy_pct.toFixed(0), r.ours_pct_of_busy.toFixed(0), r.rss_max_MB.toFixed(0)])
  const w = head.map((h, i) => Math.max(h.length, ...body.map(b => b[i]!.length)))
  const line = (cells: string[]): string => '| ' + cells.map((c, i) => i < 1 ? c.padEnd(w[i]!) : c.padStart(w[i]!)).join(' | ') + ' |'
  return [line(head), '|' + w.map((n, i) => i < 1 ? ` ${'-'.repeat(n)} ` : ` ${'-'.repeat(n - 1)}: `).join('|') + '|', ...body.map(line),
    ...failures.map(f => `| ${f.release} | ${f.N} | failed: ${f.error.split('\n')[0]} |`)].join('\n')
}

export async function benchSwarm (opts: BenchSwarmOptions = {}): Promise<BenchSwarmResult> {
  const log = opts.log ?? (() => {})
  const o: Required<Omit<BenchSwarmOptions, 'log'>> = {
    bytes: opts.bytes ?? 200 * MiB,
    endpoints: opts.endpoints ?? [2, 10, 20],
    uplinkRate: opts.uplinkRate ?? 50_000_000,
    uplinkDelayMs: opts.uplinkDelayMs ?? 40,
    cache: opts.cache ?? true,
    keep: opts.keep ?? false
  }
  if (!existsSync(join(repoRoot, 'dist', 'src', 'cli', 'main.js'))) throw new Error(`run \`npm run build\` first: ${shoalBin} needs dist/`)
  const m = await loadTestbed()
  const reason = m.skipReason()
  if (reason !== null) {
    log(`swarm bench skipped: ${reason}`)
    return { skipped: reason }
  }
  log(`swarm bench: ${(o.bytes / MiB).toFixed(0)} MiB release, one site of N ∈ {${o.endpoints.join(', ')}} behind ${o.uplinkRate / 1e6} Mbit/s, ${o.uplinkDelayMs} ms; ` +
    `${cpus().length} cores, load ${loadavg().map(l => l.toFixed(1)).join(' ')}, Node ${process.version}`)
  const cache = await prepareReleases(m, o.bytes, o.cache, log)
  const v2 = cache.releases[1]!.pub
  log(`releases: v2 shares ${(100 * (1 - v2.newBlobBytes / v2.blobBytes)).toFixed(1)} % of its blob bytes with v1 (${v2.newChunks} of ${v2.uniqueChunks} chunks new)`)
  const rows: SwarmRow[] = []
  const failures: SwarmFailure[] = []
  try {
    for (const N of o.endpoints) {
      // A failed site size is reported and the next one still runs (its bed is already gone).
      try {
        await measureSite(m, cache, N, o, log, rows)
      } catch (err) {
        const error = err instanceof Error ? err.message : String(err)
        log(`N=${N} FAILED: ${error}`)
        for (const r of cache.releases) if (!rows.some(row => row.N === N && row.release === r.label)) failures.push({ release: r.label, N, error })
      }
    }
  } finally {
    if (!o.cache) await rm(resolve(cache.repo, '..'), { recursive: true, force: true })
  }
  const order = (a: { release: string, N: number }, b: { release: string, N: number }): number => a.release.localeCompare(b.release) || a.N - b.N
  rows.sort(order)
  failures.sort(order)
  log('\n' + formatTable(rows, failures))
  return [...rows, ...failures]
}

function parseArgs (argv: string[]): BenchSwarmOptions {
  const val = (flag: string): string | undefined => { const i = argv.indexOf(flag); return i >= 0 ? argv[i + 1] : undefined }
  const num = (flag: string): number | undefined => {
    const v = val(flag)
    if (v === undefined) return undefined
    const n = Number(v)
    if (!Number.isFinite(n) || n < 0) throw new Error(`${flag} takes a number ≥ 0`)
    return n
  }
  const endpoints = val('--endpoints')?.split(',').map(Number)
  if (endpoints !== undefined && !endpoints.every(n => Number.isInteger(n) && n >= 1 && n <= 99)) throw new Error('--endpoints takes site sizes 1…99, e.g. 2,10,20')
  const bytes = num('--bytes')
  const rate = num('--rate')
  const delay = num('--delay')
  return {
    ...(bytes !== undefined ? { bytes: Math.round(bytes) } : {}),
    ...(endpoints !== undefined ? { endpoints } : {}),
    ...(rate !== undefined ? { uplinkRate: rate } : {}),
    ...(delay !== undefined ? { uplinkDelayMs: delay } : {}),
    cache: !argv.includes('--no-cache'),
    keep: argv.includes('--keep')
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  if (process.argv.includes('--push')) {
    pushMain(process.argv).then(() => { process.exit(0) }, (err: unknown) => { console.error(err); process.exit(1) })
  } else {
    const args = parseArgs(process.argv)
    benchSwarm({ ...args, log: (l) => { console.log(l) } }).then(async (r) => {
      console.log(JSON.stringify(r))
      if (Array.isArray(r) && r.some(x => 'error' in x)) process.exitCode = 1
      const dir = join(repoRoot, 'bench', 'results')
      await mkdir(dir, { recursive: true })
      await writeFile(join(dir, 'swarm.json'), JSON.stringify({ at: new Date().toISOString(), node: process.version, options: args, result: r }, null, 2) + '\n')
    }, (err: unknown) => {
      console.error(err)
      process.exitCode = 1
    })
  }
}
