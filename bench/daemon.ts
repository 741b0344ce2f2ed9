// Endpoint ← seed receive throughput of the daemon (issue 3), beside the raw libp2p stream of
// bench/net.ts measured in the same run (TCP + Noise + yamux, no admission, no shoal code).
//
// A release of `bytes` random (incompressible) data in a few large files is published once and
// cached under bench/.cache/daemon-<bytes>/ (keys, publisher repo, and the seed's state once it
// holds the release). A seed and an endpoint then run as separate `shoal daemon` processes on
// loopback; the endpoint starts empty, learns the head from the seed, downloads and installs.
//
// Phases come from the endpoint's own log (pino JSON on stderr):
//   download  'new channel head' → 'release downloaded'  (manifest fetch + verify, blob index,
//             fetch + verify + store every blob, the final `sync -f` of the state dir)
//   install   'release downloaded' → 'release installed' (decrypt, decompress, assemble, verify,
//             switch `current`)
// Both daemons are sampled every 200 ms from /proc/<pid>: VmRSS, VmHWM, CPU time, and rchar
// (bytes read by the process, sockets included), which shows when the bulk transfer starts and
// ends inside the download phase. The endpoint's GET /status is read once at the end only: it
// walks the whole blob store, which would disturb the measurement if polled.
// MiB/s throughout, as bench/net.ts reports (its `_MBps` keys are MiB/s).
//
//   npm run build && node dist/bench/daemon.js [--bytes N] [--net-rounds N] [--profile DIR]
//                                              [--no-cache] [--keep] [--trace FILE]
// --profile runs both daemons under `node --cpu-prof` (slower; time them without it) and prints
// the functions with the most self time inside the download phase.
import '../src/polyfills.js'
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { closeSync, createWriteStream, existsSync, openSync, readFileSync } from 'node:fs'
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { basename, join, resolve } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { initKeysDir, loadPublisherKeys } from '../src/publish/keys-dir.js'
import { publishRelease } from '../src/publish/publisher.js'
import { SeedSession } from '../src/publish/push.js'
import { DAEMON_ENV, DAEMON_NODE_FLAGS } from '../src/daemon/config.js'
import { BlobStore } from '../src/store/blob-store.js'
import { benchNet } from './net.js'

const MiB = 1024 * 1024
const SAMPLE_MS = 200
const FILE_BYTES = 256 * MiB
const PACKAGE = 'bench'
const VERSION = '1.0.0'
/** Idle figures are read this long after the daemon settles. */
const SETTLE_MS = 5_000
/** USER_HZ: the unit of utime/stime in /proc/<pid>/stat on Linux. */
const CLK_TCK = 100

export interface BenchDaemonOptions {
  /** Release size in bytes (random data). */
  bytes: number
  /** Rounds of bench/net.ts for the raw-stream ceiling (default 1; 0 skips it). */
  netRounds?: number
  /** Run the daemons under `node --cpu-prof` into this folder and summarise the download phase. */
  profileDir?: string
  /** Reuse the published release and the seed state under bench/.cache (default true). */
  cache?: boolean
  /** Keep the endpoints' temp folder. */
  keep?: boolean
  /** Write both daemons' /proc samples and log lines here (JSON), for plots and post-mortems. */
  traceFile?: string
  log?: (line: string) => void
}

// dist/bench/daemon.js, or bench/daemon.ts when a test imports it
const repoRoot = resolve(fileURLToPath(new URL('.', import.meta.url)), ...(import.meta.url.endsWith('.ts') ? ['..'] : ['..', '..']))

// ---------------------------------------------------------------------------------------------
// The published release (cached)

interface Release { dir: string, keysDir: string, repo: string, manifestPath: string, seedState: string, seedHasRelease: boolean, publishSeconds: number }
interface CacheMeta { bytes: number, manifestPath: string, expires: string, seedHasRelease?: boolean }

async function writeRandomFile (path: string, bytes: number): Promise<void> {
  const out = createWriteStream(path)
  for (let written = 0; written < bytes;) {
    const n = Math.min(MiB, bytes - written)
    if (!out.write(randomBytes(n))) await new Promise<void>(resolve => out.once('drain', () => resolve()))
    written += n
  }
  await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => { if (err != null) reject(err); else resolve() }))
}

