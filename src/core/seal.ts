// Sealing one chunk into a blob and opening it again (DESIGN §3, byte layout in docs/protocol.md §4).
//
//   key   = HMAC-SHA256(contentKey, plaintext)       keyed convergent encryption
//   msg   = brotli(plaintext) if strictly smaller, else plaintext
//   blob  = 0xB1 ‖ codec ‖ nonce(12) ‖ AES-256-GCM(aesKey, nonce, aad = those 14 bytes, msg) ‖ tag(16)
//   cid   = SHA-256(blob)
//
// Everything is a function of (key, msg), so identical plaintext gives an identical blob inside a
// fleet and dedup works across publishers and releases. The nonce is *synthetic*: derived from the
// chunk key AND the encoded message, and carried in the header. A nonce derived from the key alone
// would repeat whenever two publishers (another brotli quality, another zlib build) encode the
// same plaintext into different bytes under the same key — GCM with a repeated (key, nonce) and two
// different messages leaks their XOR and the GHASH key. With the message in the derivation, the
// same (aesKey, nonce) is only ever used for the same bytes, which reveals nothing new. Bulk work
// runs on node:crypto / node:zlib (OpenSSL, native brotli); @noble only cross-checks it in tests.
import { createCipheriv, createDecipheriv, createHash, createHmac } from 'node:crypto'
import { brotliCompressSync, brotliDecompressSync, constants as zc } from 'node:zlib'
import { DecodeError, InvalidArgumentError, OversizeError, ShoalError } from './errors.js'

export type Codec = 'none' | 'brotli'
export interface SealOptions { brotliQuality?: number /* 0..11, default 5 */; compress?: boolean /* default true */ }
export interface SealedChunk { key: Uint8Array; cid: Uint8Array; blob: Uint8Array; codec: Codec; plainSize: number }

/** Largest plaintext one blob may hold; also the decompression cap when no size is expected. */
export const MAX_CHUNK_PLAINTEXT = 16 * 1024 * 1024

export const BLOB_FORMAT = 0xb1
export const KEY_BYTES = 32
export const CID_BYTES = 32
export const NONCE_BYTES = 12
export const TAG_BYTES = 16
export const HEADER_BYTES = 2 + NONCE_BYTES
/** Smallest well-formed blob: a header and a tag around an empty message. */
export const MIN_BLOB_BYTES = HEADER_BYTES + TAG_BYTES
/** Largest well-formed blob: compression is only kept when smaller, so msg ≤ plaintext. */
export const MAX_BLOB_BYTES = MAX_CHUNK_PLAINTEXT + MIN_BLOB_BYTES
export const DEFAULT_BROTLI_QUALITY = 5

/** Domain-separation labels for the two values derived from a chunk key (docs/protocol.md §4 §2). */
export const AES_KEY_LABEL = 'shoal/v1/blob/aes-key'
export const NONCE_LABEL = 'shoal/v1/blob/nonce'

const CODEC_BYTES: Record<Codec, number> = { none: 0x00, brotli: 0x01 }
const CODECS: Array<Codec | undefined> = ['none', 'brotli']

/** The blob is not a shoal blob of a format this version reads (bad header, short, unknown codec). */
export class BlobFormatError extends ShoalError {
  constructor (reason: string, options?: { cause?: unknown }) {
    super('ERR_BLOB_FORMAT', `not a readable shoal blob: ${reason}`, options)
  }
}

/** GCM authentication failed: the blob was altered, or it is opened with the wrong chunk key. */
export class BlobAuthError extends ShoalError {
  constructor () {
    super('ERR_BLOB_AUTH', 'blob failed authentication: it was altered in storage or transit, or the chunk key is wrong (a manifest from another fleet?); fetch it again from another source')
  }
}

/** The blob's SHA-256 is not the cid it was asked for: a corrupt or substituted blob. */
export class BlobCidMismatchError extends ShoalError {
  readonly expected: string
  readonly actual: string
  constructor (expected: string, actual: string) {
    super('ERR_BLOB_CID', `blob content hash ${actual} does not match its cid ${expected}; the source sent the wrong or corrupt bytes — discard it and fetch from another source`)
    this.expected = expected
    this.actual = actual
  }
}

/** The opened plaintext is not the size the manifest promises, or would exceed the cap. */
export class BlobSizeError extends ShoalError {
  constructor (message: string, options?: { cause?: unknown }) {
    super('ERR_BLOB_SIZE', message, options)
  }
}

function checkKey (key: Uint8Array, what: string): void {
  if (!(key instanceof Uint8Array) || key.length !== KEY_BYTES) {
    throw new InvalidArgumentError(`${what} must be ${KEY_BYTES} bytes, got ${key instanceof Uint8Array ? `${key.length} bytes` : typeof key}`)
  }
}

