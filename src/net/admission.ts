// Fleet admission: only holders of the 32-byte network key may use any shoal protocol.
//
// Two modes (docs/security.md weighs them):
// - 'pnet': libp2p's private network (XSalsa20 under the key, below Noise). An outsider cannot
//   even finish the Noise handshake; every connection that exists is admitted.
// - 'handshake': right after Noise, the dialer opens /shoal/admit/1 and both sides prove the key
//   with an HMAC bound to both PeerIds and both nonces (docs/protocol.md §6.2). Until that succeeds no
//   shoal handler serves the connection; on failure or timeout the connection is closed.
//
// Handlers consult the same small interface in both modes: `isAdmitted` / `whenAdmitted`.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto'
import type { AbortOptions, ComponentLogger, Connection, Libp2p, Libp2pEvents, Logger, PeerId, Startable, Stream, StreamHandler, StreamHandlerOptions, StreamMiddleware, TypedEventTarget } from '@libp2p/interface'
import { DecodeError, InvalidArgumentError } from '../core/errors.js'
import { ADMIT_LABEL, ADMIT_NONCE_BYTES, ADMIT_PROTOCOL, ADMIT_TIMEOUT_MS, NETWORK_KEY_BYTES } from './constants.js'
import { AdmissionDeniedError, NetAbortedError, PeerConnectionError } from './errors.js'
import { FrameDecoder, FrameWriter } from './framing.js'

export type AdmissionMode = 'pnet' | 'handshake'

/** What protocol handlers and clients ask before they serve or use a connection. */
export interface Admission {
  readonly mode: AdmissionMode
  /** True once the connection's peer has proved the network key (always, for open pnet connections). */
  isAdmitted: (connection: Connection) => boolean
  /** Resolves once admitted; rejects with AdmissionDeniedError / PeerConnectionError if it never will be. */
  whenAdmitted: (connection: Connection, options?: AbortOptions) => Promise<void>
  /** Registrar middleware that holds a protocol's streams (both directions) until admission. */
  readonly middleware: StreamMiddleware
}

export interface AdmissionInit {
  mode: AdmissionMode
  networkKey: Uint8Array
  timeoutMs?: number
}

/** The libp2p components the service uses (a structural subset of libp2p's `Components`). */
export interface AdmissionComponents {
  peerId: PeerId
  logger: ComponentLogger
  events: TypedEventTarget<Libp2pEvents>
  registrar: {
    handle: (protocol: string, handler: StreamHandler, options?: StreamHandlerOptions) => Promise<void>
    unhandle: (protocol: string) => Promise<void>
  }
}

/** libp2p service factory: `services: { admission: admission({ mode, networkKey }) }`. */
export function admission (init: AdmissionInit): (components: AdmissionComponents) => Admission & Startable {
  checkNetworkKey(init.networkKey)
  return (components) => init.mode === 'pnet' ? new PnetAdmission() : new HandshakeAdmission(components, init)
}

/**
 * The admission a protocol should enforce on `node`: the one given, else the node's `admission`
 * service. Fails closed: a node without one must be passed `'none'` explicitly (benchmarks only).
 */
export function resolveAdmission (node: Libp2p, given: Admission | 'none' | undefined): Admission | undefined {
  if (given === 'none') return undefined
  if (given !== undefined) return given
  const found = (node.services as { admission?: Admission } | undefined)?.admission
  if (found === undefined) throw new InvalidArgumentError('this libp2p node has no admission service: build it with createShoalNode, or pass admission explicitly')
  return found
}

export function checkNetworkKey (key: Uint8Array): void {
  if (!(key instanceof Uint8Array) || key.byteLength !== NETWORK_KEY_BYTES) {
    throw new InvalidArgumentError(`the network key must be ${NETWORK_KEY_BYTES} bytes`)
  }
}

/** The network key in @libp2p/pnet's (and go-libp2p's) swarm.key format: `/key/swarm/psk/1.0.0/\n/base16/\n<hex>`. */
export function pnetSwarmKey (networkKey: Uint8Array): Uint8Array {
  checkNetworkKey(networkKey)
  return new TextEncoder().encode(`/key/swarm/psk/1.0.0/\n/base16/\n${Buffer.from(networkKey).toString('hex')}`)
}

