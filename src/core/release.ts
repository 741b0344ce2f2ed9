// Reading a release back: a verified manifest's payload tells, per file, which blobs to open
// with which keys. Where the blobs come from (a repo folder, the state dir, a peer) is the
// caller's business; this module only checks that each one is exactly what the manifest says.
import { openBlob, cidFromHex } from './seal.js'
import { ShoalError } from './errors.js'
import type { ChunkRef, FileEntry } from './manifest.js'

export type GetBlob = (cid: Uint8Array, size: number) => Promise<Uint8Array>

export class MissingBlobError extends ShoalError {
  constructor (cidHex: string, where: string) {
    super('ERR_BLOB_MISSING', `blob ${cidHex} is missing from ${where}`)
  }
}

/** Streams a file's plaintext, chunk by chunk, each opened against its cid, key and size. */
export async function * fileBytes (file: FileEntry, chunks: readonly ChunkRef[], getBlob: GetBlob): AsyncGenerator<Uint8Array> {
  for (const c of file.chunks ?? []) {
    const ref = chunks[c.index]
    if (ref === undefined) throw new ShoalError('ERR_DECODE', `${file.path}: chunk index ${c.index} is outside the chunk table`)
    const cid = cidFromHex(ref.cid)
    const blob = await getBlob(cid, ref.size)
    yield openBlob(blob, Buffer.from(c.key, 'hex'), { cid, plainSize: c.size })
  }
}