function brotliQuality (opts: SealOptions | undefined): number {
  const q = opts?.brotliQuality ?? DEFAULT_BROTLI_QUALITY
  if (!Number.isInteger(q) || q < 0 || q > 11) throw new InvalidArgumentError(`brotli quality must be an integer 0–11, got ${q}`)
  return q
}

/** Validates seal options up front, so a pool can refuse bad ones before starting threads. */
export function checkSealOptions (opts: SealOptions | undefined): void {
  brotliQuality(opts)
  if (opts?.compress !== undefined && typeof opts.compress !== 'boolean') throw new InvalidArgumentError('seal option "compress" must be a boolean')
}

function hmac (key: Uint8Array, ...parts: Array<Uint8Array | string>): Buffer {
  const h = createHmac('sha256', key)
  for (const p of parts) h.update(p)
  return h.digest()
}

export function chunkKey (contentKey: Uint8Array, plaintext: Uint8Array): Uint8Array {
  checkKey(contentKey, 'the content key')
  return hmac(contentKey, plaintext)
}

export function blobCid (blob: Uint8Array): Uint8Array {
  return createHash('sha256').update(blob).digest()
}

export function cidToHex (cid: Uint8Array): string {
  if (!(cid instanceof Uint8Array) || cid.length !== CID_BYTES) throw new InvalidArgumentError(`a cid is ${CID_BYTES} bytes, got ${cid instanceof Uint8Array ? cid.length : typeof cid}`)
  return Buffer.from(cid.buffer, cid.byteOffset, cid.length).toString('hex')
}

const CID_HEX = /^[0-9a-f]{64}$/
export function cidFromHex (hex: string): Uint8Array {
  if (typeof hex !== 'string' || !CID_HEX.test(hex)) {
    throw new DecodeError('cid', `expected 64 lowercase hex characters, got ${JSON.stringify(String(hex).slice(0, 80))}`)
  }
  return new Uint8Array(Buffer.from(hex, 'hex'))
}

/** Brotli window just large enough for the input: same ratio on a chunk, less memory and time. */
function lgwinFor (size: number): number {
  return Math.min(24, Math.max(10, Math.ceil(Math.log2(size + 16))))
}

const PROBE_BYTES = 4096

/**
 * Brotli-5 on already-compressed or random data costs most of publish time and saves nothing.
 * A quality-1 probe of two 4 KiB samples (start and middle) decides first: a function of the
 * plaintext alone, so identical chunks still seal to identical blobs.
 */
function looksIncompressible (plaintext: Uint8Array): boolean {
  if (plaintext.length < 4 * PROBE_BYTES) return false
  const mid = plaintext.length >>> 1
  const sample = Buffer.concat([plaintext.subarray(0, PROBE_BYTES), plaintext.subarray(mid, mid + PROBE_BYTES)])
  const probe = brotliCompressSync(sample, { params: { [zc.BROTLI_PARAM_QUALITY]: 1, [zc.BROTLI_PARAM_LGWIN]: 16, [zc.BROTLI_PARAM_SIZE_HINT]: sample.length } })
  return probe.length > sample.length * 0.97
}

function encode (plaintext: Uint8Array, opts: SealOptions | undefined): { codec: Codec; msg: Uint8Array } {
  const quality = brotliQuality(opts)
  if (opts?.compress === false || plaintext.length === 0) return { codec: 'none', msg: plaintext }
  if (looksIncompressible(plaintext)) return { codec: 'none', msg: plaintext }
  const packed = brotliCompressSync(plaintext, {
    params: {
      [zc.BROTLI_PARAM_QUALITY]: quality,
      [zc.BROTLI_PARAM_LGWIN]: lgwinFor(plaintext.length),
      [zc.BROTLI_PARAM_SIZE_HINT]: plaintext.length
    }
  })
  return packed.length < plaintext.length ? { codec: 'brotli', msg: packed } : { codec: 'none', msg: plaintext }
}

/**
 * Seals under a caller-chosen key. The key must be bound to this one plaintext (as chunkKey's HMAC
 * is): two plaintexts under one key would be told apart by anyone comparing blobs, and the key
 * would no longer identify the content the manifest lists it for.
 */
