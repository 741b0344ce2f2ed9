// Runs a target's inputs in a worker thread under a watchdog: an input that keeps the decoder
// busy longer than `hangMs` is a hang — the worker is terminated, the input recorded, and a new
// worker carries on after it. A worker that dies (out of memory under its heap limit, a native
// crash) is recorded the same way. The time limit bounds each input; it is not a performance
// assertion (the per-input maximum is only reported).
import { Worker } from 'node:worker_threads'
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import type { Failure } from './engine.js'
import type { WorkerJob, WorkerResult } from './worker.js'

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
  const report: TargetReport = { target, seed: o.seed, inputs: 0, accepted: 0, typed: 0, failed: 0, hangs: 0, maxMs: 0, maxIndex: -1, failures: [] }
  const fail = (f: Failure): void => {
    report.failed++
    if (report.failures.length < maxFailures) report.failures.push(f)
  }
  let next = 0
  while (next < o.inputs) {
    const progress = new SharedArrayBuffer(4)
    const view = new Int32Array(progress)
    Atomics.store(view, 0, -1)
    const job: WorkerJob = { target, seed: o.seed, from: next, to: o.inputs, progress, maxFailures }
    const worker = new Worker(WORKER, { workerData: job, resourceLimits: { maxOldGenerationSizeMb: o.heapMb ?? 768 } })
    const outcome = await new Promise<{ result?: WorkerResult, stuckAt?: number, died?: { at: number, error: string } }>((resolve) => {
      let last = -1
      let since = Date.now()
      const timer = setInterval(() => {
        const at = Atomics.load(view, 0)
        if (at !== last) { last = at; since = Date.now(); return }
        // a worker still loading its modules and seeds gets longer than one input
        if (Date.now() - since > (at < 0 ? Math.max(hangMs, 60_000) : hangMs)) {
          clearInterval(timer)
          void worker.terminate()
          resolve({ stuckAt: at })
        }
      }, Math.min(100, hangMs / 4))
      worker.once('message', (result: WorkerResult) => { clearInterval(timer); resolve({ result }) })
      worker.once('error', (err) => { clearInterval(timer); resolve({ died: { at: Atomics.load(view, 0), error: `${err.name}: ${err.message}` } }) })
      worker.once('exit', (code) => { clearInterval(timer); resolve({ died: { at: Atomics.load(view, 0), error: `worker exited with code ${code}` } }) })
    })
    await worker.terminate()
    if (outcome.result !== undefined) {
      const r = outcome.result
      report.inputs += r.inputs
      report.accepted += r.accepted
      report.typed += r.typed
      if (r.maxMs > report.maxMs) { report.maxMs = r.maxMs; report.maxIndex = r.maxIndex }
      for (const f of r.failures) fail(f)
      report.failed += r.failed - r.failures.length
      break
    }
    const at = outcome.stuckAt ?? outcome.died!.at
    if (at < 0) throw new Error(`fuzz worker for ${target} did not start: ${outcome.died?.error ?? 'no progress within its start-up time'}`)
    // inputs before `at` were decoded but their counts died with the worker: count them as run
    report.inputs += at - next + 1
    if (outcome.stuckAt !== undefined) {
      report.hangs++
      fail({ target, seed: o.seed, index: at, kind: 'hang', error: `still decoding after ${hangMs} ms` })
    } else {
      fail({ target, seed: o.seed, index: at, kind: 'worker died', error: outcome.died!.error })
    }
    next = at + 1
  }
  return report
}

export function formatTable (reports: readonly TargetReport[]): string {
  const rows = [['target', 'inputs', 'accepted', 'typed errors', 'crashes', 'hangs', 'max ms/input']]
  for (const r of reports) rows.push([r.target, String(r.inputs), String(r.accepted), String(r.typed), String(r.failed - r.hangs), String(r.hangs), r.maxMs.toFixed(1)])
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map(r => r[c]!.length)))
  const line = (r: string[]): string => '| ' + r.map((x, c) => c === 0 ? x.padEnd(widths[c]!) : x.padStart(widths[c]!)).join(' | ') + ' |'
  return [line(rows[0]!), '|' + widths.map((w, c) => c === 0 ? '-'.repeat(w + 2) : '-'.repeat(w + 1) + ':').join('|') + '|', ...rows.slice(1).map(line)].join('\n')
}