async function prepareRelease (bytes: number, cache: boolean, work: string, log: (l: string) => void): Promise<Release> {
  const dir = cache ? join(repoRoot, 'bench', '.cache', `daemon-${bytes}`) : join(work, 'release')
  const metaPath = join(dir, 'meta.json')
  const paths = { dir, keysDir: join(dir, 'keys'), repo: join(dir, 'repo'), seedState: join(dir, 'seed') }
  if (cache && existsSync(metaPath)) {
    const meta = JSON.parse(await readFile(metaPath, 'utf8')) as CacheMeta
    if (meta.bytes === bytes && Date.parse(meta.expires) > Date.now() + 86400_000 && existsSync(meta.manifestPath)) {
      log(`release: cached in ${dir}`)
      return { ...paths, manifestPath: meta.manifestPath, seedHasRelease: meta.seedHasRelease === true && existsSync(paths.seedState), publishSeconds: 0 }
    }
  }
  await rm(dir, { recursive: true, force: true })
  await mkdir(dir, { recursive: true })
  const expires = new Date(Date.now() + 365 * 86400_000)
  await initKeysDir({ dir: paths.keysDir, rootKeys: 1, rootThreshold: 1, publisherKeys: 1, publisherThreshold: 1, expires })
  const keys = await loadPublisherKeys(paths.keysDir)
  const input = await mkdtemp(join(work, 'input-'))
  try {
    const files = Math.max(1, Math.round(bytes / FILE_BYTES))
    for (let f = 0; f < files; f++) {
      const size = f < files - 1 ? Math.floor(bytes / files) : bytes - Math.floor(bytes / files) * (files - 1)
      await writeRandomFile(join(input, `part-${f}.bin`), size)
    }
    log(`release: publishing ${(bytes / MiB).toFixed(0)} MiB of random data in ${files} file(s)…`)
    const res = await publishRelease({
      input, package: PACKAGE, version: VERSION, channel: 'stable', repoDir: paths.repo,
      signers: keys.publisherKeys, contentKey: keys.fleet.contentKey, expires
    })
    log(`release: ${res.chunks} chunks, ${(res.blobBytes / MiB).toFixed(1)} MiB of blobs, published in ${res.seconds.toFixed(1)} s`)
    const meta: CacheMeta = { bytes, manifestPath: res.manifestPath, expires: expires.toISOString() }
    await writeFile(metaPath, JSON.stringify(meta, null, 2) + '\n')
    return { ...paths, manifestPath: res.manifestPath, seedHasRelease: false, publishSeconds: res.seconds }
  } finally {
    await rm(input, { recursive: true, force: true })
  }
}

async function markSeedHasRelease (rel: Release): Promise<void> {
  const metaPath = join(rel.dir, 'meta.json')
  if (!existsSync(metaPath)) return
  const meta = JSON.parse(await readFile(metaPath, 'utf8')) as CacheMeta
  await writeFile(metaPath, JSON.stringify({ ...meta, seedHasRelease: true }, null, 2) + '\n')
}

// ---------------------------------------------------------------------------------------------
// Daemon processes

export async function freePort (): Promise<number> {
  return await new Promise<number>((resolve, reject) => {
    const srv = createServer()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address()
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0
      srv.close(() => { resolve(port) })
    })
  })
}

export interface LogLine { time: number, level: number, msg: string, [k: string]: unknown }
export interface Sample { t: number, rss: number, hwm: number, rssAnon: number, rssFile: number, cpuMs: number, rchar: number }

const live = new Set<ChildProcess>()
process.once('exit', () => { for (const c of live) c.kill('SIGKILL') })

function stdoutTo (name: string): 'ignore' | number {
  const dir = process.env.SHOAL_BENCH_STDOUT_DIR
  return dir === undefined || dir === '' ? 'ignore' : openSync(join(dir, `${name.replace(/[^a-z0-9-]/gi, '-')}.stdout`), 'w')
}