export function sealWithKey (key: Uint8Array, plaintext: Uint8Array, opts?: SealOptions): SealedChunk {
  checkKey(key, 'a chunk key')
  if (plaintext.length > MAX_CHUNK_PLAINTEXT) throw new OversizeError('chunk plaintext', MAX_CHUNK_PLAINTEXT)
  const { codec, msg } = encode(plaintext, opts)

  const blob = new Uint8Array(HEADER_BYTES + msg.length + TAG_BYTES)
  blob[0] = BLOB_FORMAT
  blob[1] = CODEC_BYTES[codec]
  const nonce = hmac(key, NONCE_LABEL, blob.subarray(0, 2), msg).subarray(0, NONCE_BYTES)
  blob.set(nonce, 2)
  const header = blob.subarray(0, HEADER_BYTES)

  const cipher = createCipheriv('aes-256-gcm', hmac(key, AES_KEY_LABEL), nonce, { authTagLength: TAG_BYTES })
  cipher.setAAD(header)
  const body = cipher.update(msg)
  const tail = cipher.final()
  blob.set(body, HEADER_BYTES)
  blob.set(tail, HEADER_BYTES + body.length)
  blob.set(cipher.getAuthTag(), HEADER_BYTES + msg.length)

  return { key: Uint8Array.from(key), cid: blobCid(blob), blob, codec, plainSize: plaintext.length }
}

export function sealChunk (contentKey: Uint8Array, plaintext: Uint8Array, opts?: SealOptions): SealedChunk {
  return sealWithKey(chunkKey(contentKey, plaintext), plaintext, opts)
}

/**
 * Checks and opens a blob. Order: cid (names a substituted blob as such), header, GCM tag, then
 * decompression capped at the expected size (or MAX_CHUNK_PLAINTEXT) so a hostile key holder's
 * tiny blob cannot inflate into gigabytes. Returns only plaintext that passed every check.
 */
export function openBlob (blob: Uint8Array, key: Uint8Array, expect?: { cid?: Uint8Array; plainSize?: number }): Uint8Array {
  checkKey(key, 'a chunk key')
  if (expect?.cid !== undefined) {
    const actual = blobCid(blob)
    if (!Buffer.from(actual).equals(expect.cid)) throw new BlobCidMismatchError(cidToHex(expect.cid), cidToHex(actual))
  }
  const want = expect?.plainSize
  if (want !== undefined && (!Number.isSafeInteger(want) || want < 0 || want > MAX_CHUNK_PLAINTEXT)) {
    throw new BlobSizeError(`expected plaintext size ${want} is outside 0–${MAX_CHUNK_PLAINTEXT}; the manifest entry is invalid`)
  }
  if (blob.length < MIN_BLOB_BYTES) throw new BlobFormatError(`${blob.length} bytes is shorter than the ${MIN_BLOB_BYTES}-byte minimum (truncated?)`)
  if (blob.length > MAX_BLOB_BYTES) throw new BlobFormatError(`${blob.length} bytes is longer than any chunk can seal to (${MAX_BLOB_BYTES})`)
  if (blob[0] !== BLOB_FORMAT) throw new BlobFormatError(`format byte 0x${(blob[0] ?? 0).toString(16).padStart(2, '0')}, expected 0x${BLOB_FORMAT.toString(16)} (a newer shoal wrote it, or it is not a blob)`)
  const codec = CODECS[blob[1] ?? 0xff]
  if (codec === undefined) throw new BlobFormatError(`unknown codec byte 0x${(blob[1] ?? 0).toString(16).padStart(2, '0')}`)

  const header = blob.subarray(0, HEADER_BYTES)
  const tagAt = blob.length - TAG_BYTES
  const decipher = createDecipheriv('aes-256-gcm', hmac(key, AES_KEY_LABEL), header.subarray(2), { authTagLength: TAG_BYTES })
  decipher.setAAD(header)
  decipher.setAuthTag(blob.subarray(tagAt))
  let msg: Buffer
  try {
    const body = decipher.update(blob.subarray(HEADER_BYTES, tagAt))
    const tail = decipher.final()
    msg = tail.length === 0 ? body : Buffer.concat([body, tail])
  } catch {
    throw new BlobAuthError()
  }

  const cap = want ?? MAX_CHUNK_PLAINTEXT
  let plain: Uint8Array
  if (codec === 'none') {
    plain = msg
  } else {
    try {
      // One byte over the cap is enough to tell "too large" apart from "exactly right".
      plain = brotliDecompressSync(msg, { maxOutputLength: cap + 1 })
    } catch (err) {
      if ((err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE') {
        throw new BlobSizeError(`blob decompresses to more than ${cap} bytes${want !== undefined ? ' (the manifest size)' : ''}; refused as a decompression bomb`, { cause: err })
      }
      throw new BlobFormatError('authenticated but its brotli stream is corrupt (written by a faulty publisher)', { cause: err })
    }
  }
  if (plain.length > cap || (want !== undefined && plain.length !== want)) {
    throw new BlobSizeError(`blob opens to ${plain.length} bytes but ${want !== undefined ? `the manifest says ${want}` : `the limit is ${cap}`}; the manifest and the blob disagree`)
  }
  return plain
}
