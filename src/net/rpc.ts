// Request/response for small, rare control messages (announce, publish, report…): one stream per
// call, one frame each way (docs/protocol.md §6.4). Both directions have a byte cap enforced before
// buffering, a deadline, and — like every shoal protocol — nothing is read or answered until the
// connection is admitted. Bulk data does not belong here: use /shoal/blobs/1, which has flow
// control (an upload is best done as "here is what I have" over RPC, then the receiver pulls the
// blobs it lacks over blobs).
import type { AbortOptions, Connection, Libp2p, PeerId, Stream } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import { ShoalError, InvalidArgumentError } from '../core/errors.js'
import { resolveAdmission, type Admission } from './admission.js'
import { ADMIT_TIMEOUT_MS, RPC_DEFAULT_TIMEOUT_MS, RPC_MAX_BODY } from './constants.js'
import { NetAbortedError, NetTimeoutError, PeerConnectionError, PeerProtocolError, RpcRemoteError } from './errors.js'
import { FrameWriter, isFrameError, readFrames } from './framing.js'

const KIND_REQUEST = 0x01
const KIND_OK = 0x00
const KIND_ERROR = 0x01
/** Room for an error reply (code + message) even when maxResponseBytes is tiny. */
const ERROR_ROOM = 1024

export type RpcHandler = (request: Uint8Array, peer: PeerId) => Promise<Uint8Array>

export interface RpcLimits {
  /** Largest request body accepted (server) or sent (client). */
  maxRequestBytes: number
  /** Largest response body sent (server) or accepted (client). */
  maxResponseBytes: number
  /** Default: the node's admission service. */
  admission?: Admission | 'none'
  /** Deadline of one call, from opening the stream to the last byte (default 15 s). */
  timeoutMs?: number
}

export interface HandleRpcOptions extends RpcLimits {
  /** Concurrent calls one connection may have open on this protocol (default 32). */
  maxInboundStreams?: number
}

export interface CallRpcOptions extends RpcLimits, AbortOptions {}

/**
 * Serves `protocol`: each call's request is passed to `handler` with the caller's PeerId and its
 * result is sent back. A ShoalError thrown by the handler reaches the caller as RpcRemoteError
 * with the same code and message; any other error is reported as ERR_INTERNAL without details.
 * Returns a function that unregisters the protocol.
 */
export async function handleRpc (node: Libp2p, protocol: string, handler: RpcHandler, opts: HandleRpcOptions): Promise<() => Promise<void>> {
  checkLimits(opts)
  const admission = resolveAdmission(node, opts.admission)
  const timeoutMs = opts.timeoutMs ?? RPC_DEFAULT_TIMEOUT_MS
  await node.handle(protocol, async (stream: Stream, connection: Connection) => {
    const timer = setTimeout(() => { stream.abort(new NetTimeoutError(`${protocol} call`, timeoutMs)) }, timeoutMs)
    try {
      if (admission !== undefined) await admission.whenAdmitted(connection, { signal: AbortSignal.timeout(ADMIT_TIMEOUT_MS * 2) })
      const request = decodeRpcRequest(await readOne(stream, opts.maxRequestBytes + 1), connection.remotePeer.toString(), protocol)
      let reply: Uint8Array
      try {
        const response = await handler(request, connection.remotePeer)
        if (response.byteLength > opts.maxResponseBytes) throw new Error(`${protocol} handler returned ${response.byteLength} bytes, above maxResponseBytes`)
        reply = concat(Uint8Array.of(KIND_OK), response)
      } catch (err) {
        reply = encodeError(err)
      }
      await new FrameWriter(stream).write([reply])
      await stream.close()
    } catch (err) {
      stream.abort(err as Error)
    } finally {
      clearTimeout(timer)
    }
  }, { maxInboundStreams: opts.maxInboundStreams ?? 32 })
  return async () => { await node.unhandle(protocol) }
}

/**
 * Calls `protocol` on `peer` and returns the response body. Throws RpcRemoteError (the handler
 * failed), PeerProtocolError (no protocol, malformed or oversize reply), PeerConnectionError,
 * AdmissionDeniedError, NetTimeoutError or NetAbortedError.
 */
