// Ed25519 keys (@noble/curves) and their ids. keyid = hex SHA-256 of the canonical public-key
// object, so an id commits to the algorithm as well as to the key bytes, and a root cannot list
// one key under two ids (decoders recompute the id and refuse a mismatch).
import { createHash } from 'node:crypto'
import { ed25519 as nobleEd25519 } from '@noble/curves/ed25519.js'
import { eddsa } from '@noble/curves/abstract/edwards.js'
import { bytesToNumberLE } from '@noble/curves/utils.js'
import { sha256 } from '@noble/hashes/sha2.js'
import { canonicalBytes } from './canonical.js'
import { ShoalError, DecodeError, OversizeError, InvalidArgumentError, quoteValue } from './errors.js'

export interface PublicKey { keytype: 'ed25519', public: string /* 64 lowercase hex */ }
export interface KeyPair { keyid: string, publicKey: Uint8Array, secretKey: Uint8Array }

export const KEYTYPE_ED25519 = 'ed25519'
export const HEX64 = /^[0-9a-f]{64}$/
/** Key files are tiny; anything larger is not one. */
export const MAX_KEY_FILE_BYTES = 64 * 1024
export const KEY_FILE_TYPE = 'shoal-private-key'
const ROLE_NAME = /^[a-z][a-z0-9-]{0,31}$/

export class UnknownKeyTypeError extends ShoalError {
  constructor (where: string, keytype: unknown) {
    super('ERR_UNKNOWN_KEYTYPE', `${where} has key type ${quoteValue(keytype)}; this shoal only accepts "ed25519" (is the file from a newer shoal?)`)
  }
}

// noble's Ed25519 with SHA-512 from node:crypto, for signing and keys (verifySignatureParts below
// hashes with node:crypto itself). Signing hashes the whole message twice (a manifest can be
// 64 MiB): OpenSSL's SHA-512 is ~13x faster than the pure-JS one, and the curve arithmetic stays
// noble's. RFC 8032 clamping as in noble's ed25519; test/core/trust.test.ts
// checks the result against RFC 8032 vectors and against noble's own ed25519.
const sha512 = Object.assign(
  (msg: Uint8Array): Uint8Array => new Uint8Array(createHash('sha512').update(msg).digest()),
  { outputLen: 64, blockLen: 128 }
)
function clamp (bytes: Uint8Array): Uint8Array {
  bytes[0] = (bytes[0] as number) & 248
  bytes[31] = ((bytes[31] as number) & 127) | 64
  return bytes
}
const ed25519 = eddsa(nobleEd25519.Point, sha512, { adjustScalarBytes: clamp, zip215: false })

const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex')
const fromHex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'hex'))

export function publicKeyObject (publicKey: Uint8Array): PublicKey {
  return { keytype: 'ed25519', public: hex(publicKey) }
}

export function keyIdOf (publicKey: Uint8Array): string {
  if (publicKey.length !== 32) throw new DecodeError('public key', `an Ed25519 public key is 32 bytes, got ${publicKey.length}`)
  return hex(sha256(canonicalBytes(publicKeyObject(publicKey))))
}

/** The keyid of a public-key object as it appears in root.json; refuses unknown key types. */
export function keyIdOfObject (pk: PublicKey, where = 'public key'): string {
  if (pk.keytype !== KEYTYPE_ED25519) throw new UnknownKeyTypeError(where, pk.keytype)
  if (typeof pk.public !== 'string' || !HEX64.test(pk.public)) throw new DecodeError(where, '"public" must be 64 lowercase hex characters')
  return keyIdOf(fromHex(pk.public))
}

export function keyPairFromSecret (secretKey: Uint8Array): KeyPair {
  if (secretKey.length !== 32) throw new DecodeError('secret key', `an Ed25519 secret key (seed) is 32 bytes, got ${secretKey.length}`)
  const publicKey = ed25519.getPublicKey(secretKey)
  return { keyid: keyIdOf(publicKey), publicKey, secretKey: Uint8Array.from(secretKey) }
}

export function generateKeyPair (): KeyPair {
  return keyPairFromSecret(nobleEd25519.utils.randomSecretKey())
}

export function sign (kp: KeyPair, message: Uint8Array): Uint8Array {
  return ed25519.sign(message, kp.secretKey)
}

/**
 * Strict RFC 8032 verification (zip215: false): non-canonical point encodings and S ≥ L are
 * refused, so a third party cannot derive a second valid signature from one it has seen.
 */
export function verifySignature (publicKey: Uint8Array, message: Uint8Array, sig: Uint8Array): boolean {
  return verifySignatureParts(publicKey, [message], sig)
}

