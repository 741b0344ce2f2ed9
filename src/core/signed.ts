// TUF-style signed envelopes: { "signed": <body>, "signatures": [{ "keyid", "sig" }] }. A signature
// covers "shoal/v1/<type>\n" ‖ canonical(signed), so a signature over one kind of record can never
// be replayed as another. A threshold counts distinct keyids of the role whose signature verifies;
// a duplicated, unknown or bad signature beside enough good ones is ignored, never fatal.
// The strict decoding helpers shared by root, manifest and head live here too.
import { canonicalBytes, isCanonicalText } from './canonical.js'
import { ShoalError, DecodeError, OversizeError, InvalidArgumentError, quoteValue } from './errors.js'
import { sign, verifySignatureParts, keyIdOfObject, HEX64, type KeyPair, type PublicKey } from './keys.js'

export { HEX64 }

export interface Signature { keyid: string, sig: string /* canonical base64 of 64 bytes */ }
export interface Envelope<T> { signed: T, signatures: Signature[] }
export type SignedType = 'root' | 'manifest' | 'head' | 'record'
export const SIGNED_TYPES: readonly SignedType[] = ['root', 'manifest', 'head', 'record']

/** More signatures than this on one envelope is refused at decode (and bounds verification work). */
export const MAX_SIGNATURES = 64

export class SignatureThresholdError extends ShoalError {
  readonly valid: number
  readonly needed: number
  constructor (what: string, valid: number, needed: number, detail?: string) {
    super('ERR_SIGNATURE_THRESHOLD', `${what}: ${valid} valid signature(s) from the required keys, ${needed} needed — ${detail ?? 'not signed by a trusted key threshold (wrong keys, tampered, or signed for another root?)'}`)
    this.valid = valid
    this.needed = needed
  }
}

/** Base class of RootExpiredError, ManifestExpiredError and HeadExpiredError (one code for scripts). */
export class MetadataExpiredError extends ShoalError {
  readonly expires: string
  constructor (what: string, expires: string, now: Date, hint = '') {
    super('ERR_EXPIRED', `${what} expired at ${expires} (now ${isoSeconds(now)})${hint}`)
    this.expires = expires
  }
}

/** Something older than what was already accepted (root version, head sequence, package sequence). */
export class RollbackError extends ShoalError {
  constructor (message: string) {
    super('ERR_ROLLBACK', message)
  }
}

const utf8 = new TextEncoder()

/**
 * Canonical bytes of bodies decoded from canonical envelopes, by object identity: verifying a
 * 13 MB manifest need not encode it a second time (that encoding was ~50 MB of transient memory).
 * Only frozen bodies are remembered, so a body can never drift from its bytes.
 */
const decodedBodyBytes = new WeakMap<object, Uint8Array>()

/**
 * For a decoder: `bytes` held the canonical envelope `{"signatures":[…],"signed":<body>}` (checked
 * by requireCanonical), so the body's canonical bytes are its tail; remember them for `body`, which
 * is frozen here (deeply) so that what is verified is what was decoded.
 */
export function rememberDecodedBody (body: object, bytes: Uint8Array, text: string): void {
  // Keys sort "signatures" < "signed"; inside JSON strings a quote is escaped, so the first
  // `,"signed":` is the envelope's own. Signatures are hex and base64: one byte per character.
  const at = text.indexOf(',"signed":')
  if (at < 0 || !text.endsWith('}')) return
  deepFreeze(body)
  decodedBodyBytes.set(body, bytes.subarray(at + ',"signed":'.length, bytes.byteLength - 1))
}

/**
 * Drops what rememberDecodedBody kept for `body` (a verifier that is done with it): the tail
 * pins the whole envelope's bytes, 13 MB for a 57 000-chunk manifest held through its download.
 * A later signingBytes(body) encodes it again.
 */
export function forgetDecodedBody (body: object): void {
  decodedBodyBytes.delete(body)
}

function deepFreeze (v: unknown): void {
  if (typeof v !== 'object' || v === null || Object.isFrozen(v)) return
  Object.freeze(v)
  for (const child of Object.values(v)) deepFreeze(child)
}

/** What a signature covers, `shoal/v1/<type>\n` ‖ canonical body (docs/protocol.md), as its two parts. */
function signingParts (type: SignedType, body: unknown): [Uint8Array, Uint8Array] {
  if (!SIGNED_TYPES.includes(type)) throw new InvalidArgumentError(`unknown signed type ${JSON.stringify(type)}`)
  const b = (typeof body === 'object' && body !== null ? decodedBodyBytes.get(body) : undefined) ?? canonicalBytes(body)
  return [utf8.encode(`shoal/v1/${type}\n`), b]
}

export function signingBytes (type: SignedType, body: unknown): Uint8Array {
  const [prefix, b] = signingParts(type, body)
  const out = new Uint8Array(prefix.length + b.length)
  out.set(prefix, 0)
  out.set(b, prefix.length)
  return out
}

const b64 = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('base64')

/** Signs `body` with each key (a key given twice signs once). */
export function signEnvelope<T> (type: SignedType, body: T, keys: KeyPair[]): Envelope<T> {
  return appendSignatures(type, { signed: body, signatures: [] }, keys)
}