/**
 * The admission MAC (docs/protocol.md §6.2): HMAC-SHA256(networkKey, "shoal/v1/admit" ‖ role ‖
 * u16 len ‖ initiator PeerId ‖ u16 len ‖ responder PeerId ‖ nonceI ‖ nonceR), role 'I' for the
 * initiator's proof and 'R' for the responder's, so neither proof can be reflected back.
 */
export function admitMac (networkKey: Uint8Array, role: 'I' | 'R', initiator: PeerId, responder: PeerId, nonceI: Uint8Array, nonceR: Uint8Array): Uint8Array {
  const idI = initiator.toMultihash().bytes
  const idR = responder.toMultihash().bytes
  const len = (n: number): Buffer => { const b = Buffer.alloc(2); b.writeUInt16BE(n); return b }
  return createHmac('sha256', networkKey)
    .update(ADMIT_LABEL).update(role)
    .update(len(idI.byteLength)).update(idI)
    .update(len(idR.byteLength)).update(idR)
    .update(nonceI).update(nonceR)
    .digest()
}

class PnetAdmission implements Admission, Startable {
  readonly mode = 'pnet' as const
  readonly [Symbol.toStringTag] = 'shoal:admission:pnet'
  readonly middleware: StreamMiddleware = (stream, connection, next) => {
    if (connection.status === 'open') next(stream, connection)
    else stream.abort(new PeerConnectionError(connection.remotePeer.toString(), 'connection closed'))
  }

  start (): void {}
  stop (): void {}

  isAdmitted (connection: Connection): boolean {
    return connection.status === 'open'
  }

  async whenAdmitted (connection: Connection): Promise<void> {
    if (connection.status !== 'open') throw new PeerConnectionError(connection.remotePeer.toString(), 'connection closed')
  }
}

interface ConnState {
  admitted: boolean
  started: boolean // an admit stream has been opened (initiator) or accepted (responder)
  done: Promise<void>
  resolve: () => void
  reject: (err: Error) => void
  timer: ReturnType<typeof setTimeout>
}

class HandshakeAdmission implements Admission, Startable {
  readonly mode = 'handshake' as const
  readonly [Symbol.toStringTag] = 'shoal:admission:handshake'
  readonly #components: AdmissionComponents
  readonly #key: Uint8Array
  readonly #timeoutMs: number
  readonly #log: Logger
  readonly #states = new WeakMap<Connection, ConnState>()
  #running = false

  constructor (components: AdmissionComponents, init: AdmissionInit) {
    this.#components = components
    this.#key = Uint8Array.from(init.networkKey)
    this.#timeoutMs = init.timeoutMs ?? ADMIT_TIMEOUT_MS
    this.#log = components.logger.forComponent('shoal:admission')
  }

  readonly middleware: StreamMiddleware = async (stream, connection, next) => {
    await this.whenAdmitted(connection)
    next(stream, connection)
  }

