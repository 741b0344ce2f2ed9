// Server side of /shoal/blobs/1: answers a peer's pipelined requests on one long-lived stream.
//
// Memory is bounded per stream: at most `maxInflight` requests are accepted (more is a protocol
// error), at most `readAhead` blobs — and, beyond the first, at most `readAheadBytes` of them,
// counted by the requests' maxSize until read — are held from the source unsent, and blob data goes
// out only against the client's credit — so what sits in our send buffer, the muxer and the
// client's unbounded `for await` queue is never more than the client's window.
import type { Connection, Libp2p, Stream } from '@libp2p/interface'
import { DecodeError } from '../core/errors.js'
import { resolveAdmission, type Admission } from './admission.js'
import {
  encodeAbort, encodeDataHeader, encodeHello, encodeResponse, decodeClientMsg,
  MsgType, Status, type StatusCode
} from './blobs-wire.js'
import {
  ADMIT_TIMEOUT_MS, BLOBS_DEFAULT_MAX_INFLIGHT, BLOBS_DEFAULT_MAX_INFLIGHT_TOTAL,
  BLOBS_DEFAULT_READ_AHEAD, BLOBS_DEFAULT_READ_AHEAD_BYTES, BLOBS_MAX_CHUNK, BLOBS_MAX_FRAME, BLOBS_PROTOCOL
} from './constants.js'
import { PeerProtocolError } from './errors.js'
import { isFrameError, FrameDecoder, FrameWriter, type FramePayload } from './framing.js'

/** Server side data source, e.g. the blob store. Returns null when it does not hold the blob. */
export interface BlobSource {
  get: (cid: Uint8Array) => Promise<Uint8Array | null>
}

export interface BlobServerOptions {
  /** Whose key peers must prove; default: the node's admission service. 'none' = serve anyone. */
  admission?: Admission | 'none'
  /** Requests one client may have outstanding on its stream (announced in HELLO). */
  maxInflightPerStream?: number
  /** Source reads per stream held at once (read but unsent blobs count). */
  readAhead?: number
  /** Bytes those may hold (a single blob larger than this is still served, alone). */
  readAheadBytes?: number
  /** Requests outstanding across all streams before new ones are answered `busy`. */
  maxInflightTotal?: number
  /** Filled in as the server runs, for metrics and tests. */
  stats?: BlobServerStats
}

/** Counters of a blobs server. `maxUnackedBytes` ≤ the client's window is what credits guarantee. */
export class BlobServerStats {
  requests = 0
  blobsServed = 0
  bytesServed = 0
  /** Most blob bytes sent and not yet credited back on any stream. */
  maxUnackedBytes = 0
  /** Most requests outstanding on any stream at once. */
  maxInflight = 0
  /** Most source reads running at once on any stream. */
  maxReading = 0
  readonly bytesServedTo = new Map<string, number>()
}

/** Registers the blobs protocol handler; the returned function unregisters it and ends its streams. */
export async function registerBlobsProtocol (node: Libp2p, source: BlobSource, opts: BlobServerOptions = {}): Promise<() => Promise<void>> {
  const admission = resolveAdmission(node, opts.admission)
  const limits: Limits = {
    maxInflight: opts.maxInflightPerStream ?? BLOBS_DEFAULT_MAX_INFLIGHT,
    readAhead: opts.readAhead ?? BLOBS_DEFAULT_READ_AHEAD,
    readAheadBytes: opts.readAheadBytes ?? BLOBS_DEFAULT_READ_AHEAD_BYTES,
    maxInflightTotal: opts.maxInflightTotal ?? BLOBS_DEFAULT_MAX_INFLIGHT_TOTAL
  }
  if (!(limits.maxInflight >= 1 && limits.maxInflight <= 0xffff)) throw new RangeError('maxInflightPerStream must be within 1…65535')
  const sendBatch = admission?.mode === 'pnet' ? SEND_BATCH_PNET : SEND_BATCH
  const shared: Shared = { source, limits, stats: opts.stats ?? new BlobServerStats(), totalInflight: 0, sendBatch }
  const sessions = new Set<ServerSession>()

  await node.handle(BLOBS_PROTOCOL, async (stream: Stream, connection: Connection) => {
    if (admission !== undefined) {
      try {
        await admission.whenAdmitted(connection, { signal: AbortSignal.timeout(ADMIT_TIMEOUT_MS * 2) })
      } catch (err) {
        stream.abort(err as Error)
        return
      }
    }
    const session = new ServerSession(stream, connection.remotePeer.toString(), shared)
    sessions.add(session)
    void session.run().finally(() => sessions.delete(session))
  }, { maxInboundStreams: 8 })

  return async () => {
    await node.unhandle(BLOBS_PROTOCOL)
    for (const s of sessions) s.abort(new Error('blobs server stopped'))
  }
}