/**
 * Adds signatures by more keys to an envelope (a t-of-n root signed by key holders one at a time).
 * Keys that already signed it are skipped.
 */
export function appendSignatures<T> (type: SignedType, env: Envelope<T>, keys: KeyPair[]): Envelope<T> {
  const msg = signingBytes(type, env.signed)
  const signatures = [...env.signatures]
  const have = new Set(signatures.map(s => s.keyid))
  for (const k of keys) {
    if (have.has(k.keyid)) continue
    have.add(k.keyid)
    signatures.push({ keyid: k.keyid, sig: b64(sign(k, msg)) })
  }
  return { signed: env.signed, signatures }
}

/** The canonical bytes of the whole envelope: what is stored, sent and hashed into ids. */
export function encodeEnvelope (env: Envelope<unknown>): Uint8Array {
  return canonicalBytes({ signed: env.signed, signatures: env.signatures.map(s => ({ keyid: s.keyid, sig: s.sig })) })
}

const SIG_B64 = /^[A-Za-z0-9+/]{86}==$/

function sigBytes (sig: unknown): Uint8Array | null {
  if (typeof sig !== 'string' || !SIG_B64.test(sig)) return null
  const b = Buffer.from(sig, 'base64')
  return b.length === 64 && b.toString('base64') === sig ? b : null
}

/**
 * Checks that `env` carries valid signatures by at least `role.threshold` distinct keys of `role`.
 * Returns the keyids that verified. Keys are looked up in `keys` and must hash to their keyid; a
 * role key of an unknown type is refused outright (UnknownKeyTypeError), never skipped.
 */
export function verifyThreshold (type: SignedType, env: Envelope<unknown>, role: { keyids: string[], threshold: number }, keys: Record<string, PublicKey>, what: string = type): string[] {
  const needed = role.threshold
  if (!Number.isSafeInteger(needed) || needed < 1) {
    throw new SignatureThresholdError(what, 0, needed, 'the role\'s threshold is not a whole number ≥ 1, so nothing can count as signed')
  }
  const roleKeys = new Map<string, Uint8Array>()
  for (const id of role.keyids) {
    if (roleKeys.has(id) || !Object.hasOwn(keys, id)) continue
    const pk = keys[id] as PublicKey
    // A key listed under an id that is not its own never counts: one key, one vote.
    if (keyIdOfObject(pk, `key ${id.slice(0, 16)}…`) !== id) continue
    roleKeys.set(id, new Uint8Array(Buffer.from(pk.public, 'hex')))
  }
  // In parts: a 12 MiB manifest body is hashed where it lies, never copied (verifySignatureParts).
  const msg = signingParts(type, env.signed)
  const ok: string[] = []
  for (const s of env.signatures) {
    const pub = roleKeys.get(s.keyid)
    if (pub === undefined || ok.includes(s.keyid)) continue
    const sig = sigBytes(s.sig)
    if (sig !== null && verifySignatureParts(pub, msg, sig)) ok.push(s.keyid)
  }
  if (ok.length < needed) throw new SignatureThresholdError(what, ok.length, needed)
  return ok
}

// ---- time ----

/** `YYYY-MM-DDTHH:MM:SSZ`, UTC, whole seconds (milliseconds are dropped). */
export function isoSeconds (d: Date): string {
  if (!(d instanceof Date) || Number.isNaN(d.getTime())) throw new InvalidArgumentError('not a valid date')
  const s = d.toISOString().replace(/\.\d{3}Z$/, 'Z')
  if (!TIMESTAMP.test(s)) throw new InvalidArgumentError(`date ${s} is outside the years 0000–9999`)
  return s
}

/** True when `expires` (+ grace) is not after `now`: metadata is valid strictly before its expiry. */
export function isExpired (expires: string, now: Date, graceSeconds = 0): boolean {
  if (!(now instanceof Date) || Number.isNaN(now.getTime())) throw new InvalidArgumentError('"now" must be a valid Date')
  if (!Number.isFinite(graceSeconds) || graceSeconds < 0) throw new InvalidArgumentError(`graceSeconds must be ≥ 0, got ${graceSeconds}`)
  return Date.parse(expires) + graceSeconds * 1000 <= now.getTime()
}

// ---- strict decoding helpers shared by root, manifest and head ----

export type Obj = Record<string, unknown>

const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })

/**
 * Size cap first, then UTF-8 (invalid sequences refused; a byte-order mark is kept, so JSON.parse
 * refuses it rather than it silently vanishing), then JSON.parse.
 */
export function parseJsonBytes (bytes: Uint8Array, what: string, max: number): { text: string, value: unknown } {
  if (!(bytes instanceof Uint8Array)) throw new InvalidArgumentError(`${what}: expected bytes (Uint8Array)`)
  if (bytes.length > max) throw new OversizeError(what, max)
  let text: string
  try {
    text = strictUtf8.decode(bytes)
  } catch (err) {
    throw new DecodeError(what, 'not valid UTF-8', { cause: err })
  }
  try {
    return { text, value: JSON.parse(text) as unknown }
  } catch (err) {
    throw new DecodeError(what, 'not valid JSON (truncated or damaged?)', { cause: err })
  }
}

