// One-way message streams: a sender keeps one long-lived stream per peer and writes frames on it;
// the receiver reads them and answers nothing (docs/protocol.md §6.7.1). For frequent small
// notifications to the same peers (a site's have increments): a stream per message (handleRpc /
// callRpc) costs a muxer stream, a multistream-select negotiation and a close on both ends, and a
// site of N peers sends 10·N of them a second. Delivery is best effort: a message written to a
// stream that then dies is lost, so a protocol built on this must resynchronise some other way
// (the site's periodic full hellos do).
import type { Connection, Libp2p, PeerId, Stream } from '@libp2p/interface'
import { InvalidArgumentError } from '../core/errors.js'
import { resolveAdmission, type Admission } from './admission.js'
import { ADMIT_TIMEOUT_MS } from './constants.js'
import { PeerProtocolError } from './errors.js'
import { FrameWriter, payloadLength, readFrames, type FramePayload } from './framing.js'

export interface PushLimits {
  /** Largest frame payload sent (sender) or accepted (receiver). */
  maxFrameBytes: number
  /** Default: the node's admission service. */
  admission?: Admission | 'none'
}

/**
 * Serves `protocol`: every frame a peer sends is passed to `onMessage` with its PeerId, in order.
 * A frame above maxFrameBytes, a truncated one, or `onMessage` throwing ends that peer's stream
 * (the sender opens another on its next message). Returns a function that unregisters it.
 */
export async function handlePushStream (node: Libp2p, protocol: string, onMessage: (msg: Uint8Array, peer: PeerId) => void, opts: PushLimits & { maxInboundStreams?: number }): Promise<() => Promise<void>> {
  checkFrameLimit(opts.maxFrameBytes)
  const admission = resolveAdmission(node, opts.admission)
  const open = new Set<Stream>()
  await node.handle(protocol, async (stream: Stream, connection: Connection) => {
    open.add(stream)
    try {
      if (admission !== undefined) await admission.whenAdmitted(connection, { signal: AbortSignal.timeout(ADMIT_TIMEOUT_MS * 2) })
      for await (const frame of readFrames(stream, { maxFrameBytes: opts.maxFrameBytes })) onMessage(frame, connection.remotePeer)
      await stream.close()
    } catch (err) {
      stream.abort(err instanceof Error ? err : new Error(String(err)))
    } finally {
      open.delete(stream)
    }
  }, { maxInboundStreams: opts.maxInboundStreams ?? 2 })
  return async () => {
    await node.unhandle(protocol)
    for (const s of open) s.abort(new Error(`${protocol} stopped`))
  }
}

interface Outbound { stream: Stream, writer: FrameWriter }

/**
 * The sending side: one stream per peer, opened on the first send and again after it dies. Sends
 * to one peer go out in call order; each waits for the stream to drain, so a peer that does not
 * read holds up only its own sends.
 */
export class PushStreams {
  readonly #node: Libp2p
  readonly #protocol: string
  readonly #admission: Admission | undefined
  readonly #maxFrameBytes: number
  readonly #out = new Map<string, Promise<Outbound>>()
  #closed = false

  constructor (node: Libp2p, protocol: string, opts: PushLimits) {
    checkFrameLimit(opts.maxFrameBytes)
    this.#node = node
    this.#protocol = protocol
    this.#admission = resolveAdmission(node, opts.admission)
    this.#maxFrameBytes = opts.maxFrameBytes
  }

  /**
   * Writes the frames to `peer` and resolves once its stream can take more. Throws
   * PeerProtocolError when the peer does not serve the protocol (an older version: the caller
   * falls back), and the dial's or the stream's error otherwise (the stream is dropped).
   */
  async send (peer: PeerId, payloads: readonly FramePayload[], signal?: AbortSignal): Promise<void> {
    if (this.#closed) throw new InvalidArgumentError(`${this.#protocol} sender is closed`)
    for (const p of payloads) {
      const n = payloadLength(p)
      if (n > this.#maxFrameBytes) throw new InvalidArgumentError(`a ${this.#protocol} frame of ${n} bytes is above maxFrameBytes (${this.#maxFrameBytes})`)
    }
    const key = peer.toString()
    let out = this.#out.get(key)
    if (out === undefined) {
      out = this.#open(peer, signal)
      this.#out.set(key, out)
      out.catch(() => { if (this.#out.get(key) === out) this.#out.delete(key) })
    }
    const { writer } = await out
    try {
      await writer.write(payloads, { signal })
    } catch (err) {
      this.drop(peer, err)
      throw err
    }
  }

  /** Ends the stream to `peer` (it is gone, or misbehaved); the next send opens another. */
  drop (peer: PeerId | string, err?: unknown): void {
    const key = peer.toString()
    const out = this.#out.get(key)
    if (out === undefined) return
    this.#out.delete(key)
    out.then(({ stream }) => { stream.abort(err instanceof Error ? err : new Error(`${this.#protocol} stream dropped`)) }, () => {})
  }

  /** Closes every stream; sends after this throw. */
  close (): void {
    this.#closed = true
    for (const key of [...this.#out.keys()]) this.drop(key)
  }

  async #open (peer: PeerId, signal?: AbortSignal): Promise<Outbound> {
    const s = signal ?? AbortSignal.timeout(ADMIT_TIMEOUT_MS * 2)
    const connection = await this.#node.dial(peer, { signal: s })
    if (this.#admission !== undefined) await this.#admission.whenAdmitted(connection, { signal: s })
    let stream: Stream
    try {
      stream = await connection.newStream(this.#protocol, { signal: s })
    } catch (err) {
      if ((err as Error).name === 'UnsupportedProtocolError') throw new PeerProtocolError(peer.toString(), `does not serve ${this.#protocol}`, { cause: err })
      throw err
    }
    const key = peer.toString()
    // a stream that dies (the peer went, the muxer's inactivity timeout) is forgotten at once
    stream.addEventListener('close', () => {
      const cur = this.#out.get(key)
      void cur?.then(o => { if (o.stream === stream && this.#out.get(key) === cur) this.#out.delete(key) }, () => {})
    })
    if (this.#closed) stream.abort(new Error(`${this.#protocol} sender is closed`))
    return { stream, writer: new FrameWriter(stream) }
  }
}

function checkFrameLimit (n: number): void {
  if (!Number.isSafeInteger(n) || n < 1 || n > 0xffffffff) throw new InvalidArgumentError('maxFrameBytes must be an integer within 1…4 GiB - 1')
}
