// Loopback throughput of the net layer (docs/security.md quotes it):
//   raw          a bare libp2p stream (TCP + Noise + yamux, no admission, no shoal code) carrying
//                64 KiB pieces with backpressure honoured — the ceiling the blobs protocol is held to
//   raw_sha256   the same, the receiver also hashing every byte: the floor of any verified transfer
//   blobs_*      /shoal/blobs/1 fetching 16 KiB and 64 KiB blobs, many in flight, from an in-memory
//                BlobSource, each verified (SHA-256), with admission = handshake and = pnet
// The sending node runs in a child process, as on another machine; the receiver is this process.
// Besides MB/s (wall clock, sensitive to other load on the host) each case reports the CPU time
// both processes spent per MiB moved, which other load disturbs less.
//   node dist/bench/net.js --bytes 1073741824 [--rounds 3] [--inflight 128]
import '../src/polyfills.js'
import { fork, type ChildProcess } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { Libp2p, Stream } from '@libp2p/interface'
import { noise } from '@libp2p/noise'
import { tcp } from '@libp2p/tcp'
import { yamux } from '@libp2p/yamux'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'
import type { AdmissionMode } from '../src/net/admission.js'
import { BlobClient, registerBlobsProtocol, type BlobSource } from '../src/net/blobs.js'
import { waitForDrain } from '../src/net/framing.js'
import { createShoalNode } from '../src/net/node.js'

const RAW_PROTOCOL = '/shoal-bench/raw/1'
const PIECE = 64 * 1024
const MiB = 1024 * 1024
const SERVE_FLAG = '--serve-bench-net'

export interface BenchNetOptions {
  /** Bytes moved per run. */
  bytes: number
  /** Rounds of every case, interleaved; figures are medians (default 3). */
  rounds?: number
  /** Requests the blobs client keeps in flight (default 128). */
  inflight?: number
  log?: (line: string) => void
}

type ServerSpec =
  | { kind: 'raw', bytes: number }
  | { kind: 'blobs', bytes: number, blobSize: number, admission: AdmissionMode, networkKey: Uint8Array }

interface ServerInfo { addr: string, cids: Uint8Array[] }
interface Run { mbps: number, rxCpuMsPerMiB: number, txCpuMsPerMiB: number, rxRssMiB: number, txRssMiB: number }
interface Sender { info: ServerInfo, begin: () => void, end: () => Promise<{ cpuMs: number, rssMiB: number }>, stop: () => Promise<void> }

export async function benchNet (opts: BenchNetOptions): Promise<Record<string, number>> {
  const log = opts.log ?? (() => {})
  const rounds = opts.rounds ?? 3
  const inflight = opts.inflight ?? 128
  const cases: Array<{ name: string, run: () => Promise<Run> }> = [
    { name: 'raw', run: async () => await benchRaw(opts.bytes, false) },
    { name: 'raw_sha256', run: async () => await benchRaw(opts.bytes, true) }
  ]
  for (const admission of ['handshake', 'pnet'] as const) {
    for (const size of [16 * 1024, 64 * 1024]) {
      cases.push({
        name: `blobs_${size / 1024}k_${admission}`,
        run: async () => await benchBlobs(opts.bytes, size, admission, inflight)
      })
    }
  }
  // Rounds interleave the cases so that load from other processes hits all of them alike; each
  // figure is the median of its rounds.
  const runs = new Map<string, Run[]>(cases.map((c) => [c.name, []]))
  for (let r = 0; r < rounds; r++) {
    for (const c of cases) runs.get(c.name)!.push(await c.run())
  }
  const out: Record<string, number> = {}
  const rawRuns = runs.get('raw')!
  const raw = median(rawRuns.map((r) => r.mbps))
  const rawCpu = median(rawRuns.map((r) => r.rxCpuMsPerMiB))
  log(`${''.padEnd(20)} ${'MB/s'.padStart(7)} ${'×raw'.padStart(5)}   ${'rx CPU ms/MiB'.padStart(13)} ${'tx CPU ms/MiB'.padStart(13)}  runs (MB/s)`)
  for (const c of cases) {
    const all = runs.get(c.name)!
    const m = median(all.map((r) => r.mbps))
    const rx = median(all.map((r) => r.rxCpuMsPerMiB))
    const tx = median(all.map((r) => r.txCpuMsPerMiB))
    out[`${c.name}_MBps`] = m
    out[`${c.name}_rx_cpu_ms_per_MiB`] = rx
    out[`${c.name}_tx_cpu_ms_per_MiB`] = tx
    if (c.name !== 'raw') {
      out[`${c.name}_ratio`] = m / raw
      out[`${c.name}_rx_cpu_ratio`] = rawCpu / rx
    }
    const list = all.map((r) => r.mbps.toFixed(0)).join(' ')
    log(`${c.name.padEnd(20)} ${m.toFixed(1).padStart(7)} ${(m / raw).toFixed(2).padStart(5)}   ${rx.toFixed(2).padStart(13)} ${tx.toFixed(2).padStart(13)}  [${list}]`)
  }
  const all = [...runs.values()].flat()
  out.rss_receiver_max_MiB = Math.max(...all.map((r) => r.rxRssMiB))
  out.rss_sender_max_MiB = Math.max(...all.map((r) => r.txRssMiB))
  log(`max RSS: receiver ${out.rss_receiver_max_MiB.toFixed(0)} MiB, sender ${out.rss_sender_max_MiB.toFixed(0)} MiB (blob working set ≤ 64 MiB included)`)
  return out
}

