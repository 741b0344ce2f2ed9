// A fuzz worker: runs inputs [from, to) of one target and posts its counts. The index of the input
// being decoded is kept in shared memory, so the parent can tell a hang from slow progress and
// terminate the worker (a synchronous decoder cannot be interrupted from inside its own thread).
import { parentPort, workerData } from 'node:worker_threads'
import { makeInput, runInput, describeError, inputHead, type Failure } from './engine.js'
import { TARGETS } from './targets.js'

export interface WorkerJob { target: string, seed: number, from: number, to: number, progress: SharedArrayBuffer, maxFailures: number }
export interface WorkerResult { inputs: number, accepted: number, typed: number, maxMs: number, maxIndex: number, failures: Failure[], failed: number }

const job = workerData as WorkerJob
const progress = new Int32Array(job.progress)
const target = TARGETS[job.target]!()
const res: WorkerResult = { inputs: 0, accepted: 0, typed: 0, maxMs: 0, maxIndex: -1, failures: [], failed: 0 }
for (let i = job.from; i < job.to; i++) {
  Atomics.store(progress, 0, i)
  let input: Uint8Array
  try {
    input = makeInput(target, job.seed, i)
  } catch (err) {
    throw new Error(`fuzz harness: cannot make input ${i} of ${job.target}: ${describeError(err)}`)
  }
  const r = runInput(target, input)
  res.inputs++
  if (r.ms > res.maxMs) { res.maxMs = r.ms; res.maxIndex = i }
  if (r.outcome === 'accepted') res.accepted++
  else if (r.outcome === 'typed') res.typed++
  else {
    res.failed++
    if (res.failures.length < job.maxFailures) {
      res.failures.push({ target: job.target, seed: job.seed, index: i, kind: r.outcome, error: describeError(r.error), inputLength: input.byteLength, inputHead: inputHead(input) })
    }
  }
}
Atomics.store(progress, 0, job.to)
parentPort!.postMessage(res)