/**
 * Refuses any spelling but the canonical one, so one document has exactly one byte string and one
 * id, and parsers that treat duplicate keys or number spellings differently cannot disagree.
 */
export function requireCanonical (text: string, value: unknown, what: string): void {
  if (!isCanonicalText(text, value)) {
    throw new DecodeError(what, 'not in canonical form (RFC 8785: sorted keys, no whitespace, no duplicate keys, minimal escapes and numbers)')
  }
}

export function obj (v: unknown, what: string, field: string, allowed: readonly string[]): Obj {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new DecodeError(what, `${field} must be an object`)
  // A key holding `undefined` (in-memory input only; JSON has no undefined) counts as absent.
  for (const [k, x] of Object.entries(v)) if (x !== undefined && !allowed.includes(k)) throw new DecodeError(what, `${field} has unknown field ${JSON.stringify(k.slice(0, 64))}`)
  return v as Obj
}

export function need (o: Obj, what: string, field: string, ...names: string[]): void {
  for (const n of names) if (!Object.hasOwn(o, n) || o[n] === undefined) throw new DecodeError(what, `${field}.${n} is missing`)
}

export function list (v: unknown, what: string, field: string, max: number): unknown[] {
  if (!Array.isArray(v)) throw new DecodeError(what, `${field} must be a list`)
  if (v.length > max) throw new DecodeError(what, `${field} has ${v.length} entries, more than the ${max} allowed`)
  return v
}

export function str (v: unknown, what: string, field: string, re?: RegExp, maxLength = 4096): string {
  if (typeof v !== 'string') throw new DecodeError(what, `${field} must be a string`)
  if (v.length > maxLength) throw new DecodeError(what, `${field} is longer than ${maxLength} characters`)
  if (re !== undefined && !re.test(v)) throw new DecodeError(what, `${field} ${JSON.stringify(v.slice(0, 80))} does not match ${re.source}`)
  return v
}

export function int (v: unknown, what: string, field: string, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) {
    throw new DecodeError(what, `${field} must be a whole number in ${min}…${max}, got ${typeof v === 'number' ? v : typeof v}`)
  }
  return v
}

export const TIMESTAMP = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/

export function timestamp (v: unknown, what: string, field: string): string {
  const s = str(v, what, field, TIMESTAMP, 20)
  // Date.parse accepts 2026-02-30 and 24:00:00; a round trip refuses every date that does not exist.
  const t = Date.parse(s)
  if (Number.isNaN(t) || new Date(t).toISOString().replace(/\.\d{3}Z$/, 'Z') !== s) throw new DecodeError(what, `${field} ${s} is not a real UTC time`)
  return s
}

/** Standard base64 with padding, in its one canonical spelling; returns the decoded length. */
export function base64 (v: unknown, what: string, field: string, maxLength: number): { text: string, bytes: number } {
  const s = str(v, what, field, undefined, maxLength)
  if (s.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(s)) throw new DecodeError(what, `${field} is not base64`)
  const b = Buffer.from(s, 'base64')
  // Base64 leaves spare bits in the last character; only the spelling with them zero is accepted.
  if (b.toString('base64') !== s) throw new DecodeError(what, `${field} is not canonical base64`)
  return { text: s, bytes: b.length }
}

export function decodeEnvelopeShape (v: unknown, what: string): { signed: unknown, signatures: Signature[] } {
  const o = obj(v, what, 'envelope', ['signed', 'signatures'])
  need(o, what, 'envelope', 'signed', 'signatures')
  const sigs = list(o.signatures, what, 'signatures', MAX_SIGNATURES)
  const signatures = sigs.map((s, i) => {
    const so = obj(s, what, `signatures[${i}]`, ['keyid', 'sig'])
    need(so, what, `signatures[${i}]`, 'keyid', 'sig')
    const keyid = str(so.keyid, what, `signatures[${i}].keyid`, HEX64)
    if (sigBytes(so.sig) === null) throw new DecodeError(what, `signatures[${i}].sig must be the canonical base64 of 64 bytes`)
    return { keyid, sig: so.sig as string }
  })
  return { signed: o.signed, signatures }
}

/**
 * The signed body of an envelope: `_type` and `formatVersion` are checked before the field list,
 * so a file of another kind or version gets that message rather than "unknown field".
 */
export function signedBody (v: unknown, what: string, type: string, allowed: readonly string[], required: readonly string[]): Obj {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new DecodeError(what, 'signed must be an object')
  const b = v as Obj
  if (b._type !== type) throw new DecodeError(what, `_type is ${quoteValue(b._type)}, expected "${type}" (wrong file?)`)
  if (b.formatVersion !== 1) throw new DecodeError(what, `unsupported formatVersion ${quoteValue(b.formatVersion)} (this shoal reads 1; upgrade shoal?)`)
  obj(b, what, 'signed', allowed)
  need(b, what, 'signed', ...required)
  return b
}