/**
 * Blob bytes gathered into one send, at most (plus one DATA piece). Every send is a muxer frame
 * (or a few, while yamux's window is still small), and the receiver answers each with a window
 * update, its own Noise message and socket write; on loopback a write costs the receiver more
 * than the frame. ~1 MiB (about the 64 blobs of read-ahead) against ~188 KiB: endpoint CPU
 * −19 %, throughput +17 % (docs/bench-daemon.md, session 11); 512 KiB and 2 MiB (with 128 of
 * read-ahead) did no better.
 */
const SEND_BATCH = 16 * BLOBS_MAX_CHUNK - 4096
/**
 * …and under pnet, what it was before (~188 KiB): the `xsalsa20` package beneath @libp2p/pnet
 * grows its WebAssembly memory by about a write's size each time the connection's two directions
 * take turns, and never shrinks it, so larger writes reach its maximum sooner (1 MiB sends died
 * with "WebAssembly.Memory.grow(): Maximum memory size exceeded" within 1 GiB in bench/net.ts;
 * docs/security.md).
 */
const SEND_BATCH_PNET = 3 * BLOBS_MAX_CHUNK - 4096
/** How long a send waits for reads in flight to fill its batch. */
const GATHER_MAX_MS = 5

interface Limits { maxInflight: number, readAhead: number, readAheadBytes: number, maxInflightTotal: number }
interface Shared { source: BlobSource, limits: Limits, stats: BlobServerStats, totalInflight: number, sendBatch: number }

interface Req {
  reqId: number
  cid: Uint8Array
  maxSize: number
  status?: StatusCode
  blob?: Uint8Array
  offset: number
  headerSent: boolean
  cancelled: boolean
  counted: boolean // holds a slot of the server-wide inflight budget
  reserved: number // bytes of the read-ahead budget it holds (maxSize until read, then its size)
}

class ServerSession {
  readonly #stream: Stream
  readonly #peer: string
  readonly #shared: Shared
  readonly #writer: FrameWriter
  readonly #requests = new Map<number, Req>()
  readonly #toLoad: Req[] = []
  readonly #ready: Req[] = [] // loaded (or refused), waiting to be sent, in order
  #reading = 0
  #reservedBytes = 0 // read-ahead bytes held by loading and loaded-unsent blobs
  #credit = 0 // blob bytes we may still send
  #creditTotal = 0
  #initialWindow: number | undefined
  #sentTotal = 0
  #wake: (() => void) | undefined
  #inputEnded = false
  #dead = false
  #gatherTimer: ReturnType<typeof setTimeout> | undefined
  #gatherExpired = false

