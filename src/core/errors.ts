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
