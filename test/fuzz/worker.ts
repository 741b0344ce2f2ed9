// A fuzz worker: runs inputs [from, to) of one target. Counts live in shared memory and each
// failure is posted as it happens, so nothing is lost when the parent terminates a worker stuck
// on one input (a synchronous decoder cannot be interrupted from inside its own thread).
import { parentPort, workerData } from 'node:worker_threads'
import { makeInput, runInput, describeError, inputHead, SLOT, type Failure, type WorkerJob, type WorkerMessage } from './engine.js'
import { TARGETS } from './targets.js'


const job = workerData as WorkerJob
const counts = new Int32Array(job.progress, 0, 8)
const maxMs = new Float64Array(job.progress, 32, 1)
const target = TARGETS[job.target]!()
let posted = 0
for (let i = job.from; i < job.to; i++) {
  Atomics.store(counts, SLOT.index, i)
  let input: Uint8Array
  try {
    input = makeInput(target, job.seed, i)
  } catch (err) {
    throw new Error(`fuzz harness: cannot make input ${i} of ${job.target}: ${describeError(err)}`)
  }
  const r = runInput(target, input)
  if (r.ms > maxMs[0]!) { maxMs[0] = r.ms; Atomics.store(counts, SLOT.maxIndex, i) }
  if (r.outcome === 'accepted') Atomics.add(counts, SLOT.accepted, 1)
  else if (r.outcome === 'typed') Atomics.add(counts, SLOT.typed, 1)
  else {
    Atomics.add(counts, SLOT.failed, 1)
    if (posted++ < job.maxFailures) {
      const failure: Failure = { target: job.target, seed: job.seed, index: i, kind: r.outcome, error: describeError(r.error), inputLength: input.byteLength, inputHead: inputHead(input) }
      parentPort!.postMessage({ kind: 'failure', failure } satisfies WorkerMessage)
    }
  }
  Atomics.add(counts, SLOT.inputs, 1)
}
Atomics.store(counts, SLOT.index, job.to)
parentPort!.postMessage({ kind: 'done' } satisfies WorkerMessage)
