// Runs a target's inputs in a worker thread under a watchdog: an input that keeps the decoder
// busy longer than `hangMs` is a hang — the worker is terminated, the input recorded, and a new
// worker carries on after it. A worker that dies (out of memory under its heap limit, a native
// crash) is recorded the same way. The time limit bounds each input; it is not a performance
// assertion (the per-input maximum is only reported).
import { Worker } from 'node:worker_threads'
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { PROGRESS_BYTES, SLOT, type Failure, type WorkerJob, type WorkerMessage } from './engine.js'

export interface RunOptions {
  seed: number
  inputs: number
  /** An input running longer than this is a hang (default 10 s: generous on a loaded machine). */
  hangMs?: number
  /** Failures kept with their details (all are counted). */
  maxFailures?: number
  /** Old-generation heap of a worker, MiB: a decoder that allocates without bound dies here. */
  heapMb?: number
}

export interface TargetReport {
  target: string
  seed: number
  inputs: number
  accepted: number
  typed: number
  /** Crashes (untyped errors), broken invariants, hangs and dead workers. */
  failed: number
  hangs: number
  /** Inputs that stalled once (a loaded machine) and then ran to completion alone: reported, not failures. */
  stalls: number
  maxMs: number
  /** The input that took maxMs. */
  maxIndex: number
  failures: Failure[]
}

// Workers run the compiled harness (a worker thread gets no TypeScript transform): `npm run build`
// compiles test/fuzz next to src in dist/.
const here = fileURLToPath(import.meta.url)
const WORKER = here.endsWith('.ts')
  ? new URL('../../dist/test/fuzz/worker.js', import.meta.url)
  : new URL('./worker.js', import.meta.url)

export async function runTarget (target: string, o: RunOptions): Promise<TargetReport> {
  if (!existsSync(WORKER)) throw new Error(`${fileURLToPath(WORKER)} is missing: run \`npm run build\` first`)
  const hangMs = o.hangMs ?? 10_000
  const maxFailures = o.maxFailures ?? 10
  const report: TargetReport = { target, seed: o.seed, inputs: 0, accepted: 0, typed: 0, failed: 0, hangs: 0, stalls: 0, maxMs: 0, maxIndex: -1, failures: [] }
  const fail = (f: Failure): void => {
    report.failed++
    if (report.failures.length < maxFailures) report.failures.push(f)
  }
  const merge = (r: WorkerCounts): void => {
    report.inputs += r.inputs
    report.accepted += r.accepted
    report.typed += r.typed
    if (r.maxMs > report.maxMs) { report.maxMs = r.maxMs; report.maxIndex = r.maxIndex }
    for (const f of r.failures) fail(f)
    report.failed += r.failed - r.failures.length
  }
  let next = 0
  while (next < o.inputs) {
    const out = await runWorker({ target, seed: o.seed, from: next, to: o.inputs, maxFailures }, hangMs, o.heapMb)
    merge(out) // what ran before a stall or death still counts, its failures included
    if (out.end === 'done') break
    if (out.at < 0) throw new Error(`fuzz worker for ${target} did not start: ${out.error ?? 'no progress within its start-up time'}`)
    next = out.at + 1
    if (out.end === 'stuck') {
      // A stall on a shared, loaded machine is not yet a hang: the input runs again, alone, in a
      // fresh worker with the same limit, and is a hang only if it stalls there too.
      const again = await runWorker({ target, seed: o.seed, from: out.at, to: out.at + 1, maxFailures }, hangMs, o.heapMb)
      merge(again)
      if (again.end === 'done') { report.stalls++; continue }
      report.inputs++
      if (again.end === 'stuck') {
        report.hangs++
        fail({ target, seed: o.seed, index: out.at, kind: 'hang', error: `still decoding after ${hangMs} ms, twice` })
      } else {
        fail({ target, seed: o.seed, index: out.at, kind: 'worker died', error: again.error ?? 'worker died' })
      }
    } else {
      report.inputs++
      fail({ target, seed: o.seed, index: out.at, kind: 'worker died', error: out.error ?? 'worker died' })
    }
  }
  return report
}

export function formatTable (reports: readonly TargetReport[]): string {
  const rows = [['target', 'inputs', 'accepted', 'typed errors', 'crashes', 'hangs', 'stalls retried', 'max ms/input']]
  for (const r of reports) rows.push([r.target, String(r.inputs), String(r.accepted), String(r.typed), String(r.failed - r.hangs), String(r.hangs), String(r.stalls), r.maxMs.toFixed(1)])
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map(r => r[c]!.length)))
  const line = (r: string[]): string => '| ' + r.map((x, c) => c === 0 ? x.padEnd(widths[c]!) : x.padStart(widths[c]!)).join(' | ') + ' |'
  return [line(rows[0]!), '|' + widths.map((w, c) => c === 0 ? '-'.repeat(w + 2) : '-'.repeat(w + 1) + ':').join('|') + '|', ...rows.slice(1).map(line)].join('\n')
}

interface WorkerCounts { inputs: number, accepted: number, typed: number, failed: number, maxMs: number, maxIndex: number, failures: Failure[] }
interface WorkerOutcome extends WorkerCounts {
  end: 'done' | 'stuck' | 'died'
  /** The input being decoded when the worker stalled or died (−1: it never started). */
  at: number
  error?: string
}

async function runWorker (job: Omit<WorkerJob, 'progress'>, hangMs: number, heapMb = 768): Promise<WorkerOutcome> {
  const progress = new SharedArrayBuffer(PROGRESS_BYTES)
  const counts = new Int32Array(progress, 0, 8)
  Atomics.store(counts, SLOT.index, -1)
  const failures: Failure[] = []
  const worker = new Worker(WORKER, { workerData: { ...job, progress } satisfies WorkerJob, resourceLimits: { maxOldGenerationSizeMb: heapMb } })
  worker.on('message', (m: WorkerMessage) => { if (m.kind === 'failure') failures.push(m.failure) })
  const end = await new Promise<{ end: WorkerOutcome['end'], error?: string }>((resolve) => {
    let last = -1
    let since = Date.now()
    const timer = setInterval(() => {
      const at = Atomics.load(counts, SLOT.index)
      if (at !== last) { last = at; since = Date.now(); return }
      // a worker still loading its modules and seeds gets longer than one input
      if (Date.now() - since > (at < 0 ? Math.max(hangMs, 60_000) : hangMs)) {
        clearInterval(timer)
        resolve({ end: 'stuck' })
      }
    }, Math.min(100, hangMs / 4))
    worker.on('message', (m: WorkerMessage) => { if (m.kind === 'done') { clearInterval(timer); resolve({ end: 'done' }) } })
    worker.once('error', (err) => { clearInterval(timer); resolve({ end: 'died', error: `${err.name}: ${err.message}` }) })
    worker.once('exit', (code) => { clearInterval(timer); resolve({ end: 'died', error: `worker exited with code ${code}` }) })
  })
  await worker.terminate()
  return {
    ...end,
    at: Atomics.load(counts, SLOT.index),
    inputs: Atomics.load(counts, SLOT.inputs),
    accepted: Atomics.load(counts, SLOT.accepted),
    typed: Atomics.load(counts, SLOT.typed),
    failed: Atomics.load(counts, SLOT.failed),
    maxMs: new Float64Array(progress, 32, 1)[0]!,
    maxIndex: Atomics.load(counts, SLOT.maxIndex),
    failures
  }
}
