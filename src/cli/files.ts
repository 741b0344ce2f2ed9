import { ShoalError } from '../core/errors.js'
import { readFileCapped } from '../store/fs-util.js'

export class InputFileError extends ShoalError {
  constructor (message: string, options?: { cause?: unknown }) {
    super('ERR_INPUT_FILE', message, options)
  }
}

/** Reads a file named on the command line (at most `max` bytes: OversizeError), with an error that names the flag. */
export async function readInput (path: string, what: string, max: number): Promise<Uint8Array> {
  try {
    return await readFileCapped(path, max, what)
  } catch (err) {
    if (err instanceof ShoalError) throw err
    throw new InputFileError(`cannot read ${what} file ${path}: ${(err as Error).message}`, { cause: err })
  }
}
