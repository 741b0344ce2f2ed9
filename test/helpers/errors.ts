// Refusal helpers shared by the trust and manifest tests.
import { expect } from 'vitest'
import { ShoalError } from '../../src/core/errors.js'

/** The ShoalError `fn` throws (failing the test when it throws nothing or something else). */
export function thrown (fn: () => unknown): ShoalError {
  try { fn() } catch (err) { expect(err).toBeInstanceOf(ShoalError); return err as ShoalError }
  throw new Error('expected a refusal')
}

/** The code of the ShoalError `fn` throws. */
export function code (fn: () => unknown): string {
  return thrown(fn).code
}