/**
 * verifySignature over the concatenation of `parts`, without building it. These are the steps
 * of noble's strict verify (RFC 8032 §5.1.7 with the cofactored equation, small-order keys
 * refused), on noble's curve arithmetic; only the challenge SHA-512(R ‖ A ‖ M) is fed by parts.
 * noble concatenates R ‖ A ‖ M first, and with the signing prefix + body before it a 12 MiB
 * manifest cost two 12 MiB copies per signature, blocks glibc kept after they were freed.
 * test/core/trust.test.ts checks it against noble's own verify on valid and damaged signatures.
 */
export function verifySignatureParts (publicKey: Uint8Array, parts: readonly Uint8Array[], sig: Uint8Array): boolean {
  if (publicKey.length !== 32 || sig.length !== 64) return false
  const { Point } = nobleEd25519
  try {
    const r = sig.subarray(0, 32)
    const A = Point.fromBytes(publicKey, false)
    const R = Point.fromBytes(r, false)
    const SB = Point.BASE.multiplyUnsafe(bytesToNumberLE(sig.subarray(32))) // throws unless 0 ≤ S < L
    if (A.isSmallOrder()) return false
    const challenge = createHash('sha512').update(r).update(publicKey)
    for (const part of parts) challenge.update(part)
    const k = Point.Fn.create(bytesToNumberLE(new Uint8Array(challenge.digest())))
    return R.add(A.multiplyUnsafe(k)).subtract(SB).clearCofactor().is0()
  } catch {
    return false
  }
}

/**
 * Private key file, UTF-8 JSON (pretty-printed, trailing newline; not signed, so not canonical):
 *   {"type":"shoal-private-key","version":1,"role":<role>,"keytype":"ed25519",
 *    "keyid":<64 hex>,"public":<64 hex>,"secret":<64 hex: the 32-byte Ed25519 seed>}
 */
export function encodePrivateKeyFile (kp: KeyPair, role: string): Uint8Array {
  if (!ROLE_NAME.test(role)) throw new InvalidArgumentError(`key role "${role}" must be 1–32 of a-z, 0-9, "-", starting with a letter`)
  const check = keyPairFromSecret(kp.secretKey)
  if (check.keyid !== kp.keyid || hex(check.publicKey) !== hex(kp.publicKey)) throw new InvalidArgumentError('the key pair does not match its secret key; refusing to write an inconsistent key file')
  return new TextEncoder().encode(JSON.stringify({
    type: KEY_FILE_TYPE, version: 1, role, keytype: KEYTYPE_ED25519, keyid: kp.keyid, public: hex(kp.publicKey), secret: hex(kp.secretKey)
  }, null, 2) + '\n')
}

const KEY_FILE_FIELDS = ['type', 'version', 'role', 'keytype', 'keyid', 'public', 'secret']

export function decodePrivateKeyFile (bytes: Uint8Array): { role: string, key: KeyPair } {
  const what = 'private key file'
  if (bytes.length > MAX_KEY_FILE_BYTES) throw new OversizeError(what, MAX_KEY_FILE_BYTES)
  let o: unknown
  try {
    o = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes))
  } catch (err) {
    throw new DecodeError(what, 'not valid UTF-8 JSON (truncated or damaged?)', { cause: err })
  }
  if (typeof o !== 'object' || o === null || Array.isArray(o)) throw new DecodeError(what, 'not a JSON object')
  const f = o as Record<string, unknown>
  if (f.type !== KEY_FILE_TYPE) throw new DecodeError(what, `"type" is ${quoteValue(f.type)}, expected "${KEY_FILE_TYPE}" (is this a key file?)`)
  if (f.version !== 1) throw new DecodeError(what, `unsupported version ${quoteValue(f.version)} (this shoal reads version 1)`)
  for (const k of Object.keys(f)) if (!KEY_FILE_FIELDS.includes(k)) throw new DecodeError(what, `unknown field "${k}"`)
  for (const k of KEY_FILE_FIELDS) if (!(k in f)) throw new DecodeError(what, `missing field "${k}"`)
  if (f.keytype !== KEYTYPE_ED25519) throw new UnknownKeyTypeError(what, f.keytype)
  if (typeof f.role !== 'string' || !ROLE_NAME.test(f.role)) throw new DecodeError(what, '"role" must be 1–32 of a-z, 0-9, "-"')
  for (const k of ['keyid', 'public', 'secret'] as const) {
    const v = f[k]
    if (typeof v !== 'string' || !HEX64.test(v)) throw new DecodeError(what, `"${k}" must be 64 lowercase hex characters`)
  }
  const key = keyPairFromSecret(fromHex(f.secret as string))
  if (f.public !== hex(key.publicKey) || f.keyid !== key.keyid) {
    throw new DecodeError(what, 'the public key or keyid does not match the secret key (file damaged or edited?)')
  }
  return { role: f.role, key }
}
