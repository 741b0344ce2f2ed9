import { readFile } from 'node:fs/promises'
import { ShoalError } from '../core/errors.js'

export class InputFileError extends ShoalError {
  constructor (message: string, options?: { cause?: unknown }) {
    super('ERR_INPUT_FILE', message, options)
  }
}

/** Reads a file named on the command line, with an error that names the flag. */
export async function readInput (path: string, what: string): Promise<Uint8Array> {
  try {
    return await readFile(path)
  } catch (err) {
    throw new InputFileError(`cannot read ${what} file ${path}: ${(err as Error).message}`, { cause: err })
  }
}