export async function callRpc (node: Libp2p, peer: PeerId | Multiaddr, protocol: string, request: Uint8Array, opts: CallRpcOptions): Promise<Uint8Array> {
  checkLimits(opts)
  if (request.byteLength > opts.maxRequestBytes) throw new InvalidArgumentError(`${protocol} request of ${request.byteLength} bytes is above maxRequestBytes (${opts.maxRequestBytes})`)
  const admission = resolveAdmission(node, opts.admission)
  const timeoutMs = opts.timeoutMs ?? RPC_DEFAULT_TIMEOUT_MS
  const deadline = AbortSignal.timeout(timeoutMs)
  const signal = opts.signal === undefined ? deadline : AbortSignal.any([opts.signal, deadline])
  const name = peer.toString()
  const fail = (err: unknown, what: string): Error => {
    if (err instanceof ShoalError && !(err instanceof NetAbortedError)) return err
    if (deadline.aborted) return new NetTimeoutError(`${protocol} call to ${name}`, timeoutMs, { cause: err })
    if (opts.signal?.aborted === true) return new NetAbortedError(`${protocol} call to ${name}`, { cause: err })
    return new PeerConnectionError(name, `${what}: ${(err as Error).message}`, { cause: err })
  }

  let connection: Connection
  try {
    connection = await node.dial(peer, { signal })
  } catch (err) {
    throw fail(err, 'cannot connect')
  }
  try {
    if (admission !== undefined) await admission.whenAdmitted(connection, { signal })
  } catch (err) {
    throw fail(err, 'admission')
  }
  let stream: Stream
  try {
    stream = await connection.newStream(protocol, { signal })
  } catch (err) {
    if ((err as Error).name === 'UnsupportedProtocolError') throw new PeerProtocolError(name, `does not serve ${protocol}`, { cause: err })
    throw fail(err, `cannot open ${protocol}`)
  }
  const onAbort = (): void => { stream.abort(new NetAbortedError(`${protocol} call`)) }
  signal.addEventListener('abort', onAbort, { once: true })
  try {
    await new FrameWriter(stream).write([concat(Uint8Array.of(KIND_REQUEST), request)], { signal })
    await stream.close({ signal })
    let frame: Uint8Array | undefined
    try {
      frame = await readOne(stream, opts.maxResponseBytes + ERROR_ROOM)
    } catch (err) {
      if (isFrameError(err)) throw new PeerProtocolError(name, `${protocol} reply: ${(err as Error).message}`, { cause: err })
      throw err
    }
    if (frame === undefined) throw new PeerProtocolError(name, `${protocol}: the stream ended without a reply`)
    return decodeRpcReply(frame, name, protocol, opts.maxResponseBytes)
  } catch (err) {
    stream.abort(err as Error)
    throw fail(err, `${protocol} call`)
  } finally {
    signal.removeEventListener('abort', onAbort)
  }
}

/**
 * The body of a reply frame (kind byte first), or the remote's failure as RpcRemoteError;
 * PeerProtocolError for anything else (oversize body, unknown kind, malformed error reply).
 */
export function decodeRpcReply (frame: Uint8Array, peer: string, protocol: string, maxResponseBytes: number): Uint8Array {
  if (frame[0] === KIND_OK) {
    if (frame.byteLength - 1 > maxResponseBytes) throw new PeerProtocolError(peer, `${protocol} reply is above maxResponseBytes (${maxResponseBytes})`)
    return frame.subarray(1)
  }
  if (frame[0] === KIND_ERROR) {
    const { code, message } = decodeError(frame, peer, protocol)
    throw new RpcRemoteError(peer, protocol, code, message)
  }
  throw new PeerProtocolError(peer, `${protocol}: unknown reply kind ${frame[0]}`)
}

/** The body of a request frame (kind byte first); PeerProtocolError when it is not a request. */
export function decodeRpcRequest (frame: Uint8Array | undefined, peer: string, protocol: string): Uint8Array {
  if (frame === undefined || frame[0] !== KIND_REQUEST) throw new PeerProtocolError(peer, `${protocol}: no request`)
  return frame.subarray(1)
}

function checkLimits (opts: RpcLimits): void {
  for (const k of ['maxRequestBytes', 'maxResponseBytes'] as const) {
    const v = opts[k]
    if (!Number.isSafeInteger(v) || v < 0 || v > RPC_MAX_BODY) throw new InvalidArgumentError(`${k} must be an integer within 0…${RPC_MAX_BODY} bytes`)
  }
}

// Reads the one frame a side sends; undefined if the stream ends before any.
async function readOne (stream: Stream, maxFrameBytes: number): Promise<Uint8Array | undefined> {
  for await (const frame of readFrames(stream, { maxFrameBytes })) return frame
  return undefined
}

function concat (a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.byteLength + b.byteLength)
  out.set(a)
  out.set(b, a.byteLength)
  return out
}

// Error reply: 0x01 ‖ u8 code length ‖ code (ASCII) ‖ message (UTF-8, ≤ 512 bytes).
function encodeError (err: unknown): Uint8Array {
  const known = err instanceof ShoalError
  const code = new TextEncoder().encode((known ? err.code : 'ERR_INTERNAL').slice(0, 64))
  let message = new TextEncoder().encode(known ? err.message : 'internal error')
  if (message.byteLength > 512) message = message.subarray(0, 512)
  const out = new Uint8Array(2 + code.byteLength + message.byteLength)
  out[0] = KIND_ERROR
  out[1] = code.byteLength
  out.set(code, 2)
  out.set(message, 2 + code.byteLength)
  return out
}

function decodeError (frame: Uint8Array, peer: string, protocol: string): { code: string, message: string } {
  const n = frame[1]
  if (n === undefined || frame.byteLength < 2 + n) throw new PeerProtocolError(peer, `${protocol}: malformed error reply`)
  const decoder = new TextDecoder('utf-8', { fatal: false })
  return { code: decoder.decode(frame.subarray(2, 2 + n)), message: decoder.decode(frame.subarray(2 + n)) }
}