function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const mid = Math.floor(s.length / 2)
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2
}

/** Measures one timed transfer: wall time, this process's CPU, the sender's CPU, peak RSS. */
async function measure (bytes: number, sender: Sender, transfer: () => Promise<number>): Promise<Run> {
  let rss = process.memoryUsage().rss
  const sampler = setInterval(() => { rss = Math.max(rss, process.memoryUsage().rss) }, 50)
  try {
    sender.begin()
    const cpu0 = process.cpuUsage()
    const start = performance.now()
    const moved = await transfer()
    const seconds = (performance.now() - start) / 1000
    const cpu = process.cpuUsage(cpu0)
    const tx = await sender.end()
    if (moved < bytes) throw new Error(`moved ${moved} of ${bytes} bytes`)
    const mib = moved / MiB
    return {
      mbps: mib / seconds,
      rxCpuMsPerMiB: (cpu.user + cpu.system) / 1000 / mib,
      txCpuMsPerMiB: tx.cpuMs / mib,
      rxRssMiB: Math.max(rss, process.memoryUsage().rss) / MiB,
      txRssMiB: tx.rssMiB
    }
  } finally {
    clearInterval(sampler)
  }
}

async function rawNode (): Promise<Libp2p> {
  return await createLibp2p({
    privateKey: await generateKeyPair('Ed25519'),
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()]
  })
}

// With `hashed`, the receiver also runs SHA-256 over every byte: the floor for any verified
// transfer on one receiving thread, which the blobs figures are best read against.
async function benchRaw (bytes: number, hashed: boolean): Promise<Run> {
  const sender = await startSender({ kind: 'raw', bytes })
  const client = await rawNode()
  try {
    const stream = await client.dialProtocol(multiaddr(sender.info.addr), RAW_PROTOCOL)
    return await measure(bytes, sender, async () => {
      stream.send(new Uint8Array([1])) // go
      let received = 0
      const h = hashed ? createHash('sha256') : undefined
      for await (const chunk of stream) {
        received += chunk.byteLength
        if (h !== undefined) {
          if (chunk instanceof Uint8Array) h.update(chunk)
          else for (const part of chunk) h.update(part)
        }
      }
      h?.digest()
      return received
    })
  } finally {
    await client.stop()
    await sender.stop()
  }
}

async function benchBlobs (bytes: number, blobSize: number, admission: AdmissionMode, inflight: number): Promise<Run> {
  const networkKey = randomBytes(32)
  const sender = await startSender({ kind: 'blobs', bytes, blobSize, admission, networkKey })
  const client = await createShoalNode({
    privateKey: await generateKeyPair('Ed25519'),
    listen: ['/ip4/127.0.0.1/tcp/0'],
    networkKey,
    admission,
    muxers: ['yamux']
  })
  try {
    const cids = sender.info.cids
    const peer = multiaddr(sender.info.addr)
    const bc = new BlobClient(client, { maxInflight: inflight })
    await bc.fetch(peer, cids[0]!, blobSize) // connection, admission and stream set up before timing
    const total = Math.ceil(bytes / blobSize)
    const run = await measure(bytes, sender, async () => {
      let next = 0
      const worker = async (): Promise<void> => {
        while (next < total) {
          const i = next++
          await bc.fetch(peer, cids[i % cids.length]!, blobSize)
        }
      }
      await Promise.all(Array.from({ length: inflight }, worker))
      return total * blobSize
    })
    await bc.close()
    return run
  } finally {
    await client.stop()
    await sender.stop()
  }
}

