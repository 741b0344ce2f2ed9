// Messages of the control protocols (/shoal/announce/1, /shoal/publish/1), carried one per RPC
// frame (docs/protocol.md §6.5): a JSON header saying what is asked or answered, then the binary
// objects it refers to (heads, manifests) as they were signed — never re-encoded, so their ids and
// signatures survive the trip.
//
//   message = u32 H ‖ header[H] (UTF-8 JSON object) ‖ body
//
// The header lists `sizes` when the body holds several objects back to back.
import { DecodeError } from '../core/errors.js'
import { CONTROL_MAX_HEADER } from './constants.js'

export type ControlHeader = Record<string, unknown>

export interface ControlMessage {
  header: ControlHeader
  /** The objects the header's `sizes` describe, in order; one object when `sizes` is absent. */
  parts: Uint8Array[]
}

const enc = new TextEncoder()
const dec = new TextDecoder('utf-8', { fatal: true })

export function encodeControl (header: ControlHeader, parts: readonly Uint8Array[] = []): Uint8Array {
  const h = enc.encode(JSON.stringify(parts.length > 1 ? { ...header, sizes: parts.map(p => p.byteLength) } : header))
  if (h.byteLength > CONTROL_MAX_HEADER) throw new DecodeError('control message', `header of ${h.byteLength} bytes is above ${CONTROL_MAX_HEADER}`)
  const bodyLen = parts.reduce((n, p) => n + p.byteLength, 0)
  const out = new Uint8Array(4 + h.byteLength + bodyLen)
  new DataView(out.buffer).setUint32(0, h.byteLength)
  out.set(h, 4)
  let off = 4 + h.byteLength
  for (const p of parts) { out.set(p, off); off += p.byteLength }
  return out
}

export function decodeControl (bytes: Uint8Array, what: string): ControlMessage {
  if (bytes.byteLength < 4) throw new DecodeError(what, 'shorter than its 4-byte header length')
  const hLen = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(0)
  if (hLen > CONTROL_MAX_HEADER || 4 + hLen > bytes.byteLength) throw new DecodeError(what, `header length ${hLen} does not fit the ${bytes.byteLength}-byte message`)
  let header: unknown
  try {
    header = JSON.parse(dec.decode(bytes.subarray(4, 4 + hLen)))
  } catch (err) {
    throw new DecodeError(what, 'header is not UTF-8 JSON', { cause: err })
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) throw new DecodeError(what, 'header is not a JSON object')
  const h = header as ControlHeader
  const body = bytes.subarray(4 + hLen)
  if (h.sizes === undefined) return { header: h, parts: body.byteLength === 0 ? [] : [body] }
  if (!Array.isArray(h.sizes) || h.sizes.some(s => !Number.isSafeInteger(s) || (s as number) < 0)) throw new DecodeError(what, '"sizes" must be a list of byte counts')
  const sizes = h.sizes as number[]
  if (sizes.reduce((a, b) => a + b, 0) !== body.byteLength) throw new DecodeError(what, `"sizes" add up to ${sizes.reduce((a, b) => a + b, 0)} bytes, the body has ${body.byteLength}`)
  const parts: Uint8Array[] = []
  let off = 0
  for (const s of sizes) { parts.push(body.subarray(off, off + s)); off += s }
  return { header: h, parts }
}

/** A header field that must be a string matching `re`. */
export function headerString (h: ControlHeader, field: string, what: string, re?: RegExp): string {
  const v = h[field]
  if (typeof v !== 'string' || v.length === 0 || v.length > 4096 || (re !== undefined && !re.test(v))) {
    throw new DecodeError(what, `header field "${field}" is missing or malformed`)
  }
  return v
}

/** A header field that must be a list of strings matching `re`, at most `max` long. */
export function headerStrings (h: ControlHeader, field: string, what: string, max: number, re?: RegExp): string[] {
  const v = h[field]
  if (!Array.isArray(v) || v.length > max || v.some(x => typeof x !== 'string' || (re !== undefined && !re.test(x)))) {
    throw new DecodeError(what, `header field "${field}" must be a list of at most ${max} well-formed strings`)
  }
  return v as string[]
}