/** A `shoal daemon` child: its JSON log lines, /proc samples, and a clean stop. */
export class DaemonProc {
  readonly lines: LogLine[] = []
  readonly samples: Sample[] = []
  readonly tail: string[] = []
  readonly spawnedAt = Date.now()
  exitedAt = 0
  private readonly child: ChildProcess
  private readonly waiters = new Set<() => void>()
  private readonly exited: Promise<void>
  private sampler: NodeJS.Timeout | undefined

  constructor (readonly name: string, configPath: string, nodeArgs: string[]) {
    // SHOAL_BENCH_STDOUT_DIR: each daemon's stdout to <dir>/<name>.stdout (what --trace-gc prints)
    const out = stdoutTo(name)
    this.child = spawn(process.execPath, [...nodeArgs, join(repoRoot, 'bin', 'shoal'), 'daemon', '--config', configPath], {
      env: { ...DAEMON_ENV, ...process.env, SHOAL_LOG_JSON: '1' },
      stdio: ['ignore', out, 'pipe']
    })
    if (typeof out === 'number') closeSync(out) // the child has its own copy
    live.add(this.child)
    this.exited = new Promise(resolve => this.child.once('exit', () => {
      this.exitedAt = Date.now()
      live.delete(this.child)
      this.stopSampling()
      for (const w of this.waiters) w()
      resolve()
    }))
    createInterface({ input: this.child.stderr! }).on('line', (text) => {
      this.tail.push(text)
      if (this.tail.length > 30) this.tail.shift()
      if (!text.startsWith('{')) return
      try {
        this.lines.push(JSON.parse(text) as LogLine)
      } catch {
        return
      }
      for (const w of this.waiters) w()
    })
    this.sampler = setInterval(() => { this.sample() }, SAMPLE_MS)
  }

  get pid (): number { return this.child.pid ?? -1 }

  /** Reads /proc/<pid>: memory (bytes), CPU (ms), rchar (bytes). Null once the process is gone. */
  sample (): Sample | null {
    try {
      const status = readFileSync(`/proc/${this.pid}/status`, 'utf8')
      const kb = (key: string): number => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0) * 1024
      const stat = readFileSync(`/proc/${this.pid}/stat`, 'utf8')
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ') // fields from #3 on
      const cpuMs = (Number(fields[11]) + Number(fields[12])) * 1000 / CLK_TCK // utime, stime
      const io = readFileSync(`/proc/${this.pid}/io`, 'utf8')
      const rchar = Number(/^rchar:\s+(\d+)/m.exec(io)?.[1] ?? 0)
      const s = { t: Date.now(), rss: kb('VmRSS'), hwm: kb('VmHWM'), rssAnon: kb('RssAnon'), rssFile: kb('RssFile'), cpuMs, rchar }
      this.samples.push(s)
      return s
    } catch {
      return null
    }
  }

  stopSampling (): void {
    if (this.sampler !== undefined) clearInterval(this.sampler)
    this.sampler = undefined
  }

  /** The first log line `match` accepts; fails on a timeout or if the process exits first. */
  async waitFor (what: string, match: (l: LogLine) => boolean, timeoutMs: number): Promise<LogLine> {
    return await new Promise<LogLine>((resolve, reject) => {
      const check = (): void => {
        const hit = this.lines.find(match)
        if (hit !== undefined) { done(); resolve(hit); return }
        const fatal = this.lines.find(l => l.level >= 50)
        if (fatal !== undefined) { done(); reject(new Error(`${this.name}: ${fatal.msg} while waiting for ${what}\n${this.tail.join('\n')}`)); return }
        if (this.exitedAt !== 0) { done(); reject(new Error(`${this.name} exited while waiting for ${what}:\n${this.tail.join('\n')}`)) }
      }
      const timer = setTimeout(() => { done(); reject(new Error(`${this.name}: no "${what}" within ${timeoutMs / 1000} s:\n${this.tail.join('\n')}`)) }, timeoutMs)
      const done = (): void => { clearTimeout(timer); this.waiters.delete(check) }
      this.waiters.add(check)
      check()
    })
  }

  /** SIGTERM (the daemon stops cleanly, a --cpu-prof profile gets written), SIGKILL after 30 s. */
  async stop (): Promise<void> {
    if (this.exitedAt !== 0) return
    this.child.kill('SIGTERM')
    const hard = setTimeout(() => { this.child.kill('SIGKILL') }, 30_000)
    await this.exited
    clearTimeout(hard)
  }

  /** Samples within [from, to] (epoch ms). */
  between (from: number, to: number): Sample[] {
    return this.samples.filter(s => s.t >= from && s.t <= to)
  }

  /** The last sample at or before `t` (or the first one). */
  at (t: number): Sample {
    let best = this.samples[0]!
    for (const s of this.samples) if (s.t <= t) best = s
    return best
  }
}

