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

// The walk emits the canonical text piece by piece into a sink, and keeps the path to the current
// node as a trail of keys and indices: on a 13 MB manifest, building a path string per node and a
// joined string per level cost ~80 MB of transient memory; checking a text against its canonical
// form (`isCanonicalText`) now allocates almost nothing.
type Trail = Array<string | number>

function pathOf (trail: Trail): string {
  let p = '$'
  for (const t of trail) p += typeof t === 'number' ? `[${t}]` : t === '' ? ' key' : `.${t}`
  return p
}

function fail (trail: Trail, reason: string): never {
  throw new DecodeError('canonical JSON', `${pathOf(trail)} ${reason}`)
}

// JSON.stringify escapes exactly what RFC 8785 §3.2.2.2 escapes (", \, and U+0000–U+001F, with the
// short forms \b \t \n \f \r and lowercase \u00xx otherwise); a string with none of those is
// quoted as it is.
// eslint-disable-next-line no-control-regex -- control characters are exactly what needs escaping
const NEEDS_ESCAPE = /["\\\x00-\x1f]/

function str (s: string, trail: Trail): string {
  // lone surrogates are not I-JSON
  if (LONE_SURROGATE.test(s)) fail(trail, 'holds a lone UTF-16 surrogate, which is not valid Unicode')
  return NEEDS_ESCAPE.test(s) ? JSON.stringify(s) : '"' + s + '"'
}

function num (n: number, trail: Trail, anyNumber: boolean): string {
  if (!Number.isFinite(n)) fail(trail, `is ${n}: JSON has no such number`)
  if (!anyNumber && !Number.isSafeInteger(n)) fail(trail, `is ${n}: signed shoal data holds only whole numbers within ±(2^53 − 1)`)
  // ECMAScript Number::toString is RFC 8785 §3.2.2.3 by definition; -0 serializes as 0.
  return Object.is(n, -0) ? '0' : String(n)
}

function walk (v: unknown, trail: Trail, anyNumber: boolean, emit: (piece: string) => void): void {
  if (v === null) { emit('null'); return }
  switch (typeof v) {
    case 'boolean': emit(v ? 'true' : 'false'); return
    case 'string': emit(str(v, trail)); return
    case 'number': emit(num(v, trail, anyNumber)); return
    case 'object': break
    default: fail(trail, `is a ${typeof v}, which JSON cannot hold`)
  }
  if (trail.length >= MAX_CANONICAL_DEPTH) fail(trail, `is nested more than ${MAX_CANONICAL_DEPTH} levels deep`)
  if (Array.isArray(v)) {
    emit('[')
    for (let i = 0; i < v.length; i++) {
      trail.push(i)
      if (v[i] === undefined) fail(trail, 'is undefined')
      if (i > 0) emit(',')
      walk(v[i], trail, anyNumber, emit)
      trail.pop()
    }
    emit(']')
    return
  }
  const proto = Object.getPrototypeOf(v) as unknown
  if (proto !== Object.prototype && proto !== null) fail(trail, 'is not a plain object (a Date, Map, Uint8Array, … must be converted to JSON values first)')
  // Array.prototype.sort compares strings by UTF-16 code units, which is the order RFC 8785 asks for.
  const keys = Object.keys(v).sort()
  emit('{')
  let first = true
  for (const k of keys) {
    const child = (v as Record<string, unknown>)[k]
    if (child === undefined) continue // as JSON.stringify: an absent optional field
    trail.push('')
    const key = str(k, trail)
    trail[trail.length - 1] = k
    emit(first ? key + ':' : ',' + key + ':')
    first = false
    walk(child, trail, anyNumber, emit)
    trail.pop()
  }
  emit('}')
}

/** The RFC 8785 canonical text of a JSON value (shoal's safe-integer profile unless told otherwise). */
export function canonicalize (value: unknown, opts: CanonicalOptions = {}): string {
  let out = ''
  walk(value, [], opts.numbers === 'any', piece => { out += piece })
  return out
}

/**
 * Whether `text` is exactly the canonical text of `value`, compared piece by piece as the walk
 * goes (no copy of the text is built). Values that cannot be canonical throw as canonicalize does.
 */
export function isCanonicalText (text: string, value: unknown, opts: CanonicalOptions = {}): boolean {
  let at = 0
  let same = true
  walk(value, [], opts.numbers === 'any', piece => {
    if (same && text.startsWith(piece, at)) at += piece.length
    else same = false
  })
  return same && at === text.length
}

const utf8 = new TextEncoder()

/** canonicalize() as UTF-8 bytes: what is hashed and signed. */
export function canonicalBytes (value: unknown, opts: CanonicalOptions = {}): Uint8Array {
  return utf8.encode(canonicalize(value, opts))
}