  constructor (stream: Stream, peer: string, shared: Shared) {
    this.#stream = stream
    this.#peer = peer
    this.#shared = shared
    this.#writer = new FrameWriter(stream)
    // the connection may go without the read loop noticing while the sender waits for credit
    stream.addEventListener('close', () => { this.#dead = true; this.#signal() })
  }

  abort (err: Error): void {
    if (this.#dead) return
    this.#dead = true
    this.#stream.abort(err)
    this.#signal()
  }

  async run (): Promise<void> {
    const sender = this.#sendLoop()
    try {
      this.#writer.sendNow([encodeHello(this.#shared.limits.maxInflight)])
      const decoder = new FrameDecoder(BLOBS_MAX_FRAME)
      for await (const chunk of this.#stream) {
        decoder.push(chunk)
        for (let f = decoder.next(); f !== undefined; f = decoder.next()) this.#onFrame(f)
      }
      decoder.end()
      this.#inputEnded = true // the client closed its side: finish what it asked for, then close
      this.#signal()
    } catch (err) {
      const e = err instanceof DecodeError || isFrameError(err)
        ? new PeerProtocolError(this.#peer, (err as Error).message, { cause: err })
        : err as Error
      this.abort(e)
    }
    await sender
    clearTimeout(this.#gatherTimer)
    this.#releaseAll()
  }

  #onFrame (frame: Uint8Array): void {
    const msg = decodeClientMsg(frame)
    switch (msg.type) {
      case MsgType.REQUEST: {
        if (this.#requests.has(msg.reqId)) throw new PeerProtocolError(this.#peer, `request id ${msg.reqId} reused while outstanding`)
        if (this.#requests.size >= this.#shared.limits.maxInflight) {
          throw new PeerProtocolError(this.#peer, `more than ${this.#shared.limits.maxInflight} requests outstanding`)
        }
        const req: Req = { reqId: msg.reqId, cid: Uint8Array.from(msg.cid), maxSize: msg.maxSize, offset: 0, headerSent: false, cancelled: false, counted: false, reserved: 0 }
        this.#requests.set(req.reqId, req)
        const stats = this.#shared.stats
        stats.requests++
        stats.maxInflight = Math.max(stats.maxInflight, this.#requests.size)
        if (this.#shared.totalInflight >= this.#shared.limits.maxInflightTotal) {
          req.status = Status.BUSY
          this.#ready.push(req)
          this.#signal()
        } else {
          req.counted = true
          this.#shared.totalInflight++
          this.#toLoad.push(req)
          this.#pumpLoads()
        }
        return
      }
      case MsgType.CREDIT: {
        this.#initialWindow ??= msg.bytes
        this.#credit += msg.bytes
        this.#creditTotal += msg.bytes
        if (this.#credit > 2 ** 40) throw new PeerProtocolError(this.#peer, 'credit beyond 1 TiB')
        this.#signal()
        return
      }
      case MsgType.CANCEL: {
        const req = this.#requests.get(msg.reqId)
        if (req === undefined) return // already answered: the cancel crossed the response
        req.cancelled = true
        const queued = this.#toLoad.indexOf(req)
        if (queued >= 0) {
          this.#toLoad.splice(queued, 1)
          req.status = Status.CANCELLED
          this.#ready.push(req)
        }
        this.#signal()
      }
    }
  }

  #pumpLoads (): void {
    const { limits, source, stats } = this.#shared
    while (!this.#dead && this.#toLoad.length > 0 && this.#reading + this.#ready.length < limits.readAhead) {
      const next = this.#toLoad[0]!
      if (this.#reservedBytes > 0 && this.#reservedBytes + next.maxSize > limits.readAheadBytes) break
      const req = this.#toLoad.shift()!
      this.#reserve(req, req.maxSize)
      this.#reading++
      stats.maxReading = Math.max(stats.maxReading, this.#reading)
      let read: Promise<Uint8Array | null>
      try {
        read = source.get(req.cid)
      } catch (err) {
        read = Promise.reject(err) // a source that throws instead of rejecting
      }
      read.then((blob) => {
        if (req.cancelled) req.status = Status.CANCELLED
        else if (blob === null) req.status = Status.NOT_FOUND
        else if (blob.byteLength > req.maxSize) req.status = Status.ERROR
        else { req.status = Status.OK; req.blob = blob }
      }, () => {
        req.status = Status.ERROR
      }).finally(() => {
        this.#reserve(req, req.blob?.byteLength ?? 0)
        this.#reading--
        this.#ready.push(req)
        this.#signal()
      })
    }
  }

  #reserve (req: Req, bytes: number): void {
    this.#reservedBytes += bytes - req.reserved
    req.reserved = bytes
  }

  #signal (): void {
    const wake = this.#wake
    this.#wake = undefined
    wake?.()
  }

  async #sendLoop (): Promise<void> {
    try {
      while (!this.#dead) {
        // While reads are landing, gather a batch's worth before sending: every muxer frame costs
        // both sides a Noise message, a write and a window update, and one ~18 KiB blob per frame
        // (reads complete one at a time) tripled the receiver's CPU per blob against full frames
        // (docs/bench-daemon.md, 2026-12-02). Each read that lands wakes us to look again.
        // A read that hangs holds the batch back GATHER_MAX_MS at most.
        if (this.#reading > 0 && this.#credit > 0 && !this.#inputEnded && this.#readyBytes() < this.#shared.sendBatch && !this.#gatherExpired) {
          this.#gatherTimer ??= setTimeout(() => { this.#gatherExpired = true; this.#signal() }, GATHER_MAX_MS)
          await new Promise<void>((resolve) => { this.#wake = resolve })
          continue
        }
        clearTimeout(this.#gatherTimer)
        this.#gatherTimer = undefined
        this.#gatherExpired = false
        const batch: FramePayload[] = []
        let bytes = 0
        while (this.#ready.length > 0 && bytes < this.#shared.sendBatch) {
          const req = this.#ready[0]!
          if (!req.headerSent) {
            if (req.cancelled) { req.status = Status.CANCELLED; req.blob = undefined; this.#reserve(req, 0) }
            const size = req.status === Status.OK ? req.blob!.byteLength : 0
            batch.push(encodeResponse(req.reqId, req.status!, size))
            bytes += 10
            req.headerSent = true
            if (size === 0) { this.#finish(); continue }
          } else if (req.cancelled) {
            batch.push(encodeAbort(req.reqId))
            this.#finish()
            continue
          }
          if (this.#credit === 0) break
          const blob = req.blob!
          const n = Math.min(this.#credit, BLOBS_MAX_CHUNK, blob.byteLength - req.offset)
          batch.push([encodeDataHeader(req.reqId), blob.subarray(req.offset, req.offset + n)])
          req.offset += n
          bytes += n
          this.#credit -= n
          this.#account(n)
          if (req.offset === blob.byteLength) this.#finish()
        }
        if (batch.length > 0) {
          await this.#writer.write(batch)
          continue
        }
        if (this.#inputEnded) {
          if (this.#requests.size === 0) {
            await this.#stream.close()
            return
          }
          if (this.#credit === 0 && this.#ready[0]?.headerSent === true) {
            // the client can no longer grant credit for what it asked: nothing left to do
            this.abort(new PeerProtocolError(this.#peer, 'closed its side with responses waiting for credit'))
            return
          }
        }
        await new Promise<void>((resolve) => { this.#wake = resolve })
      }
    } catch (err) {
      this.abort(err as Error)
    }
  }

  // Blob bytes loaded and not yet sent (a cheap bound: stops once a batch is reached).
  #readyBytes (): number {
    let n = 0
    for (const req of this.#ready) {
      n += (req.blob?.byteLength ?? 0) - req.offset
      if (n >= this.#shared.sendBatch) break
    }
    return n
  }

  #account (n: number): void {
    const stats = this.#shared.stats
    this.#sentTotal += n
    stats.bytesServed += n
    stats.bytesServedTo.set(this.#peer, (stats.bytesServedTo.get(this.#peer) ?? 0) + n)
    const unacked = this.#sentTotal - (this.#creditTotal - (this.#initialWindow ?? 0))
    if (unacked > stats.maxUnackedBytes) stats.maxUnackedBytes = unacked
  }

  // The head of #ready is fully answered.
  #finish (): void {
    const req = this.#ready.shift()!
    this.#reserve(req, 0)
    this.#requests.delete(req.reqId)
    if (req.status === Status.OK && !req.cancelled) this.#shared.stats.blobsServed++
    req.blob = undefined
    if (req.counted) { req.counted = false; this.#shared.totalInflight-- }
    this.#pumpLoads()
  }

  #releaseAll (): void {
    for (const req of this.#requests.values()) {
      if (req.counted) { req.counted = false; this.#shared.totalInflight-- }
      req.blob = undefined
    }
    this.#requests.clear()
    this.#toLoad.length = 0
    this.#ready.length = 0
  }
}
