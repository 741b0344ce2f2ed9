// RFC 8785 JSON Canonicalization Scheme (JCS): the one byte string that every signature in shoal
// covers. JCS is ECMAScript's own JSON serialization (JSON.stringify string escaping and
// Number::toString) with object members sorted by their names' UTF-16 code units, no whitespace,
// and I-JSON input (no lone surrogates, finite numbers).
//
// shoal's profile is stricter on numbers: signed bodies hold only safe integers (|n| ≤ 2^53 − 1),
// so a second implementation can use int64 or bignum parsers and still agree byte for byte. That
// profile is the default; `{ numbers: 'any' }` gives full RFC 8785 (used by the published test
// vectors and available to callers that need it).
import { DecodeError } from './errors.js'

export interface CanonicalOptions {
  /** 'safe-integers' (default, shoal's signed profile) or 'any' finite number (full RFC 8785). */
  numbers?: 'safe-integers' | 'any'
}

/** Deeper nesting than this is refused: no signed shoal structure comes close, and it bounds recursion. */
export const MAX_CANONICAL_DEPTH = 64

const LONE_SURROGATE = /\p{Cs}/u

function fail (path: string, reason: string): never {
  throw new DecodeError('canonical JSON', `${path} ${reason}`)
}

function str (s: string, path: string): string {
  // JSON.stringify escapes exactly what RFC 8785 §3.2.2.2 escapes (", \, and U+0000–U+001F, with
  // the short forms \b \t \n \f \r and lowercase \u00xx otherwise); lone surrogates are not I-JSON.
  if (LONE_SURROGATE.test(s)) fail(path, 'holds a lone UTF-16 surrogate, which is not valid Unicode')
  return JSON.stringify(s)
}

function num (n: number, path: string, anyNumber: boolean): string {
  if (!Number.isFinite(n)) fail(path, `is ${n}: JSON has no such number`)
  if (!anyNumber && !Number.isSafeInteger(n)) fail(path, `is ${n}: signed shoal data holds only whole numbers within ±(2^53 − 1)`)
  // ECMAScript Number::toString is RFC 8785 §3.2.2.3 by definition; -0 serializes as 0.
  return Object.is(n, -0) ? '0' : String(n)
}

function walk (v: unknown, path: string, depth: number, anyNumber: boolean): string {
  if (v === null) return 'null'
  switch (typeof v) {
    case 'boolean': return v ? 'true' : 'false'
    case 'string': return str(v, path)
    case 'number': return num(v, path, anyNumber)
    case 'object': break
    default: fail(path, `is a ${typeof v}, which JSON cannot hold`)
  }
  if (depth >= MAX_CANONICAL_DEPTH) fail(path, `is nested more than ${MAX_CANONICAL_DEPTH} levels deep`)
  if (Array.isArray(v)) {
    const parts = new Array<string>(v.length)
    for (let i = 0; i < v.length; i++) {
      if (v[i] === undefined) fail(`${path}[${i}]`, 'is undefined')
      parts[i] = walk(v[i], `${path}[${i}]`, depth + 1, anyNumber)
    }
    return '[' + parts.join(',') + ']'
  }
  const proto = Object.getPrototypeOf(v) as unknown
  if (proto !== Object.prototype && proto !== null) fail(path, 'is not a plain object (a Date, Map, Uint8Array, … must be converted to JSON values first)')
  // Array.prototype.sort compares strings by UTF-16 code units, which is the order RFC 8785 asks for.
  const keys = Object.keys(v).sort()
  const parts: string[] = []
  for (const k of keys) {
    const child = (v as Record<string, unknown>)[k]
    if (child === undefined) continue // as JSON.stringify: an absent optional field
    parts.push(str(k, `${path} key`) + ':' + walk(child, `${path}.${k}`, depth + 1, anyNumber))
  }
  return '{' + parts.join(',') + '}'
}

/** The RFC 8785 canonical text of a JSON value (shoal's safe-integer profile unless told otherwise). */
export function canonicalize (value: unknown, opts: CanonicalOptions = {}): string {
  return walk(value, '$', 0, opts.numbers === 'any')
}

const utf8 = new TextEncoder()

/** canonicalize() as UTF-8 bytes: what is hashed and signed. */
export function canonicalBytes (value: unknown, opts: CanonicalOptions = {}): Uint8Array {
  return utf8.encode(canonicalize(value, opts))
}
