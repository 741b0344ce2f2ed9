// The /shoal/blobs/1 messages, byte for byte (docs/protocol.md §6.3). Each is one frame payload; the
// first byte is its type. Integers are big-endian. Decoders are strict: a wrong length or an
// unknown type or status is a DecodeError, which the session turns into a protocol error.
import { DecodeError } from '../core/errors.js'

export const BLOBS_VERSION = 1
export const CID_BYTES = 32

export const MsgType = {
  /** client → server: fetch a blob */
  REQUEST: 0x01,
  /** client → server: the server may send this many more bytes of blob data */
  CREDIT: 0x02,
  /** client → server: the client no longer wants a response */
  CANCEL: 0x03,
  /** server → client: first frame of the stream */
  HELLO: 0x80,
  /** server → client: status (and size) of a response */
  RESPONSE: 0x81,
  /** server → client: a piece of a blob */
  DATA: 0x82,
  /** server → client: a response ends early; no more DATA for it */
  ABORT: 0x83
} as const

export const Status = {
  OK: 0,
  NOT_FOUND: 1,
  BUSY: 2,
  ERROR: 3,
  CANCELLED: 4
} as const
export type StatusCode = typeof Status[keyof typeof Status]

export type ClientMsg =
  | { type: typeof MsgType.REQUEST, reqId: number, maxSize: number, cid: Uint8Array }
  | { type: typeof MsgType.CREDIT, bytes: number }
  | { type: typeof MsgType.CANCEL, reqId: number }

export type ServerMsg =
  | { type: typeof MsgType.HELLO, version: number, maxInflight: number }
  | { type: typeof MsgType.RESPONSE, reqId: number, status: StatusCode, size: number }
  | { type: typeof MsgType.DATA, reqId: number, data: Uint8Array }
  | { type: typeof MsgType.ABORT, reqId: number }

const WHAT = 'blobs frame'

// Hand-rolled big-endian access: these run several times per blob, and a DataView per message
// showed up in profiles as allocation and GC.
function u32 (b: Uint8Array, at: number): number {
  return ((b[at]! << 24) >>> 0) + (b[at + 1]! << 16) + (b[at + 2]! << 8) + b[at + 3]!
}

function putU32 (b: Uint8Array, at: number, v: number): void {
  b[at] = v >>> 24
  b[at + 1] = v >>> 16
  b[at + 2] = v >>> 8
  b[at + 3] = v
}

function message (type: number, length: number, id: number): Uint8Array {
  const buf = new Uint8Array(length)
  buf[0] = type
  putU32(buf, 1, id)
  return buf
}

export function encodeRequest (reqId: number, maxSize: number, cid: Uint8Array): Uint8Array {
  const buf = message(MsgType.REQUEST, 9 + CID_BYTES, reqId)
  putU32(buf, 5, maxSize)
  buf.set(cid, 9)
  return buf
}

export function encodeCredit (bytes: number): Uint8Array {
  return message(MsgType.CREDIT, 5, bytes)
}

export function encodeCancel (reqId: number): Uint8Array {
  return message(MsgType.CANCEL, 5, reqId)
}

export function encodeHello (maxInflight: number): Uint8Array {
  return Uint8Array.of(MsgType.HELLO, BLOBS_VERSION, maxInflight >>> 8, maxInflight & 0xff)
}

export function encodeResponse (reqId: number, status: StatusCode, size: number): Uint8Array {
  const buf = message(MsgType.RESPONSE, 10, reqId)
  buf[5] = status
  putU32(buf, 6, size)
  return buf
}

/** The 5-byte head of a DATA frame; the blob bytes follow it in the same frame. */
export function encodeDataHeader (reqId: number): Uint8Array {
  return message(MsgType.DATA, 5, reqId)
}

export function encodeAbort (reqId: number): Uint8Array {
  return message(MsgType.ABORT, 5, reqId)
}