export async function writeConfig (dir: string, name: string, cfg: Record<string, unknown>): Promise<string> {
  const path = join(dir, `${name}.json`)
  await writeFile(path, JSON.stringify(cfg, null, 2) + '\n')
  return path
}

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

/** Time (epoch ms) at which `value(sample)` first reaches `target`, interpolated between samples. */
function crossing (samples: Sample[], value: (s: Sample) => number, target: number): number | undefined {
  for (let i = 1; i < samples.length; i++) {
    const a = samples[i - 1]!
    const b = samples[i]!
    const va = value(a)
    const vb = value(b)
    if (vb >= target) return va >= target || vb === va ? a.t : a.t + (b.t - a.t) * (target - va) / (vb - va)
  }
  return undefined
}

// ---------------------------------------------------------------------------------------------
// CPU profile summary: self time per function within a time window

interface ProfileNode { id: number, callFrame: { functionName: string, url: string, lineNumber: number }, children?: number[] }
interface CpuProfile { nodes: ProfileNode[], startTime: number, endTime: number, samples: number[], timeDeltas: number[] }

export interface ProfileSummary {
  windowMs: number
  sampledMs: number
  top: Array<{ fn: string, ms: number, pct: number }>
  byFile: Array<{ file: string, ms: number, pct: number }>
  /** Time with the function anywhere on the stack (each sample counted once per function). */
  inclusive: Array<{ fn: string, ms: number, pct: number }>
}

/**
 * Self time of each function in the samples taken between `from` and `to` (epoch ms). A profile's
 * clock is monotonic: its start is aligned with the moment the process was spawned (off by the
 * tens of ms Node takes to start the profiler).
 */
export function summarizeProfile (p: CpuProfile, spawnedAt: number, from: number, to: number, top = 30): ProfileSummary {
  const byId = new Map(p.nodes.map(n => [n.id, n]))
  const parentOf = new Map<number, number>()
  for (const n of p.nodes) for (const c of n.children ?? []) parentOf.set(c, n.id)
  const fnName = (cf: ProfileNode['callFrame']): string => {
    const file = cf.url === '' ? '(native/vm)' : shortUrl(cf.url)
    return `${cf.functionName === '' ? '(anonymous)' : cf.functionName} ${cf.url === '' ? '' : `${file}:${cf.lineNumber + 1}`}`.trim()
  }
  const fnIncl = new Map<string, number>()
  const fnSelf = new Map<string, number>()
  const fileSelf = new Map<string, number>()
  let t = p.startTime
  let total = 0
  for (let i = 0; i < p.samples.length; i++) {
    const dt = p.timeDeltas[i] ?? 0
    t += dt
    const epoch = spawnedAt + (t - p.startTime) / 1000
    if (epoch < from || epoch > to) continue
    const n = byId.get(p.samples[i]!)
    if (n === undefined) continue
    const cf = n.callFrame
    const ms = (p.timeDeltas[i + 1] ?? dt) / 1000 // a sample stands for the interval up to the next one
    const file = cf.url === '' ? '(native/vm)' : shortUrl(cf.url)
    const fn = fnName(cf)
    fnSelf.set(fn, (fnSelf.get(fn) ?? 0) + ms)
    const onStack = new Set<string>()
    for (let id: number | undefined = n.id; id !== undefined; id = parentOf.get(id)) onStack.add(fnName(byId.get(id)!.callFrame))
    for (const f of onStack) fnIncl.set(f, (fnIncl.get(f) ?? 0) + ms)
    fileSelf.set(file, (fileSelf.get(file) ?? 0) + ms)
    total += ms
  }
  const rank = (m: Map<string, number>): Array<[string, number]> => [...m].sort((a, b) => b[1] - a[1]).slice(0, top)
  return {
    windowMs: to - from,
    sampledMs: total,
    top: rank(fnSelf).map(([fn, ms]) => ({ fn, ms, pct: 100 * ms / total })),
    byFile: rank(fileSelf).map(([file, ms]) => ({ file, ms, pct: 100 * ms / total })),
    inclusive: [...fnIncl].sort((a, b) => b[1] - a[1]).slice(0, 4 * top).map(([fn, ms]) => ({ fn, ms, pct: 100 * ms / total }))
  }
}

