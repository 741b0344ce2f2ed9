// Every error shoal throws on purpose is a ShoalError with a stable `code` (scripts and reports
// match on it) and a message a person can act on. Modules define their own subclasses next to
// the code that throws them; the ones shared across modules live here.

export class ShoalError extends Error {
  readonly code: string

  constructor (code: string, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.code = code
    this.name = new.target.name
  }
}

/** Input that does not decode: wrong magic, truncated, unknown version, bad field. */
export class DecodeError extends ShoalError {
  constructor (what: string, reason: string, options?: { cause?: unknown }) {
    super('ERR_DECODE', `${what}: ${reason}`, options)
  }
}

/** Input larger than the cap for its kind; refused before it is read whole. */
export class OversizeError extends ShoalError {
  constructor (what: string, limit: number, options?: { cause?: unknown }) {
    super('ERR_OVERSIZE', `${what} is larger than the ${limit}-byte limit`, options)
  }
}

/** A value given by a user (CLI flag, config field) that is out of range or malformed. */
export class InvalidArgumentError extends ShoalError {
  constructor (message: string, options?: { cause?: unknown }) {
    super('ERR_INVALID_ARGUMENT', message, options)
  }
}

/**
 * A decoded JSON value as a message may quote it: strings quoted and cut to 80 characters, other
 * scalars as they are, containers by kind only — JSON.stringify of a hostile value can be
 * megabytes long or nested deeper than the stack (a RangeError instead of the refusal).
 */
export function quoteValue (v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 80 ? v.slice(0, 80) + '…' : v)
  if (v === null || typeof v === 'number' || typeof v === 'boolean') return String(v)
  if (v === undefined) return 'missing'
  return Array.isArray(v) ? 'a list' : typeof v === 'object' ? 'an object' : `a ${typeof v}`
}
