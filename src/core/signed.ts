// TUF-style signed envelopes: { signed: <body>, signatures: [{ keyid, sig }] }. A signature covers
// "shoal/v1/<type>\n" ‖ canonical(signed), so a signature over one kind of record can never be
// replayed as another. Thresholds count distinct keyids of the role; a bad or unknown signature
// beside enough good ones is ignored.
import { canonicalBytes } from './canonical.js'
import { ShoalError, DecodeError, OversizeError } from './errors.js'
import { sign, verifySignature, type KeyPair, type PublicKey } from './keys.js'

export interface Signature { keyid: string, sig: string }
export interface Envelope<T> { signed: T, signatures: Signature[] }
export type SignedType = 'root' | 'manifest' | 'head' | 'record'

export class SignatureThresholdError extends ShoalError {
  constructor (what: string, valid: number, needed: number) {
    super('ERR_SIGNATURE_THRESHOLD', `${what}: ${valid} valid signature(s) from the required keys, ${needed} needed — not signed by a trusted key threshold`)
  }
}

export class UnknownKeyTypeError extends ShoalError {
  constructor (keyid: string, keytype: unknown) {
    super('ERR_UNKNOWN_KEYTYPE', `key ${keyid.slice(0, 16)}… has unsupported type ${JSON.stringify(keytype)}; only ed25519 is accepted`)
  }
}

export class MetadataExpiredError extends ShoalError {
  constructor (what: string, expires: string, now: Date) {
    super('ERR_EXPIRED', `${what} expired at ${expires} (now ${now.toISOString()})`)
  }
}

const enc = new TextEncoder()

export function signingBytes (type: SignedType, body: unknown): Uint8Array {
  const b = canonicalBytes(body)
  const prefix = enc.encode(`shoal/v1/${type}\n`)
  const out = new Uint8Array(prefix.length + b.length)
  out.set(prefix, 0)
  out.set(b, prefix.length)
  return out
}

export function signEnvelope<T> (type: SignedType, body: T, keys: KeyPair[]): Envelope<T> {
  const msg = signingBytes(type, body)
  return { signed: body, signatures: keys.map(k => ({ keyid: k.keyid, sig: Buffer.from(sign(k, msg)).toString('base64') })) }
}

export function encodeEnvelope (env: Envelope<unknown>): Uint8Array {
  return canonicalBytes(env)
}

export function verifyThreshold (type: SignedType, env: Envelope<unknown>, role: { keyids: string[], threshold: number }, keys: Record<string, PublicKey>, what: string = type): string[] {
  const msg = signingBytes(type, env.signed)
  const ok = new Set<string>()
  for (const s of env.signatures) {
    if (ok.has(s.keyid) || !role.keyids.includes(s.keyid)) continue
    const pk = keys[s.keyid]
    if (pk === undefined) continue
    if (pk.keytype !== 'ed25519') throw new UnknownKeyTypeError(s.keyid, pk.keytype)
    const sig = Buffer.from(s.sig, 'base64')
    if (sig.length !== 64) continue
    if (verifySignature(Buffer.from(pk.public, 'hex'), msg, sig)) ok.add(s.keyid)
  }
  if (ok.size < role.threshold || role.threshold < 1) throw new SignatureThresholdError(what, ok.size, role.threshold)
  return [...ok]
}

export function checkExpiry (what: string, expires: string, now: Date, graceSeconds = 0): void {
  if (Date.parse(expires) + graceSeconds * 1000 <= now.getTime()) throw new MetadataExpiredError(what, expires, now)
}

// ---- strict decoding helpers shared by root, manifest and head ----

export type Obj = Record<string, unknown>

export function parseJsonBytes (bytes: Uint8Array, what: string, max: number): unknown {
  if (bytes.length > max) throw new OversizeError(what, max)
  try {
    return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes))
  } catch (err) {
    throw new DecodeError(what, 'not valid UTF-8 JSON', { cause: err })
  }
}

export function obj (v: unknown, what: string, field: string, allowed: string[]): Obj {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new DecodeError(what, `${field} must be an object`)
  for (const k of Object.keys(v)) if (!allowed.includes(k)) throw new DecodeError(what, `${field} has unknown field "${k}"`)
  return v as Obj
}

export function need (o: Obj, what: string, field: string, ...names: string[]): void {
  for (const n of names) if (!(n in o)) throw new DecodeError(what, `${field}.${n} is missing`)
}

export function str (v: unknown, what: string, field: string, re?: RegExp, max = 4096): string {
  if (typeof v !== 'string' || v.length > max || (re !== undefined && !re.test(v))) throw new DecodeError(what, `${field} is not a valid string${re !== undefined ? ` (${re.source})` : ''}`)
  return v
}

export function int (v: unknown, what: string, field: string, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) throw new DecodeError(what, `${field} must be a whole number in ${min}…${max}`)
  return v
}

export const TIMESTAMP = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/
export const HEX64 = /^[0-9a-f]{64}$/

export function timestamp (v: unknown, what: string, field: string): string {
  const s = str(v, what, field, TIMESTAMP)
  if (Number.isNaN(Date.parse(s))) throw new DecodeError(what, `${field} is not a real date`)
  return s
}

export function isoSeconds (d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z')
}

export function decodeEnvelopeShape (v: unknown, what: string): { signed: unknown, signatures: Signature[] } {
  const o = obj(v, what, 'envelope', ['signed', 'signatures'])
  need(o, what, 'envelope', 'signed', 'signatures')
  if (!Array.isArray(o.signatures) || o.signatures.length > 64) throw new DecodeError(what, 'signatures must be a list of at most 64')
  const signatures = o.signatures.map((s, i) => {
    const so = obj(s, what, `signatures[${i}]`, ['keyid', 'sig'])
    need(so, what, `signatures[${i}]`, 'keyid', 'sig')
    const sig = str(so.sig, what, `signatures[${i}].sig`, /^[A-Za-z0-9+/]{86}==$/)
    // Base64 leaves 4 spare bits in the last character; only the canonical spelling is accepted,
    // so one signature has one encoding and one manifest has one id.
    if (Buffer.from(sig, 'base64').toString('base64') !== sig) throw new DecodeError(what, `signatures[${i}].sig is not canonical base64`)
    return { keyid: str(so.keyid, what, `signatures[${i}].keyid`, HEX64), sig }
  })
  return { signed: o.signed, signatures }
}
