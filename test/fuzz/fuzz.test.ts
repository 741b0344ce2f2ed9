// The short fuzz run of `npm test`: every target of test/fuzz/targets.ts, a few thousand seeded
// inputs each (generated, and mutated from valid encodings), each decoded in a worker under a
// watchdog. Zero crashes (only ShoalError refusals), zero hangs, zero broken invariants.
// SHOAL_FUZZ_SEED picks another seed; `npm run fuzz` is the long run (≥ 100 000 inputs a target).
import { describe, it, expect } from 'vitest'
import { runTarget } from './pool.js'
import { TARGET_NAMES } from './targets.js'

const SEED = process.env.SHOAL_FUZZ_SEED !== undefined ? Number(process.env.SHOAL_FUZZ_SEED) : 20261201
const INPUTS = process.env.SHOAL_FUZZ_INPUTS !== undefined ? Number(process.env.SHOAL_FUZZ_INPUTS) : 1600

describe(`fuzz (seed ${SEED}, ${INPUTS} inputs a target)`, () => {
  it.each(TARGET_NAMES)('%s: only typed refusals, no hang', async (name) => {
    const r = await runTarget(name, { seed: SEED, inputs: INPUTS, hangMs: 20_000 })
    const how = `reproduce: npm run fuzz -- --seed ${SEED} --target "${name}" --inputs ${INPUTS}\n` + r.failures.map(f => JSON.stringify(f)).join('\n')
    expect(r.failures, how).toEqual([])
    expect(r.failed, how).toBe(0)
    expect(r.inputs).toBe(INPUTS)
    // the harness must reach past the first checks: some inputs decode, most are refused
    expect(r.typed).toBeGreaterThan(INPUTS / 10)
  }, 300_000)
})
