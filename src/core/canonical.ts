// RFC 8785 (JSON Canonicalization Scheme) for the values shoal signs. Our signed bodies hold only
// strings, safe integers, booleans, null, arrays and objects; other numbers are refused rather
// than canonicalized, which keeps JCS's number rules out of the picture: for integers, strings
// and key order, JCS is exactly ECMAScript's JSON.stringify with keys sorted by UTF-16 code units.
import { DecodeError } from './errors.js'

export function canonicalize (value: unknown, path = '$'): string {
  if (value === null) return 'null'
  switch (typeof value) {
    case 'boolean': return value ? 'true' : 'false'
    case 'string': return JSON.stringify(value)
    case 'number':
      if (!Number.isSafeInteger(value)) throw new DecodeError('canonical JSON', `${path} is ${value}: only safe integers are allowed`)
      return Object.is(value, -0) ? '0' : String(value)
    case 'object': {
      if (Array.isArray(value)) return '[' + value.map((v, i) => canonicalize(v, `${path}[${i}]`)).join(',') + ']'
      const keys = Object.keys(value as object).sort()
      const parts: string[] = []
      for (const k of keys) {
        const v = (value as Record<string, unknown>)[k]
        if (v === undefined) continue
        parts.push(JSON.stringify(k) + ':' + canonicalize(v, `${path}.${k}`))
      }
      return '{' + parts.join(',') + '}'
    }
    default:
      throw new DecodeError('canonical JSON', `${path} has a ${typeof value}, which JSON cannot hold`)
  }
}

const enc = new TextEncoder()

export function canonicalBytes (value: unknown): Uint8Array {
  return enc.encode(canonicalize(value))
}