  async start (): Promise<void> {
    this.#running = true
    this.#components.events.addEventListener('connection:open', this.#onOpen)
    this.#components.events.addEventListener('connection:close', this.#onClose)
    await this.#components.registrar.handle(ADMIT_PROTOCOL, this.#onAdmitStream, {
      maxInboundStreams: 2,
      maxOutboundStreams: 2
    })
  }

  async stop (): Promise<void> {
    this.#running = false
    this.#components.events.removeEventListener('connection:open', this.#onOpen)
    this.#components.events.removeEventListener('connection:close', this.#onClose)
    await this.#components.registrar.unhandle(ADMIT_PROTOCOL)
  }

  isAdmitted (connection: Connection): boolean {
    return connection.status === 'open' && this.#states.get(connection)?.admitted === true
  }

  async whenAdmitted (connection: Connection, options?: AbortOptions): Promise<void> {
    const state = this.#state(connection)
    if (state.admitted && connection.status === 'open') return
    const signal = options?.signal
    if (signal === undefined) return state.done
    if (signal.aborted) throw new NetAbortedError('waiting for admission', { cause: signal.reason })
    let onAbort: (() => void) | undefined
    try {
      await Promise.race([state.done, new Promise<never>((_resolve, reject) => {
        onAbort = () => { reject(new NetAbortedError('waiting for admission', { cause: signal.reason })) }
        signal.addEventListener('abort', onAbort)
      })])
    } finally {
      if (onAbort !== undefined) signal.removeEventListener('abort', onAbort)
    }
  }

  readonly #onOpen = (evt: CustomEvent<Connection>): void => {
    this.#state(evt.detail)
  }

  readonly #onClose = (evt: CustomEvent<Connection>): void => {
    const state = this.#states.get(evt.detail)
    if (state === undefined) return
    clearTimeout(state.timer)
    if (!state.admitted) state.reject(new PeerConnectionError(evt.detail.remotePeer.toString(), 'connection closed before admission'))
  }

  // The state of a connection, created on first sight: that starts the deadline and, on the
  // dialing side, the handshake.
  #state (connection: Connection): ConnState {
    let state = this.#states.get(connection)
    if (state !== undefined) return state
    let resolve!: () => void
    let reject!: (err: Error) => void
    const promise = new Promise<void>((res, rej) => { resolve = res; reject = rej })
    promise.catch(() => {}) // observed by whoever waits; an unobserved denial is not a crash
    state = {
      admitted: false,
      started: false,
      done: promise,
      resolve,
      reject,
      timer: setTimeout(() => { this.#deny(connection, `no admission handshake within ${this.#timeoutMs} ms`) }, this.#timeoutMs)
    }
    state.timer.unref?.()
    this.#states.set(connection, state)
    if (connection.status !== 'open' || !this.#running) {
      this.#deny(connection, 'connection is not open')
    } else if (connection.direction === 'outbound') {
      state.started = true
      queueMicrotask(() => { void this.#initiate(connection) })
    }
    return state
  }

  #admit (connection: Connection): void {
    const state = this.#state(connection)
    clearTimeout(state.timer)
    if (connection.status !== 'open') return
    state.admitted = true
    state.resolve()
    this.#log('admitted %p on %s', connection.remotePeer, connection.id)
  }

  #deny (connection: Connection, reason: string, cause?: unknown): void {
    const state = this.#states.get(connection)
    if (state?.admitted === true) return
    const err = new AdmissionDeniedError(connection.remotePeer.toString(), reason, { cause })
    if (state !== undefined) {
      clearTimeout(state.timer)
      state.reject(err)
    }
    this.#log('denied %p on %s: %s', connection.remotePeer, connection.id, reason)
    connection.abort(err)
  }

  async #initiate (connection: Connection): Promise<void> {
    let stream: Stream | undefined
    try {
      stream = await connection.newStream(ADMIT_PROTOCOL, { signal: AbortSignal.timeout(this.#timeoutMs) })
      const reader = frameReader(stream)
      const writer = new FrameWriter(stream)
      const nonceI = randomBytes(ADMIT_NONCE_BYTES)
      await writer.write([nonceI])
      const { nonceR, proofR } = decodeAdmitReply(await reader())
      const self = this.#components.peerId
      const expected = admitMac(this.#key, 'R', self, connection.remotePeer, nonceI, nonceR)
      if (!timingSafeEqual(expected, proofR)) {
        this.#deny(connection, 'responder proof does not match our network key')
        return
      }
      await writer.write([admitMac(this.#key, 'I', self, connection.remotePeer, nonceI, nonceR)])
      this.#admit(connection)
      await stream.close().catch(() => {})
    } catch (err) {
      stream?.abort(err as Error)
      this.#deny(connection, `handshake failed: ${(err as Error).message}`, err)
    }
  }

  readonly #onAdmitStream = async (stream: Stream, connection: Connection): Promise<void> => {
    const state = this.#state(connection)
    if (state.started || connection.direction !== 'inbound') {
      stream.abort(new Error('unexpected admission stream'))
      return
    }
    state.started = true
    try {
      const reader = frameReader(stream)
      const writer = new FrameWriter(stream)
      const nonceI = decodeAdmitNonce(await reader())
      const nonceR = randomBytes(ADMIT_NONCE_BYTES)
      const self = this.#components.peerId
      const proofR = admitMac(this.#key, 'R', connection.remotePeer, self, nonceI, nonceR)
      await writer.write([Buffer.concat([nonceR, proofR])])
      const proofI = decodeAdmitProof(await reader())
      const expected = admitMac(this.#key, 'I', connection.remotePeer, self, nonceI, nonceR)
      if (!timingSafeEqual(expected, proofI)) {
        this.#deny(connection, 'initiator proof does not match our network key')
        return
      }
      this.#admit(connection)
      await stream.close().catch(() => {})
    } catch (err) {
      stream.abort(err as Error)
      this.#deny(connection, `handshake failed: ${(err as Error).message}`, err)
    }
  }
}

// The three handshake messages (docs/protocol.md §6.2), each one frame: nonceI, then nonceR ‖ proofR,
// then proofI. Exact lengths; anything else is a DecodeError (the handshake then denies the peer).
const ADMIT_PROOF_BYTES = 32
const ADMIT_WHAT = 'admission handshake'

export function decodeAdmitNonce (frame: Uint8Array): Uint8Array {
  if (frame.byteLength !== ADMIT_NONCE_BYTES) throw new DecodeError(ADMIT_WHAT, `initiator nonce is ${frame.byteLength} bytes, expected ${ADMIT_NONCE_BYTES}`)
  return frame
}

export function decodeAdmitReply (frame: Uint8Array): { nonceR: Uint8Array, proofR: Uint8Array } {
  if (frame.byteLength !== ADMIT_NONCE_BYTES + ADMIT_PROOF_BYTES) throw new DecodeError(ADMIT_WHAT, `responder nonce and proof are ${frame.byteLength} bytes, expected ${ADMIT_NONCE_BYTES + ADMIT_PROOF_BYTES}`)
  return { nonceR: frame.subarray(0, ADMIT_NONCE_BYTES), proofR: frame.subarray(ADMIT_NONCE_BYTES) }
}

export function decodeAdmitProof (frame: Uint8Array): Uint8Array {
  if (frame.byteLength !== ADMIT_PROOF_BYTES) throw new DecodeError(ADMIT_WHAT, `initiator proof is ${frame.byteLength} bytes, expected ${ADMIT_PROOF_BYTES}`)
  return frame
}

/** Frames a handshake message may be: the longest is nonceR ‖ proofR. */
export const ADMIT_MAX_FRAME = 64

// Reads successive frames (≤ 64 bytes) from a short handshake stream without `for await`, which
// would end the iteration (and detach from the stream) after the first frame.
function frameReader (stream: Stream): () => Promise<Uint8Array> {
  const decoder = new FrameDecoder(ADMIT_MAX_FRAME)
  const waiters: Array<{ resolve: (f: Uint8Array) => void, reject: (e: Error) => void }> = []
  const frames: Uint8Array[] = []
  let failure: Error | undefined
  const fail = (err: Error): void => {
    failure ??= err
    for (const w of waiters.splice(0)) w.reject(failure)
  }
  const deliver = (): void => {
    while (waiters.length > 0 && frames.length > 0) waiters.shift()!.resolve(frames.shift()!)
  }
  stream.addEventListener('message', (evt) => {
    try {
      decoder.push(evt.data)
      for (let f = decoder.next(); f !== undefined; f = decoder.next()) frames.push(f)
      deliver()
    } catch (err) {
      fail(err as Error)
    }
  })
  const onEnd = (): void => { fail(new Error('stream ended during the handshake')) }
  stream.addEventListener('remoteCloseWrite', onEnd)
  stream.addEventListener('close', onEnd)
  return async () => {
    if (frames.length > 0) return frames.shift()!
    if (failure !== undefined) throw failure
    return await new Promise<Uint8Array>((resolve, reject) => { waiters.push({ resolve, reject }) })
  }
}
