// Load on one seed (issue 7): `peers` libp2p nodes in `workers` processes (bench/load-worker.ts),
// each admitted with the fleet's network key and fetching blobs of a published release from a
// real `shoal daemon` seed for `seconds`, through the endpoint's WAN path (WanSources → BlobClient,
// `perPeer` fetches in flight per node). Reported: failed fetches (by error code), blobs/s and
// MiB/s served, p50/p99/max blob latency, the seed's RSS (sampled every 200 ms from /proc: idle
// before, max under load, after), its CPU, and fairness across nodes (min/max blobs per node,
// Jain's index). The release (random data, so blobs are incompressible) is published fresh each run.
//
//   npm run bench -- --only load                       # 200 peers in 4 processes, 60 s
//   node dist/bench/load.js [--peers N] [--workers N] [--seconds N] [--per-peer N] [--bytes N]
import '../src/polyfills.js'
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtemp, readFile, rm, writeFile, mkdir } from 'node:fs/promises'
import { tmpdir, loadavg } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { initKeysDir, loadPublisherKeys } from '../src/publish/keys-dir.js'
import { publishRelease } from '../src/publish/publisher.js'
import { SeedSession } from '../src/publish/push.js'
import { BlobStore } from '../src/store/blob-store.js'
import { WAN_IN_FLIGHT } from '../src/swarm/release-fetch.js'
import { DaemonProc, freePort, writeConfig } from './daemon.js'
import type { LoadJob, LoadWorkerResult } from './load-worker.js'

const MiB = 1024 * 1024

export interface LoadOptions {
  peers: number
  workers: number
  seconds: number
  /** Fetches in flight per node (default WAN_IN_FLIGHT: what a release download keeps). */
  perPeer?: number
  /** Release size (random data). */
  bytes?: number
  log?: (line: string) => void
}

export interface LoadResult {
  peers: number
  workers: number
  seconds: number
  per_peer: number
  release_blobs: number
  release_MiB: number
  fetched: number
  failed: number
  /** error code → count */
  errors: Record<string, number>
  blobs_per_s: number
  MiB_per_s: number
  latency_p50_ms: number
  latency_p99_ms: number
  latency_max_ms: number
  connect_p50_ms: number
  connect_max_ms: number
  connect_retries: number
  /** `busy` answers of the seed, each asked again after a pause (not failures) */
  busy_answers: number
  seed_rss_idle_MB: number
  seed_rss_max_MB: number
  seed_rss_after_MB: number
  seed_cpu_pct: number
  worker_rss_max_MB: number
  node_blobs_min: number
  node_blobs_max: number
  /** Jain's fairness index of blobs per node: 1 = every node got the same. */
  fairness: number
  loadavg_before: string
  loadavg_after: string
}

// Worker processes run the compiled harness: from the TypeScript source (vitest), the one in dist/.
const WORKER = fileURLToPath(import.meta.url.endsWith('.ts')
  ? new URL('../dist/bench/load-worker.js', import.meta.url)
  : new URL('./load-worker.js', import.meta.url))

function quantile (sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return NaN
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!
}

/** A worker process: its JSON lines, its first `{"ready"}` and its `{"result"}`. */
class Worker {
  readonly child: ChildProcess
  readonly ready: Promise<number>
  readonly result: Promise<LoadWorkerResult>
  readonly stderr: string[] = []

  constructor (jobPath: string) {
    this.child = spawn(process.execPath, [WORKER, jobPath], { stdio: ['pipe', 'pipe', 'pipe'] })
    createInterface({ input: this.child.stderr! }).on('line', (l) => { if (this.stderr.length < 20) this.stderr.push(l) })
    const lines = createInterface({ input: this.child.stdout! })
    const exited = new Promise<never>((_resolve, reject) => {
      this.child.once('exit', (code) => { reject(new Error(`load worker exited (${String(code)}):\n${this.stderr.join('\n')}`)) })
    })
    this.ready = Promise.race([new Promise<number>(resolve => lines.on('line', (l) => {
      const m = JSON.parse(l) as { ready?: number }
      if (m.ready !== undefined) resolve(m.ready)
    })), exited])
    this.result = Promise.race([new Promise<LoadWorkerResult>(resolve => lines.on('line', (l) => {
      const m = JSON.parse(l) as { result?: LoadWorkerResult }
      if (m.result !== undefined) resolve(m.result)
    })), exited])
    this.ready.catch(() => {})
    this.result.catch(() => {})
  }