/** Forks this file as the sending process and returns its address and blob ids. */
async function startSender (spec: ServerSpec): Promise<Sender> {
  const child: ChildProcess = fork(fileURLToPath(import.meta.url), [SERVE_FLAG], { serialization: 'advanced', stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  const next = async <T>(): Promise<T> => await new Promise<T>((resolve, reject) => {
    const onExit = (code: number | null): void => { reject(new Error(`bench sender exited (${code})`)) }
    child.once('exit', onExit)
    child.once('message', (m) => { child.off('exit', onExit); resolve(m as T) })
  })
  const ready = next<ServerInfo>()
  child.send(spec)
  const info = await ready
  return {
    info,
    begin: () => { child.send('begin') },
    end: async () => { const r = next<{ cpuMs: number, rssMiB: number }>(); child.send('end'); return await r },
    stop: async () => {
      const exited = new Promise((resolve) => child.once('exit', resolve))
      child.send('stop')
      await exited
    }
  }
}

async function serve (spec: ServerSpec): Promise<{ info: ServerInfo, stop: () => Promise<void> }> {
  if (spec.kind === 'raw') {
    const node = await rawNode()
    const piece = randomBytes(PIECE)
    await node.handle(RAW_PROTOCOL, async (stream: Stream) => {
      for await (const _go of stream) break // the receiver says when the clock starts
      let sent = 0
      while (sent < spec.bytes) {
        const n = Math.min(PIECE, spec.bytes - sent)
        if (!stream.send(n === PIECE ? piece : piece.subarray(0, n))) await waitForDrain(stream)
        sent += n
      }
      await stream.close()
    })
    return { info: { addr: node.getMultiaddrs()[0]!.toString(), cids: [] }, stop: async () => { await node.stop() } }
  }
  const node = await createShoalNode({
    privateKey: await generateKeyPair('Ed25519'),
    listen: ['/ip4/127.0.0.1/tcp/0'],
    networkKey: spec.networkKey,
    admission: spec.admission,
    muxers: ['yamux']
  })
  // A working set of distinct blobs (≤ 64 MiB), fetched round-robin until `bytes` have moved.
  const count = Math.max(1, Math.min(Math.floor(64 * MiB / spec.blobSize), Math.ceil(spec.bytes / spec.blobSize)))
  const blobs = new Map<string, Uint8Array>()
  const cids: Uint8Array[] = []
  for (let i = 0; i < count; i++) {
    const blob = randomBytes(spec.blobSize)
    const cid = createHash('sha256').update(blob).digest()
    blobs.set(cid.toString('hex'), blob)
    cids.push(cid)
  }
  const source: BlobSource = { get: async (cid) => blobs.get(Buffer.from(cid).toString('hex')) ?? null }
  await registerBlobsProtocol(node, source)
  return { info: { addr: node.getMultiaddrs()[0]!.toString(), cids }, stop: async () => { await node.stop() } }
}

// The sending process: gets its spec, reports its address, then its CPU between begin and end.
function runSender (): void {
  let stop: (() => Promise<void>) | undefined
  let cpu0: NodeJS.CpuUsage | undefined
  let rss = 0
  const sampler = setInterval(() => { rss = Math.max(rss, process.memoryUsage().rss) }, 50)
  process.on('message', (m: unknown) => {
    if (m === 'begin') {
      cpu0 = process.cpuUsage()
    } else if (m === 'end') {
      const cpu = process.cpuUsage(cpu0)
      process.send!({ cpuMs: (cpu.user + cpu.system) / 1000, rssMiB: Math.max(rss, process.memoryUsage().rss) / MiB })
    } else if (m === 'stop') {
      clearInterval(sampler)
      void (stop ?? (async () => {}))().finally(() => { process.exit(0) })
    } else {
      void serve(m as ServerSpec).then((s) => {
        stop = s.stop
        process.send!(s.info)
      })
    }
  })
}

function parseArgs (argv: string[]): { bytes: number, rounds: number, inflight: number } {
  const num = (flag: string, dflt: number): number => {
    const i = argv.indexOf(flag)
    const v = i >= 0 ? Number(argv[i + 1]) : dflt
    if (!Number.isSafeInteger(v) || v <= 0) throw new Error(`${flag} takes a positive integer`)
    return v
  }
  return { bytes: num('--bytes', 256 * MiB), rounds: num('--rounds', 3), inflight: num('--inflight', 128) }
}

if (process.argv.includes(SERVE_FLAG)) {
  runSender()
} else if (import.meta.url === `file://${process.argv[1]}`) {
  const args = parseArgs(process.argv)
  console.log(`net bench: ${(args.bytes / MiB).toFixed(0)} MiB per run, ${args.rounds} rounds, ${args.inflight} blob requests in flight, loopback, sender in a child process, Node ${process.version}`)
  benchNet({ ...args, log: (l) => { console.log(l) } }).then((r) => {
    console.log(JSON.stringify(r))
  }, (err: unknown) => {
    console.error(err)
    process.exitCode = 1
  })
}
