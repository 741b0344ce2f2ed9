// One worker process of bench/load.ts: `peers` libp2p nodes, each admitted to the fleet with its
// network key and fetching blobs of a published release from the seed through the endpoint's own
// WAN path (WanSources → BlobClient, `perPeer` fetches in flight per node, as a release download
// keeps WAN_IN_FLIGHT). Spawned with the job as a JSON file; talks JSON lines on stdout:
// `{"ready": …}` once every node has fetched its first blob (connected, admitted, HELLO seen),
// then it waits for "go" on stdin, loads for `seconds`, and prints `{"result": …}`.
import '../src/polyfills.js'
import { readFileSync } from 'node:fs'
import { createInterface } from 'node:readline'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { multiaddr } from '@multiformats/multiaddr'
import { cidFromHex } from '../src/core/seal.js'
import { BlobBusyError, BlobClient } from '../src/net/blobs.js'
import { createShoalNode, type ShoalNode } from '../src/net/node.js'
import { WanSources, seedSource, type WanSource } from '../src/swarm/wan-sources.js'
import { TokenBucket } from '../src/swarm/token-bucket.js'

export interface LoadJob {
  worker: number
  seed: string
  networkKeyHex: string
  blobs: Array<{ cid: string, size: number }>
  peers: number
  perPeer: number
  seconds: number
}

export interface LoadWorkerResult {
  worker: number
  fetched: number
  bytes: number
  failed: number
  /** error code → count, for failed fetches */
  errors: Record<string, number>
  /** one entry per fetch, ms, in completion order */
  latencies: number[]
  /** blobs fetched by each node */
  perNode: number[]
  /** the first fetch of each node: dial + admission + HELLO + one blob, ms */
  connectMs: number[]
  /** first fetches tried again (dial or handshake timed out) */
  connectRetries: number
  busyAnswers: number
  elapsedS: number
  rssMaxMB: number
}

const job = JSON.parse(readFileSync(process.argv[2]!, 'utf8')) as LoadJob
const networkKey = Uint8Array.from(Buffer.from(job.networkKeyHex, 'hex'))
const seedAddr = multiaddr(job.seed)
const blobs = job.blobs.map(b => ({ cid: cidFromHex(b.cid), size: b.size }))
const say = (o: object): void => { process.stdout.write(JSON.stringify(o) + '\n') }

interface Peer { node: ShoalNode, client: BlobClient, wan: WanSources, fetched: number }

const peers: Peer[] = []
const connectMs: number[] = []
const errors: Record<string, number> = {}
let connectRetries = 0
/** `busy` answers from the seed (each asked again by WanSources after a pause) */
let busyAnswers = 0
const codeOf = (err: unknown): string => (err as { code?: string }).code ?? (err as Error).name ?? 'unknown'
let rssMax = 0
const rssTimer = setInterval(() => { rssMax = Math.max(rssMax, process.memoryUsage.rss()) }, 500)

try {
  // In batches: 50 simultaneous dials from one process are fine, the seed's pending-upgrade limit
  // is the thing under test only once everyone is connected.
  const BATCH = 5
  for (let i = 0; i < job.peers; i += BATCH) {
    await Promise.all(Array.from({ length: Math.min(BATCH, job.peers - i) }, async (_, k) => {
      const node = await createShoalNode({ privateKey: await generateKeyPair('Ed25519'), listen: [], networkKey })
      const client = new BlobClient(node)
      const seed = seedSource(client, seedAddr)
      const counted: WanSource = {
        ...seed,
        fetchBatch: async (wants, onItem, opts) => {
          await seed.fetchBatch(wants, (i, blob, err) => { if (err instanceof BlobBusyError) busyAnswers++; onItem(i, blob, err) }, opts)
        }
      }
      const wan = new WanSources([counted], new TokenBucket({ rate: 0 }))
      const b = blobs[(job.worker * job.peers + i + k) % blobs.length]!
      const t0 = performance.now()
      // A dial that times out while the seed is busy with everyone else's handshakes is tried
      // again, as a daemon does; the retries are reported.
      for (let attempt = 1; ; attempt++) {
        try {
          await wan.fetch(b.cid, b.size, AbortSignal.timeout(60_000))
          break
        } catch (err) {
          if (attempt >= 5) throw err
          connectRetries++
          process.stderr.write(`worker ${job.worker}: connect attempt ${attempt}: ${codeOf(err)}: ${(err as Error).message.slice(0, 200)}\n`)
        }
      }
      connectMs.push(performance.now() - t0)
      peers.push({ node, client, wan, fetched: 0 })
    }))
  }
  say({ ready: peers.length })
  await new Promise<void>(resolve => { createInterface({ input: process.stdin }).once('line', () => { resolve() }) })

  const latencies: number[] = []
  let fetched = 0
  let bytes = 0
  let failed = 0
  const t0 = performance.now()
  const end = t0 + job.seconds * 1000
  let next = job.worker * 7919
  await Promise.all(peers.flatMap(p => Array.from({ length: job.perPeer }, async () => {
    while (performance.now() < end) {
      const b = blobs[next++ % blobs.length]!
      const s = performance.now()
      try {
        const { blob } = await p.wan.fetch(b.cid, b.size, AbortSignal.timeout(120_000))
        latencies.push(performance.now() - s)
        fetched++
        p.fetched++
        bytes += blob.byteLength
      } catch (err) {
        failed++
        const c = codeOf(err)
        errors[c] = (errors[c] ?? 0) + 1
        if (errors[c] === 1) process.stderr.write(`worker ${job.worker}: ${c}: ${(err as Error).message}\n`)
      }
    }
  })))
  const elapsedS = (performance.now() - t0) / 1000
  rssMax = Math.max(rssMax, process.memoryUsage.rss())
  say({
    result: {
      worker: job.worker, fetched, bytes, failed, errors, latencies: latencies.map(l => Math.round(l * 100) / 100),
      perNode: peers.map(p => p.fetched), connectMs, connectRetries, busyAnswers, elapsedS, rssMaxMB: rssMax / 1e6
    } satisfies LoadWorkerResult
  })
} finally {
  clearInterval(rssTimer)
  await Promise.allSettled(peers.map(async p => { await p.client.close(); await p.node.stop() }))
}
process.exit(0)