  go (): void { this.child.stdin!.write('go\n') }
  kill (): void { if (this.child.exitCode === null) this.child.kill('SIGKILL') }
}

export async function benchLoad (o: LoadOptions): Promise<LoadResult> {
  const log = o.log ?? (() => {})
  const perPeer = o.perPeer ?? WAN_IN_FLIGHT
  const bytes = o.bytes ?? 32 * MiB
  const work = await mkdtemp(join(tmpdir(), 'shoal-bench-load-'))
  let seed: DaemonProc | undefined
  const workers: Worker[] = []
  try {
    // a release of random data
    const keysDir = join(work, 'keys')
    const repo = join(work, 'repo')
    const expires = new Date(Date.now() + 30 * 86400_000)
    await initKeysDir({ dir: keysDir, rootKeys: 1, rootThreshold: 1, publisherKeys: 1, publisherThreshold: 1, expires })
    const keys = await loadPublisherKeys(keysDir)
    const input = join(work, 'input')
    await mkdir(input)
    await writeFile(join(input, 'data.bin'), randomBytes(bytes))
    const pub = await publishRelease({ input, package: 'load', version: '1.0.0', channel: 'stable', repoDir: repo, signers: keys.publisherKeys, contentKey: keys.fleet.contentKey, expires, threads: 1 })
    await rm(input, { recursive: true })
    const manifestBytes = await readFile(pub.manifestPath)
    const manifest = JSON.parse(manifestBytes.toString('utf8')) as { signed: { chunks: Array<{ cid: string, size: number }> } }
    const blobs = [...new Map(manifest.signed.chunks.map(c => [c.cid, c])).values()].map(c => ({ cid: c.cid, size: c.size }))
    const releaseBytes = blobs.reduce((s, b) => s + b.size, 0)
    log(`release: ${blobs.length} blobs, ${(releaseBytes / MiB).toFixed(1)} MiB`)

    // the seed, holding the release
    const port = await freePort()
    const seedCfg = await writeConfig(work, 'seed', {
      role: 'seed', stateDir: join(work, 'seed'), listen: [`/ip4/127.0.0.1/tcp/${port}`], enroll: join(keysDir, 'seed-enroll.json'), api: null, logLevel: 'info'
    })
    seed = new DaemonProc('seed', seedCfg, [])
    const started = await seed.waitFor('seed start', l => l.msg === 'shoal seed started', 60_000)
    const seedAddr = `/ip4/127.0.0.1/tcp/${port}/p2p/${String(started.peerId)}`
    const session = await SeedSession.open({ seed: seedAddr, networkKey: keys.fleet.networkKey, privateKey: await generateKeyPair('Ed25519'), blobs: await BlobStore.open(repo) })
    try {
      await session.offer(manifestBytes)
      await session.commit(manifestBytes)
    } finally {
      await session.close()
    }
    await new Promise(resolve => setTimeout(resolve, 1000))
    const idle = seed.sample()

    // the workers: connect every node, then load together
    const per = Math.ceil(o.peers / o.workers)
    for (let w = 0; w < o.workers; w++) {
      const n = Math.min(per, o.peers - w * per)
      if (n <= 0) break
      const job: LoadJob = { worker: w, seed: seedAddr, networkKeyHex: Buffer.from(keys.fleet.networkKey).toString('hex'), blobs, peers: n, perPeer, seconds: o.seconds }
      const path = join(work, `job-${w}.json`)
      await writeFile(path, JSON.stringify(job))
      workers.push(new Worker(path))
    }
    const tc = Date.now()
    const ready = (await Promise.all(workers.map(async w => await w.ready))).reduce((a, b) => a + b, 0)
    log(`${ready} nodes in ${workers.length} processes connected and admitted in ${((Date.now() - tc) / 1000).toFixed(1)} s`)
    const loadBefore = loadavg().map(l => l.toFixed(2)).join(' ')
    const t0 = Date.now()
    for (const w of workers) w.go()
    const results = await Promise.all(workers.map(async w => await w.result))
    const t1 = Date.now()
    for (const w of workers) for (const l of w.stderr) log(`  ${l}`)
    const loadAfter = loadavg().map(l => l.toFixed(2)).join(' ')
    await new Promise(resolve => setTimeout(resolve, 1000))
    const after = seed.sample()

    const lat = results.flatMap(r => r.latencies).sort((a, b) => a - b)
    const conn = results.flatMap(r => r.connectMs).sort((a, b) => a - b)
    const perNode = results.flatMap(r => r.perNode)
    const fetched = results.reduce((s, r) => s + r.fetched, 0)
    const bytesOut = results.reduce((s, r) => s + r.bytes, 0)
    const errors: Record<string, number> = {}
    for (const r of results) for (const [k, v] of Object.entries(r.errors)) errors[k] = (errors[k] ?? 0) + v
    const elapsed = Math.max(...results.map(r => r.elapsedS))
    const during = seed.between(t0, t1)
    const sum = perNode.reduce((a, b) => a + b, 0)
    const sumSq = perNode.reduce((a, b) => a + b * b, 0)
    const cpu0 = seed.at(t0).cpuMs
    const cpu1 = seed.at(t1).cpuMs
    return {
      peers: ready,
      workers: workers.length,
      seconds: elapsed,
      per_peer: perPeer,
      release_blobs: blobs.length,
      release_MiB: releaseBytes / MiB,
      fetched,
      failed: results.reduce((s, r) => s + r.failed, 0),
      errors,
      blobs_per_s: fetched / elapsed,
      MiB_per_s: bytesOut / MiB / elapsed,
      latency_p50_ms: quantile(lat, 0.5),
      latency_p99_ms: quantile(lat, 0.99),
      latency_max_ms: lat.at(-1) ?? NaN,
      connect_p50_ms: quantile(conn, 0.5),
      connect_max_ms: conn.at(-1) ?? NaN,
      connect_retries: results.reduce((s, r) => s + r.connectRetries, 0),
      busy_answers: results.reduce((s, r) => s + r.busyAnswers, 0),
      seed_rss_idle_MB: (idle?.rss ?? NaN) / 1e6,
      seed_rss_max_MB: Math.max(0, ...during.map(s => s.rss)) / 1e6,
      seed_rss_after_MB: (after?.rss ?? NaN) / 1e6,
      seed_cpu_pct: 100 * (cpu1 - cpu0) / (t1 - t0),
      worker_rss_max_MB: Math.max(...results.map(r => r.rssMaxMB)),
      node_blobs_min: Math.min(...perNode),
      node_blobs_max: Math.max(...perNode),
      fairness: sumSq === 0 ? NaN : sum * sum / (perNode.length * sumSq),
      loadavg_before: loadBefore,
      loadavg_after: loadAfter
    }
  } finally {
    for (const w of workers) w.kill()
    await seed?.stop()
    await rm(work, { recursive: true, force: true })
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const val = (flag: string, dflt: number): number => { const i = process.argv.indexOf(flag); return i >= 0 ? Number(process.argv[i + 1]) : dflt }
  benchLoad({
    peers: val('--peers', 200), workers: val('--workers', 4), seconds: val('--seconds', 60), perPeer: val('--per-peer', WAN_IN_FLIGHT), bytes: val('--bytes', 32 * MiB),
    log: (l) => { console.log(l) }
  }).then((r) => { console.log(JSON.stringify(r, null, 2)) }, (err: unknown) => { console.error(err); process.exitCode = 1 })
}
