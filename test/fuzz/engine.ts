// One fuzz input from (target, seed, index), and what the decoder made of it. Inputs are a pure
// function of those three, so a failure is reproduced from the seed and index the report prints.
import fc from 'fast-check'
import { performance } from 'node:perf_hooks'
import { ShoalError } from '../../src/core/errors.js'
import { Rng, inputSeed, mutateBytes, mutateJson } from './mutate.js'
import type { FuzzTarget } from './targets.js'

export type Outcome = 'accepted' | 'typed' | 'crash' | 'invariant'

export interface Failure {
  target: string
  seed: number
  index: number
  kind: 'crash' | 'invariant' | 'hang' | 'worker died'
  error: string
  inputLength?: number
  /** The first 96 bytes of the input, hex. */
  inputHead?: string
}

/** A worker's job (worker.ts); its counts are Int32 slots of `progress`, `maxMs` the Float64 after them. */
export interface WorkerJob { target: string, seed: number, from: number, to: number, progress: SharedArrayBuffer, maxFailures: number }
export type WorkerMessage = { kind: 'failure', failure: Failure } | { kind: 'done' }
export const SLOT = { index: 0, inputs: 1, accepted: 2, typed: 3, failed: 4, maxIndex: 5 } as const
export const PROGRESS_BYTES = 8 * 4 + 8

const enc = new TextEncoder()
const randomBytes = fc.uint8Array({ maxLength: 512 })
const randomJson = fc.json({ depthSize: 'medium' }).map(s => enc.encode(s))

/** The input number `index` of a run of `target` with `seed`. */
export function makeInput (target: FuzzTarget, seed: number, index: number): Uint8Array {
  const rng = new Rng(inputSeed(seed, index))
  const seeds = target.seeds
  const base = rng.pick(seeds)
  const kind = rng.int(10)
  if (kind === 0) {
    // generated from nothing: random bytes, or (for JSON targets) random JSON documents
    const arb = target.json === true && rng.chance(0.7) ? randomJson : randomBytes
    return fc.sample(arb, { seed: rng.u32() | 0, numRuns: 1 })[0]!
  }
  if (target.json === true && kind >= 5) {
    let m = mutateJson(rng, base) ?? mutateBytes(rng, base, seeds)
    if (rng.chance(0.3)) m = mutateJson(rng, m) ?? m // stacked edits
    if (rng.chance(0.15)) m = mutateBytes(rng, m, seeds)
    return m
  }
  let m = mutateBytes(rng, base, seeds)
  if (rng.chance(0.3)) m = mutateBytes(rng, m, seeds)
  return m
}

/** Runs one input; never throws. `ms` is the decoder's own time. */
export function runInput (target: FuzzTarget, input: Uint8Array): { outcome: Outcome, ms: number, error?: unknown } {
  const t0 = performance.now()
  let out: unknown
  try {
    out = target.decode(input)
  } catch (err) {
    const ms = performance.now() - t0
    return err instanceof ShoalError ? { outcome: 'typed', ms } : { outcome: 'crash', ms, error: err }
  }
  const ms = performance.now() - t0
  let broken: string | undefined
  try {
    broken = target.check?.(input, out)
  } catch (err) {
    broken = `invariant check threw ${describeError(err)}`
  }
  return broken === undefined ? { outcome: 'accepted', ms } : { outcome: 'invariant', ms, error: new Error(broken) }
}

export function describeError (err: unknown): string {
  if (err instanceof Error) {
    const where = err.stack?.split('\n').slice(1, 3).map(l => l.trim()).join(' ← ') ?? ''
    return `${err.name}: ${err.message.slice(0, 300)}${where === '' ? '' : ` (${where})`}`
  }
  return `non-Error thrown: ${String(err).slice(0, 200)}`
}

export function inputHead (input: Uint8Array): string {
  return Buffer.from(input.subarray(0, 96)).toString('hex')
}