function expectLength (f: Uint8Array, n: number, name: string): void {
  if (f.byteLength !== n) throw new DecodeError(WHAT, `${name} is ${f.byteLength} bytes, expected ${n}`)
}

export function decodeClientMsg (f: Uint8Array): ClientMsg {
  switch (f[0]) {
    case MsgType.REQUEST:
      expectLength(f, 9 + CID_BYTES, 'REQUEST')
      return { type: MsgType.REQUEST, reqId: u32(f, 1), maxSize: u32(f, 5), cid: f.subarray(9) }
    case MsgType.CREDIT: {
      expectLength(f, 5, 'CREDIT')
      const bytes = u32(f, 1)
      if (bytes === 0) throw new DecodeError(WHAT, 'CREDIT of zero bytes')
      return { type: MsgType.CREDIT, bytes }
    }
    case MsgType.CANCEL:
      expectLength(f, 5, 'CANCEL')
      return { type: MsgType.CANCEL, reqId: u32(f, 1) }
    default:
      throw new DecodeError(WHAT, `unknown client message type 0x${(f[0] ?? 0).toString(16)}`)
  }
}

export function decodeServerMsg (f: Uint8Array): ServerMsg {
  switch (f[0]) {
    case MsgType.HELLO: {
      expectLength(f, 4, 'HELLO')
      const maxInflight = (f[2]! << 8) + f[3]!
      if (maxInflight === 0) throw new DecodeError(WHAT, 'HELLO allows no request in flight')
      return { type: MsgType.HELLO, version: f[1]!, maxInflight }
    }
    case MsgType.RESPONSE: {
      expectLength(f, 10, 'RESPONSE')
      const status = f[5]!
      if (status > Status.CANCELLED) throw new DecodeError(WHAT, `unknown status ${status}`)
      return { type: MsgType.RESPONSE, reqId: u32(f, 1), status: status as StatusCode, size: u32(f, 6) }
    }
    case MsgType.DATA:
      if (f.byteLength < 6) throw new DecodeError(WHAT, 'DATA without data')
      return { type: MsgType.DATA, reqId: u32(f, 1), data: f.subarray(5) }
    case MsgType.ABORT:
      expectLength(f, 5, 'ABORT')
      return { type: MsgType.ABORT, reqId: u32(f, 1) }
    default:
      throw new DecodeError(WHAT, `unknown server message type 0x${(f[0] ?? 0).toString(16)}`)
  }
}

/**
 * Fast path for the client: a DATA frame given as parts (FrameDecoder.nextParts) is read without
 * joining them. Returns undefined for any other message type (decode those with decodeServerMsg).
 */
export function splitDataFrame (parts: Uint8Array[]): { reqId: number, data: Uint8Array[], length: number } | undefined {
  const first = parts[0]!
  if (first[0] !== MsgType.DATA) return undefined
  let head = first
  if (first.byteLength < 5) head = joinParts(parts, 5)
  const data: Uint8Array[] = []
  let skip = 5
  let length = 0
  for (const part of parts) {
    if (skip >= part.byteLength) { skip -= part.byteLength; continue }
    const piece = skip > 0 ? part.subarray(skip) : part
    skip = 0
    data.push(piece)
    length += piece.byteLength
  }
  if (length === 0) throw new DecodeError(WHAT, 'DATA without data')
  return { reqId: u32(head, 1), data, length }
}

/** The first `n` bytes of the parts (all of them when n is omitted), as one array. */
export function joinParts (parts: Uint8Array[], n?: number): Uint8Array {
  if (parts.length === 1 && n === undefined) return parts[0]!
  let total = 0
  for (const p of parts) total += p.byteLength
  const out = new Uint8Array(Math.min(total, n ?? total))
  let at = 0
  for (const p of parts) {
    if (at >= out.byteLength) break
    const m = Math.min(p.byteLength, out.byteLength - at)
    out.set(m === p.byteLength ? p : p.subarray(0, m), at)
    at += m
  }
  return out
}