function shortUrl (url: string): string {
  const path = url.replace(/^file:\/\//, '')
  const nm = path.lastIndexOf('/node_modules/')
  if (nm >= 0) return path.slice(nm + '/node_modules/'.length)
  const dist = path.indexOf('/dist/')
  if (dist >= 0) return path.slice(dist + '/dist/'.length)
  return path.startsWith('node:') ? path : basename(path)
}

async function readProfile (dir: string, name: string): Promise<CpuProfile | undefined> {
  const file = (await readdir(dir).catch(() => [] as string[])).find(f => f === `${name}.cpuprofile`)
  if (file === undefined) return undefined
  return JSON.parse(await readFile(join(dir, file), 'utf8')) as CpuProfile
}

// ---------------------------------------------------------------------------------------------

export async function benchDaemon (opts: BenchDaemonOptions): Promise<Record<string, number>> {
  const log = opts.log ?? (() => {})
  const bytes = opts.bytes
  const netRounds = opts.netRounds ?? 1
  if (!existsSync(join(repoRoot, 'dist', 'src', 'cli', 'main.js'))) throw new Error(`run \`npm run build\` first: ${repoRoot}/bin/shoal needs dist/`)
  const work = await mkdtemp(join(tmpdir(), 'shoal-bench-daemon-'))
  const procs: DaemonProc[] = []
  const out: Record<string, number> = {}
  // The daemon as deployed (examples/shoal.service); the endpoints (measured and idle) add
  // SHOAL_BENCH_NODE_FLAGS, for experiments with GC flags; the profiler when asked.
  const endpointFlags = [...DAEMON_NODE_FLAGS, ...(process.env.SHOAL_BENCH_NODE_FLAGS ?? '').split(/\s+/).filter(f => f !== '')]
  const profArgs = (name: string): string[] => [...(name === 'seed' ? DAEMON_NODE_FLAGS : endpointFlags), ...(opts.profileDir === undefined ? [] : ['--cpu-prof', '--cpu-prof-dir', opts.profileDir, '--cpu-prof-name', `${name}.cpuprofile`])]
  if (opts.profileDir !== undefined) await mkdir(opts.profileDir, { recursive: true })
  try {
    const rel = await prepareRelease(bytes, opts.cache ?? true, work, log)
    if (rel.publishSeconds > 0) out.publish_s = rel.publishSeconds
    const manifestBytes = await readFile(rel.manifestPath)
    const manifest = JSON.parse(manifestBytes.toString('utf8')) as { signed: { chunks: Array<{ cid: string, size: number }> } }
    const unique = new Map(manifest.signed.chunks.map(c => [c.cid, c.size]))
    const blobBytes = [...unique.values()].reduce((a, b) => a + b, 0)
    out.blobs = unique.size
    out.blob_MiB = blobBytes / MiB
    out.manifest_MiB = manifestBytes.byteLength / MiB

    // The seed: cached state when it already holds the release, else a push from the publisher repo.
    const [seedPort, endpointPort, apiPort, idlePort] = [await freePort(), await freePort(), await freePort(), await freePort()]
    const seedCfg = await writeConfig(work, 'seed', {
      role: 'seed', stateDir: rel.seedState, listen: [`/ip4/127.0.0.1/tcp/${seedPort}`], enroll: join(rel.keysDir, 'seed-enroll.json'), api: null, logLevel: 'info'
    })
    const seed = new DaemonProc('seed', seedCfg, profArgs('seed'))
    procs.push(seed)
    const started = await seed.waitFor('seed start', l => l.msg === 'shoal seed started', 60_000)
    const seedAddr = `/ip4/127.0.0.1/tcp/${seedPort}/p2p/${String(started.peerId)}`
    if (!rel.seedHasRelease) {
      log(`seed: pushing the release to ${seedAddr}…`)
      const keys = await loadPublisherKeys(rel.keysDir)
      const t0 = performance.now()
      const s = await SeedSession.open({ seed: seedAddr, networkKey: keys.fleet.networkKey, privateKey: await generateKeyPair('Ed25519'), blobs: await BlobStore.open(rel.repo) })
      try {
        const m = await readFile(rel.manifestPath)
        await s.offer(m)
        const res = await s.commit(m)
        out.push_s = (performance.now() - t0) / 1000
        log(`seed: got ${res.fetched} blobs (${(res.fetchedBytes / MiB).toFixed(1)} MiB) in ${out.push_s.toFixed(1)} s`)
      } finally {
        await s.close()
      }
      if (opts.cache ?? true) await markSeedHasRelease(rel)
    }

    // An idle endpoint: enrolled, connected to the seed, following a channel with nothing in it.
    const idleCfg = await writeConfig(work, 'idle', {
      role: 'endpoint', stateDir: join(work, 'idle'), listen: [`/ip4/127.0.0.1/tcp/${idlePort}`], seeds: [seedAddr],
      enroll: join(rel.keysDir, 'enroll.json'), api: null, channels: ['idle'], logLevel: 'info'
    })
    const idle = new DaemonProc('idle endpoint', idleCfg, endpointFlags)
    procs.push(idle)
    await idle.waitFor('endpoint start', l => l.msg === 'shoal endpoint started', 60_000)
    // Both settle together: idle figures for the seed and for a fresh endpoint.
    await sleep(SETTLE_MS)
    out.seed_idle_rss_MB = (seed.sample()?.rss ?? 0) / 1e6
    out.endpoint_idle_rss_MB = (idle.sample()?.rss ?? 0) / 1e6
    await idle.stop()

    // The raw libp2p stream (and the blobs protocol from memory) of bench/net.ts, in this run.
    if (netRounds > 0) {
      log(`raw: bench/net.ts, ${netRounds} round(s) of ${(bytes / MiB).toFixed(0)} MiB…`)
      const net = await benchNet({ bytes, rounds: netRounds, log })
      out.raw_MiBps = net.raw_MBps!
      out.raw_rx_cpu_ms_per_MiB = net.raw_rx_cpu_ms_per_MiB!
      out.raw_sha256_MiBps = net.raw_sha256_MBps!
      out.blobs16k_mem_MiBps = net.blobs_16k_handshake_MBps!
    }

    // The measured endpoint: empty state, learns the head from the seed at start.
    const epCfg = await writeConfig(work, 'endpoint', {
      role: 'endpoint', stateDir: join(work, 'endpoint'), listen: [`/ip4/127.0.0.1/tcp/${endpointPort}`], seeds: [seedAddr],
      enroll: join(rel.keysDir, 'enroll.json'), api: `127.0.0.1:${apiPort}`, logLevel: 'info'
    })
    log(`endpoint: downloading ${(blobBytes / MiB).toFixed(0)} MiB (${unique.size} blobs) from the seed…`)
    const ep = new DaemonProc('endpoint', epCfg, profArgs('endpoint'))
    procs.push(ep)
    const timeout = 120_000 + bytes / 1e6 * 1000 // 1 MB/s at worst
    const head = await ep.waitFor('new channel head', l => l.msg === 'new channel head', 60_000)
    const downloaded = await ep.waitFor('release downloaded', l => l.msg === 'release downloaded', timeout)
    const installed = await ep.waitFor('release installed', l => l.msg === 'release installed' || l.msg === 'install failed; previous version kept', timeout)
    if (installed.msg !== 'release installed') throw new Error(`endpoint: ${installed.msg}`)
    await sleep(SETTLE_MS)
    const settled = ep.sample()
    const status = await (await fetch(`http://127.0.0.1:${apiPort}/status`)).json() as { packages: Array<{ name: string, installed: string | null }>, bytes: { seed: number } }
    const pkg = status.packages.find(p => p.name === PACKAGE)
    if (pkg?.installed !== VERSION) throw new Error(`endpoint status: ${JSON.stringify(status.packages)}`)
    if (status.bytes.seed !== blobBytes) throw new Error(`endpoint counted ${status.bytes.seed} bytes from the seed, expected ${blobBytes}`)

    const tHead = head.time
    const tDone = downloaded.time
    const tInstalled = installed.time
    const downloadS = (tDone - tHead) / 1000
    out.download_s = downloadS
    out.install_s = (tInstalled - tDone) / 1000
    out.shoal_MiBps = blobBytes / MiB / downloadS
    // Inside the download phase, from the bytes the endpoint read (the manifest comes first and is
    // not counted): bulk start/end when 1 % / 99 % of the blob bytes are in.
    const r0 = ep.at(tHead).rchar + manifestBytes.byteLength
    const during = ep.between(tHead - SAMPLE_MS, tDone + SAMPLE_MS)
    const t1 = crossing(during, s => s.rchar - r0, 0.01 * blobBytes)
    const t5 = crossing(during, s => s.rchar - r0, 0.05 * blobBytes)
    const t95 = crossing(during, s => s.rchar - r0, 0.95 * blobBytes)
    const t99 = crossing(during, s => s.rchar - r0, 0.99 * blobBytes)
    if (t1 !== undefined && t99 !== undefined) {
      out.before_bulk_s = (t1 - tHead) / 1000
      out.bulk_s = (t99 - t1) / 1000
      out.after_bulk_s = (tDone - t99) / 1000
    }
    if (t5 !== undefined && t95 !== undefined) out.shoal_steady_MiBps = 0.9 * blobBytes / MiB / ((t95 - t5) / 1000)
    if (out.raw_MiBps !== undefined) {
      out.ratio = out.shoal_MiBps / out.raw_MiBps
      if (out.shoal_steady_MiBps !== undefined) out.steady_ratio = out.shoal_steady_MiBps / out.raw_MiBps
    }
    const cpu = (p: DaemonProc, from: number, to: number): number => (p.at(to).cpuMs - p.at(from).cpuMs) / (blobBytes / MiB)
    out.endpoint_cpu_ms_per_MiB = cpu(ep, tHead, tDone)
    out.seed_cpu_ms_per_MiB = cpu(seed, tHead, tDone)
    const maxRss = (p: DaemonProc, from: number, to: number): number => Math.max(0, ...p.between(from, to).map(s => s.rss)) / 1e6
    out.endpoint_rss_download_max_MB = maxRss(ep, tHead, tDone)
    out.endpoint_rss_install_max_MB = maxRss(ep, tDone, tInstalled)
    out.endpoint_hwm_MB = (settled?.hwm ?? 0) / 1e6
    out.endpoint_idle_after_rss_MB = (settled?.rss ?? 0) / 1e6
    out.seed_rss_serving_max_MB = maxRss(seed, tHead, tDone)
    // Anonymous memory (heap, buffers, malloc) vs file-backed pages (code, mmapped LevelDB tables).
    const maxAnon = (p: DaemonProc, from: number, to: number): number => Math.max(0, ...p.between(from, to).map(s => s.rssAnon)) / 1e6
    out.endpoint_rss_anon_download_max_MB = maxAnon(ep, tHead, tDone)
    out.seed_rss_anon_serving_max_MB = maxAnon(seed, tHead, tDone)
    if (opts.traceFile !== undefined) {
      const trace = Object.fromEntries([seed, ep].map(p => [p.name, { spawnedAt: p.spawnedAt, samples: p.samples, log: p.lines }]))
      await writeFile(opts.traceFile, JSON.stringify({ bytes, blobBytes, tHead, tDone, tInstalled, ...trace }) + '\n')
    }

    log(`endpoint: download ${downloadS.toFixed(1)} s = ${out.shoal_MiBps.toFixed(1)} MiB/s` +
      (out.raw_MiBps !== undefined ? ` (${(100 * out.ratio!).toFixed(0)} % of raw ${out.raw_MiBps.toFixed(1)} MiB/s)` : '') +
      `; bulk ${out.bulk_s?.toFixed(1) ?? '?'} s, ${out.shoal_steady_MiBps?.toFixed(1) ?? '?'} MiB/s steady; install ${out.install_s.toFixed(1)} s`)
    log(`RSS: endpoint idle ${out.endpoint_idle_rss_MB.toFixed(0)} MB, downloading ≤ ${out.endpoint_rss_download_max_MB.toFixed(0)} MB, installing ≤ ${out.endpoint_rss_install_max_MB.toFixed(0)} MB, idle after ${out.endpoint_idle_after_rss_MB.toFixed(0)} MB; seed idle ${out.seed_idle_rss_MB.toFixed(0)} MB, serving ≤ ${out.seed_rss_serving_max_MB.toFixed(0)} MB`)

    for (const p of procs) await p.stop()
    if (opts.profileDir !== undefined) {
      for (const p of [ep, seed]) {
        const prof = await readProfile(opts.profileDir, p === ep ? 'endpoint' : 'seed')
        if (prof === undefined) { log(`profile: none written for the ${p.name}`); continue }
        const s = summarizeProfile(prof, p.spawnedAt, tHead, tDone)
        log(`\nprofile, ${p.name}, download phase (${(s.windowMs / 1000).toFixed(1)} s, ${(s.sampledMs / 1000).toFixed(1)} s sampled incl. idle):`)
        for (const r of s.top) log(`  ${r.ms.toFixed(0).padStart(7)} ms ${r.pct.toFixed(1).padStart(5)} %  ${r.fn}`)
        log('  by file:')
        for (const r of s.byFile.slice(0, 15)) log(`  ${r.ms.toFixed(0).padStart(7)} ms ${r.pct.toFixed(1).padStart(5)} %  ${r.file}`)
        await writeFile(join(opts.profileDir, `${p === ep ? 'endpoint' : 'seed'}-download.json`), JSON.stringify(s, null, 2) + '\n')
      }
    }
    return out
  } finally {
    await Promise.all(procs.map(async p => { await p.stop() }))
    if (opts.keep === true) log(`kept ${work}`)
    else await rm(work, { recursive: true, force: true })
  }
}

function parseArgs (argv: string[]): BenchDaemonOptions {
  const val = (flag: string): string | undefined => { const i = argv.indexOf(flag); return i >= 0 ? argv[i + 1] : undefined }
  const num = (flag: string, dflt: number, min: number): number => {
    const v = Number(val(flag) ?? dflt)
    if (!Number.isSafeInteger(v) || v < min) throw new Error(`${flag} takes an integer ≥ ${min}`)
    return v
  }
  const profile = val('--profile')
  const trace = val('--trace')
  return {
    bytes: num('--bytes', 1024 * MiB, 1),
    netRounds: num('--net-rounds', 1, 0),
    cache: !argv.includes('--no-cache'),
    keep: argv.includes('--keep'),
    ...(profile !== undefined ? { profileDir: resolve(profile) } : {}),
    ...(trace !== undefined ? { traceFile: resolve(trace) } : {})
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const args = parseArgs(process.argv)
  console.log(`daemon bench: ${(args.bytes / MiB).toFixed(0)} MiB release, seed and endpoint as separate processes on loopback, Node ${process.version}`)
  benchDaemon({ ...args, log: (l) => { console.log(l) } }).then((r) => {
    console.table(r)
    console.log(JSON.stringify(r))
  }, (err: unknown) => {
    console.error(err)
    process.exitCode = 1
  })
}
