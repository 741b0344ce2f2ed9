// Client side of /shoal/blobs/1: one long-lived stream per peer (opened on first use, reopened
// after it dies), requests pipelined up to the server's limit, blob data accepted only within the
// window of credit we granted. Every blob is checked: its length against the caller's maxSize
// as it streams in (the moment the server announces more, the stream is dropped — the 'endless
// data' attack gets nothing buffered), then SHA-256 of the whole against the cid.
import { hash } from 'node:crypto'
import type { Connection, Libp2p, PeerId, Stream } from '@libp2p/interface'
import { isMultiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { DecodeError, InvalidArgumentError } from '../core/errors.js'
import { resolveAdmission, type Admission } from './admission.js'
import {
  CID_BYTES, BLOBS_VERSION, decodeServerMsg, encodeCancel, encodeCredit, encodeRequest, joinParts,
  MsgType, splitDataFrame, Status
} from './blobs-wire.js'
import {
  BLOBS_DEFAULT_IDLE_TIMEOUT_MS, BLOBS_DEFAULT_MAX_INFLIGHT, BLOBS_DEFAULT_OPEN_TIMEOUT_MS,
  BLOBS_DEFAULT_REQUEST_TIMEOUT_MS, BLOBS_DEFAULT_WINDOW, BLOBS_MAX_CHUNK, BLOBS_MAX_FRAME,
  BLOBS_PROTOCOL, MAX_BLOB_BYTES
} from './constants.js'
import {
  BlobBusyError, BlobNotFoundError, BlobRemoteError, BlobVerifyError, NetAbortedError,
  NetTimeoutError, PeerConnectionError, PeerProtocolError
} from './errors.js'
import { isFrameError, FrameDecoder, FrameWriter } from './framing.js'

export interface BlobClientOptions {
  /** Admission to wait for before using a connection; default: the node's admission service. */
  admission?: Admission | 'none'
  /** Blob bytes one server may have in flight to us (our receive buffer per peer). */
  window?: number
  /** Our own cap on requests in flight per peer; the server's HELLO may lower it. */
  maxInflight?: number
  /** A request fails with NetTimeoutError if not answered this long after it was sent. */
  requestTimeoutMs?: number
  /** A stream with requests outstanding that receives nothing this long is dropped. */
  idleTimeoutMs?: number
  /** Time allowed to dial, pass admission, negotiate and receive the server's HELLO. */
  openTimeoutMs?: number
}

/** What we received from one peer: for the daemon's bytes-by-source report and peer scores. */
export interface PeerTransferStats {
  /** Blob bytes received (verified or not). */
  bytesReceived: number
  blobsVerified: number
  verifyFailures: number
}

/** One blob of a batch: its cid and the most bytes it may have. */
export interface BlobWant { cid: Uint8Array, maxSize: number }
/**
 * A batch's outcome for item `item` (its index in the batch): the verified blob, or the error that
 * failed it. Called exactly once per item, synchronously from the stream's read loop (so it must
 * not throw, and should start rather than finish slow work).
 */
export type BlobOutcome = (item: number, blob: Uint8Array | undefined, err: Error | undefined) => void

export interface BatchOptions {
  /** Fails the items not yet reported (NetAbortedError, or NetTimeoutError for a timeout reason). */
  signal?: AbortSignal
  /** That item's request left for the peer: cancelling it from now on may cost the bytes on their way. */
  onSent?: (item: number) => void
  /** Asked just before an item's request is sent: true drops it unsent (reported as NetAbortedError). */
  skip?: (item: number) => boolean
}

interface Settings {
  window: number
  maxInflight: number
  requestTimeoutMs: number
  idleTimeoutMs: number
  openTimeoutMs: number
}

export class BlobClient {
  readonly #node: Libp2p
  readonly #admission: Admission | undefined
  readonly #settings: Settings
  readonly #sessions = new Map<string, ClientSession>()
  readonly #stats = new Map<string, PeerTransferStats>()
  readonly #addrPeers = new Map<string, PeerId>() // bare multiaddr → the PeerId found there
  readonly #named = new WeakMap<Multiaddr, { key: string, target: Multiaddr }>() // multiaddr with /p2p/ → its session key
  #closed = false

  constructor (node: Libp2p, opts: BlobClientOptions = {}) {
    this.#node = node
    this.#admission = resolveAdmission(node, opts.admission)
    this.#settings = {
      window: opts.window ?? BLOBS_DEFAULT_WINDOW,
      maxInflight: opts.maxInflight ?? BLOBS_DEFAULT_MAX_INFLIGHT,
      requestTimeoutMs: opts.requestTimeoutMs ?? BLOBS_DEFAULT_REQUEST_TIMEOUT_MS,
      idleTimeoutMs: opts.idleTimeoutMs ?? BLOBS_DEFAULT_IDLE_TIMEOUT_MS,
      openTimeoutMs: opts.openTimeoutMs ?? BLOBS_DEFAULT_OPEN_TIMEOUT_MS
    }
    if (!(this.#settings.window >= MIN_WINDOW && this.#settings.window <= 0xffffffff)) {
      throw new InvalidArgumentError(`the blobs window must be between ${MIN_WINDOW} bytes and 4 GiB - 1`)
    }
    if (!(this.#settings.maxInflight >= 1)) throw new InvalidArgumentError('maxInflight must be at least 1')
  }

  /**
   * Fetches one blob from `peer` and returns it verified: SHA-256(blob) === cid and its length
   * ≤ maxSize. Throws BlobNotFoundError, BlobBusyError, BlobRemoteError, BlobVerifyError,
   * PeerProtocolError, PeerConnectionError, AdmissionDeniedError, NetTimeoutError or NetAbortedError.
   */
  async fetch (peer: PeerId | Multiaddr, cid: Uint8Array, maxSize: number, signal?: AbortSignal, onSent?: () => void): Promise<Uint8Array> {
    let blob: Uint8Array | undefined
    let error: Error | undefined
    await this.fetchBatch(peer, [{ cid, maxSize }], (_, b, err) => { blob = b; error = err }, { signal, onSent })
    if (error !== undefined) throw error
    return blob!
  }

  /**
   * Fetches a run of blobs from `peer`, pipelined as one fetch each would be, with one promise,
   * one abort listener and one caller frame for the run (per-blob promises and listeners were
   * most of a download's garbage: docs/bench-daemon.md, session 11). Every item is reported to
   * `onItem` exactly once — verified as `fetch` verifies, or with the error `fetch` would throw —
   * and then the promise resolves. It rejects only for bad arguments, before anything is sent.
   */
  async fetchBatch (peer: PeerId | Multiaddr, wants: readonly BlobWant[], onItem: BlobOutcome, opts: BatchOptions = {}): Promise<void> {
    const { signal } = opts
    if (this.#closed) throw new InvalidArgumentError('this BlobClient is closed')
    for (const { cid, maxSize } of wants) {
      if (!(cid instanceof Uint8Array) || cid.byteLength !== CID_BYTES) throw new InvalidArgumentError(`a cid is ${CID_BYTES} bytes`)
      if (!Number.isSafeInteger(maxSize) || maxSize < 0 || maxSize > MAX_BLOB_BYTES) {
        throw new InvalidArgumentError(`maxSize must be an integer within 0…${MAX_BLOB_BYTES}`)
      }
    }
    if (wants.length === 0) return
    let session: ClientSession
    try {
      if (signal?.aborted === true) throw abortError(signal)
      const { key, target } = isMultiaddr(peer) ? (this.#named.get(peer) ?? await this.#target(peer, signal)) : { key: peer.toString(), target: peer }
      let s = this.#sessions.get(key)
      if (s === undefined || s.dead) {
        const fresh = s = new ClientSession(this.#node, this.#admission, this.#settings, key, target, this.#statsFor(key))
        this.#sessions.set(key, fresh)
        fresh.onDead = () => { if (this.#sessions.get(key) === fresh) this.#sessions.delete(key) }
        fresh.open()
      }
      session = s
    } catch (err) {
      for (let i = 0; i < wants.length; i++) onItem(i, undefined, err as Error)
      return
    }
    await session.fetchBatch(wants, onItem, opts)
  }

  /** Blob bytes received from one peer, or from all peers. */
  bytesReceived (peer?: PeerId | string): number {
    if (peer !== undefined) return this.#stats.get(peer.toString())?.bytesReceived ?? 0
    let total = 0
    for (const s of this.#stats.values()) total += s.bytesReceived
    return total
  }

  /** Per-peer counters, keyed by PeerId string (a snapshot). */
  stats (): Map<string, PeerTransferStats> {
    return new Map([...this.#stats].map(([k, v]) => [k, { ...v }]))
  }

  /** Fails every outstanding fetch with NetAbortedError and closes the streams. */
  async close (): Promise<void> {
    this.#closed = true
    const sessions = [...this.#sessions.values()]
    this.#sessions.clear()
    for (const s of sessions) s.kill(new NetAbortedError('blob fetch (client closed)'))
  }

  #statsFor (key: string): PeerTransferStats {
    let s = this.#stats.get(key)
    if (s === undefined) {
      s = { bytesReceived: 0, blobsVerified: 0, verifyFailures: 0 }
      this.#stats.set(key, s)
    }
    return s
  }

  // Sessions are keyed by PeerId. A multiaddr without /p2p/ is dialled first to learn it. One with
  // it is looked at once per Multiaddr object: a seed's address is passed for every blob, and
  // getComponents() builds its component list each time.
  async #target (peer: Multiaddr, signal?: AbortSignal): Promise<{ key: string, target: PeerId | Multiaddr }> {
    const named = this.#named.get(peer)
    if (named !== undefined) return named
    const id = peer.getComponents().findLast((c) => c.name === 'p2p')?.value
    if (id !== undefined) {
      const t = { key: id, target: peer }
      this.#named.set(peer, t)
      return t
    }
    const addr = peer.toString()
    const known = this.#addrPeers.get(addr)
    if (known !== undefined && this.#sessions.get(known.toString())?.dead === false) return { key: known.toString(), target: known }
    try {
      const conn = await this.#node.dial(peer, { signal: signal ?? AbortSignal.timeout(this.#settings.openTimeoutMs) })
      this.#addrPeers.set(addr, conn.remotePeer)
      return { key: conn.remotePeer.toString(), target: conn.remotePeer }
    } catch (err) {
      throw new PeerConnectionError(peer.toString(), `cannot connect: ${(err as Error).message}`, { cause: err })
    }
  }
}

/** A caller's run of requests: reported item by item, `done` after the last. */
interface Batch {
  left: number
  onItem: BlobOutcome
  /**
   * A request went to the server (it waited in our queue until then, beyond the server's HELLO
   * limit): cancelling it from now on may cost the bytes already on their way.
   */
  onSent: ((item: number) => void) | undefined
  skip: ((item: number) => boolean) | undefined
  unlisten: (() => void) | undefined
  done: () => void
}

interface Pending {
  cid: Uint8Array
  maxSize: number
  reqId: number
  phase: 'queued' | 'sent' | 'receiving'
  cancelled: boolean // the caller is gone: the response is drained and dropped
  reported: boolean // the caller has this item's outcome
  size: number
  received: number
  buf?: Uint8Array
  sentAt: number
  batch: Batch
  item: number
}

class ClientSession {
  dead = false
  onDead: () => void = () => {}
  readonly #node: Libp2p
  readonly #admission: Admission | undefined
  readonly #settings: Settings
  readonly #peer: string
  readonly #target: PeerId | Multiaddr
  readonly #stats: PeerTransferStats
  #stream: Stream | undefined
  #writer: FrameWriter | undefined
  #maxInflight = 0 // 0 until the server's HELLO
  #nextReqId = 0
  readonly #queue: Pending[] = []
  readonly #pending = new Map<number, Pending>()
  readonly #out: Uint8Array[] = [] // control frames waiting for the next flush
  #flushScheduled = false
  #credit = 0 // bytes the server may still send us
  #toReturn = 0 // bytes consumed and not yet credited back
  #watchdog: ReturnType<typeof setInterval> | undefined
  #lastRx = Date.now() // last byte received, or when requests went out after a quiet spell
  readonly #openAbort = new AbortController()

  constructor (node: Libp2p, admission: Admission | undefined, settings: Settings, peer: string, target: PeerId | Multiaddr, stats: PeerTransferStats) {
    this.#node = node
    this.#admission = admission
    this.#settings = settings
    this.#peer = peer
    this.#target = target
    this.#stats = stats
  }

  open (): void {
    void this.#open().catch((err: unknown) => { this.kill(err as Error) })
  }

  async #open (): Promise<void> {
    const { openTimeoutMs } = this.#settings
    const signal = AbortSignal.any([this.#openAbort.signal, AbortSignal.timeout(openTimeoutMs)])
    let connection: Connection
    try {
      connection = await this.#node.dial(this.#target, { signal })
    } catch (err) {
      throw this.#openFailure(signal, `cannot connect: ${(err as Error).message}`, err)
    }
    if (this.#admission !== undefined) {
      try {
        await this.#admission.whenAdmitted(connection, { signal })
      } catch (err) {
        if (signal.aborted) throw this.#openFailure(signal, 'admission did not complete', err)
        throw err
      }
    }
    let stream: Stream
    try {
      stream = await connection.newStream(BLOBS_PROTOCOL, { signal })
    } catch (err) {
      if ((err as Error).name === 'UnsupportedProtocolError') throw new PeerProtocolError(this.#peer, `does not serve ${BLOBS_PROTOCOL}`, { cause: err })
      throw this.#openFailure(signal, `cannot open ${BLOBS_PROTOCOL}: ${(err as Error).message}`, err)
    }
    if (this.dead) { stream.abort(new Error('session closed')); return }
    this.#stream = stream
    this.#writer = new FrameWriter(stream)
    this.#credit = this.#settings.window
    this.#out.push(encodeCredit(this.#settings.window))
    this.#flush()
    this.#lastRx = Date.now()
    this.#startWatchdog()
    void this.#readLoop(stream)
  }

  #openFailure (signal: AbortSignal, reason: string, cause: unknown): Error {
    if (signal.aborted && !this.#openAbort.signal.aborted) return new NetTimeoutError(`opening ${BLOBS_PROTOCOL} to ${this.#peer}`, this.#settings.openTimeoutMs, { cause })
    return new PeerConnectionError(this.#peer, reason, { cause })
  }

  async fetchBatch (wants: readonly BlobWant[], onItem: BlobOutcome, { signal, onSent, skip }: BatchOptions): Promise<void> {
    await new Promise<void>((resolve) => {
      const batch: Batch = { left: wants.length, onItem, onSent, skip, unlisten: undefined, done: resolve }
      const ps: Pending[] = []
      for (let i = 0; i < wants.length; i++) {
        const w = wants[i]!
        // a copy: the caller's bytes may change while the request waits
        ps.push({ cid: Uint8Array.from(w.cid), maxSize: w.maxSize, reqId: -1, phase: 'queued', cancelled: false, reported: false, size: 0, received: 0, sentAt: 0, batch, item: i })
      }
      if (signal !== undefined) {
        const onAbort = (): void => {
          const err = abortError(signal)
          for (const p of ps) this.#cancel(p, err)
        }
        signal.addEventListener('abort', onAbort, { once: true })
        batch.unlisten = () => { signal.removeEventListener('abort', onAbort) }
      }
      for (const p of ps) this.#queue.push(p)
      this.#pump()
    })
  }

  /** Fails everything outstanding with `err` and drops the stream. */
  kill (err: Error): void {
    if (this.dead) return
    this.dead = true
    this.onDead()
    this.#openAbort.abort(err)
    if (this.#watchdog !== undefined) clearInterval(this.#watchdog)
    this.#stream?.abort(err)
    for (const p of this.#queue.splice(0)) this.#settle(p, err)
    for (const p of this.#pending.values()) this.#settle(p, err)
    this.#pending.clear()
  }

  // Sends queued requests while the server allows more in flight. While the pipeline is well
  // filled, free slots are refilled a quarter of the limit at a time: each flush is a write
  // syscall on both ends, and on loopback or a VM those cost more than the requests themselves.
  #pump (): void {
    if (this.dead || this.#maxInflight === 0 || this.#queue.length === 0) return
    const limit = Math.min(this.#maxInflight, this.#settings.maxInflight)
    const batch = Math.ceil(limit / 4)
    if (this.#pending.size >= batch && limit - this.#pending.size < batch) return
    const now = Date.now()
    if (this.#pending.size === 0) this.#lastRx = now
    while (this.#queue.length > 0 && this.#pending.size < limit) {
      const p = this.#queue.shift()!
      if (p.batch.skip?.(p.item) === true) {
        this.#settle(p, new NetAbortedError('blob fetch (dropped before it was sent)'))
        continue
      }
      p.reqId = this.#nextReqId
      this.#nextReqId = (this.#nextReqId + 1) >>> 0
      p.phase = 'sent'
      p.sentAt = now
      p.batch.onSent?.(p.item)
      this.#pending.set(p.reqId, p)
      this.#out.push(encodeRequest(p.reqId, p.maxSize, p.cid))
    }
    this.#scheduleFlush()
  }

  // The caller gave up on `p`: reject it now; on the wire, ask the server to stop and keep the
  // request id reserved until its response is over.
  #cancel (p: Pending, err: Error): void {
    if (p.reported || this.dead) return
    this.#settle(p, err)
    p.cancelled = true
    p.buf = undefined
    if (p.phase === 'queued') {
      const i = this.#queue.indexOf(p)
      if (i >= 0) this.#queue.splice(i, 1)
      return
    }
    this.#out.push(encodeCancel(p.reqId))
    this.#scheduleFlush()
  }

  // Reports `p` to its caller, once.
  #settle (p: Pending, err?: Error, blob?: Uint8Array): void {
    if (p.reported) return
    p.reported = true
    const b = p.batch
    b.onItem(p.item, blob, err)
    if (--b.left === 0) {
      b.unlisten?.()
      b.done()
    }
  }

  #scheduleFlush (): void {
    if (this.#flushScheduled || this.#out.length === 0) return
    this.#flushScheduled = true
    queueMicrotask(() => {
      this.#flushScheduled = false
      this.#flush()
    })
  }

  // Control frames (requests, credit, cancels) go out at once in one batch. They are tiny and
  // bounded by the responses we receive, so they need not wait behind a drain.
  #flush (): void {
    if (this.dead || this.#writer === undefined || this.#out.length === 0) return
    try {
      this.#writer.sendNow(this.#out.splice(0))
    } catch (err) {
      this.kill(new PeerConnectionError(this.#peer, 'stream closed while sending', { cause: err }))
    }
  }

  // One timer per session rather than per request (timers are a measurable cost at thousands of
  // blobs a second). It fails requests older than requestTimeoutMs (ids are sent in order, so the
  // oldest come first in #pending), and declares the stream dead when the HELLO does not come or
  // when requests are outstanding and nothing arrives for idleTimeoutMs.
  #startWatchdog (): void {
    const { idleTimeoutMs, openTimeoutMs, requestTimeoutMs } = this.#settings
    this.#watchdog = setInterval(() => {
      const now = Date.now()
      const quiet = now - this.#lastRx
      if (this.#maxInflight === 0 && quiet > openTimeoutMs) {
        this.kill(new NetTimeoutError(`waiting for the ${BLOBS_PROTOCOL} HELLO of ${this.#peer}`, openTimeoutMs))
        return
      }
      if (this.#pending.size > 0 && quiet > idleTimeoutMs) {
        this.kill(new NetTimeoutError(`waiting for data from ${this.#peer}`, idleTimeoutMs))
        return
      }
      for (const p of this.#pending.values()) {
        const age = now - p.sentAt
        if (age <= requestTimeoutMs) break
        // A request is cancelled at its deadline at the latest, and an honest server ends a
        // cancelled response at once. One still open a further deadline later holds an in-flight
        // slot for good (a peer trickling bytes, ignoring CANCEL): requests queued behind such
        // slots would wait without any deadline, so the session is dropped and they fail.
        if (p.cancelled && age > 2 * requestTimeoutMs) {
          this.kill(new NetTimeoutError(`${this.#peer} kept a cancelled request open (waiting for it to end)`, requestTimeoutMs))
          return
        }
        this.#cancel(p, new NetTimeoutError(`fetching blob ${hex(p.cid)} from ${this.#peer}`, requestTimeoutMs))
      }
    }, Math.max(20, Math.min(idleTimeoutMs, openTimeoutMs, requestTimeoutMs) / 4))
    this.#watchdog.unref?.()
  }

  async #readLoop (stream: Stream): Promise<void> {
    const decoder = new FrameDecoder(BLOBS_MAX_FRAME)
    try {
      for await (const chunk of stream) {
        if (this.dead) return
        this.#lastRx = Date.now()
        decoder.push(chunk)
        for (let parts = decoder.nextParts(); parts !== undefined; parts = decoder.nextParts()) {
          const data = splitDataFrame(parts)
          if (data !== undefined) this.#onData(data.reqId, data.data, data.length)
          else this.#onFrame(joinParts(parts))
        }
        this.#scheduleFlush()
      }
      decoder.end()
      this.kill(new PeerConnectionError(this.#peer, `the ${BLOBS_PROTOCOL} stream ended`))
    } catch (err) {
      if (err instanceof DecodeError || isFrameError(err)) {
        this.kill(new PeerProtocolError(this.#peer, (err as Error).message, { cause: err }))
      } else if (err instanceof PeerProtocolError || err instanceof BlobVerifyError) {
        this.kill(err)
      } else {
        this.kill(new PeerConnectionError(this.#peer, `the ${BLOBS_PROTOCOL} stream failed: ${(err as Error).message}`, { cause: err }))
      }
    }
  }

  #onFrame (frame: Uint8Array): void {
    const msg = decodeServerMsg(frame)
    if (msg.type === MsgType.HELLO) {
      if (this.#maxInflight !== 0) throw this.#violation('second HELLO')
      if (msg.version !== BLOBS_VERSION) throw this.#violation(`unsupported version ${msg.version}`)
      this.#maxInflight = msg.maxInflight
      this.#pump()
      return
    }
    if (this.#maxInflight === 0) throw this.#violation('frame before HELLO')
    const p = this.#pending.get(msg.reqId)
    if (p === undefined) throw this.#violation(`response to unknown request ${msg.reqId}`)
    switch (msg.type) {
      case MsgType.RESPONSE: {
        if (p.phase !== 'sent') throw this.#violation(`second RESPONSE to request ${p.reqId}`)
        if (msg.status === Status.CANCELLED && !p.cancelled) throw this.#violation(`cancelled request ${p.reqId}, which we did not cancel`)
        if (msg.status !== Status.OK) {
          this.#complete(p, this.#statusError(msg.status, p))
          return
        }
        if (msg.size > p.maxSize) {
          // The server holds, or claims to hold, more than the blob can be. Refuse before reading
          // a byte of it and drop the stream: an honest server answers ERROR instead.
          this.#stats.verifyFailures++
          const err = new BlobVerifyError(this.#peer, hex(p.cid), `server announced ${msg.size} bytes, more than the ${p.maxSize} allowed`)
          this.#settle(p, err)
          p.cancelled = true
          throw this.#violation(`announced a ${msg.size}-byte blob for a ${p.maxSize}-byte request`)
        }
        p.phase = 'receiving'
        p.size = msg.size
        if (!p.cancelled) {
          p.buf = Buffer.allocUnsafe(msg.size) // every byte is written before it is read
        }
        if (msg.size === 0) this.#finishBlob(p)
        return
      }
      case MsgType.DATA:
        this.#onData(msg.reqId, [msg.data], msg.data.byteLength)
        return
      case MsgType.ABORT:
        if (p.phase !== 'receiving') throw this.#violation(`ABORT before RESPONSE for request ${p.reqId}`)
        this.#complete(p, new BlobRemoteError(this.#peer, hex(p.cid)))
    }
  }

  // A piece of a blob: checked against our credit and the announced size before it is kept.
  #onData (reqId: number, data: Uint8Array[], n: number): void {
    if (this.#maxInflight === 0) throw this.#violation('frame before HELLO')
    const p = this.#pending.get(reqId)
    if (p === undefined) throw this.#violation(`DATA for unknown request ${reqId}`)
    if (p.phase !== 'receiving') throw this.#violation(`DATA before RESPONSE for request ${p.reqId}`)
    if (n > BLOBS_MAX_CHUNK) throw this.#violation(`DATA of ${n} bytes, above the ${BLOBS_MAX_CHUNK}-byte maximum`)
    if (n > this.#credit) throw this.#violation(`sent ${n} bytes with only ${this.#credit} bytes of credit`)
    if (p.received + n > p.size) throw this.#violation(`sent more than the ${p.size} bytes announced for request ${p.reqId}`)
    this.#credit -= n
    this.#stats.bytesReceived += n
    if (!p.cancelled) {
      let at = p.received
      for (const piece of data) {
        p.buf!.set(piece, at)
        at += piece.byteLength
      }
    }
    p.received += n
    this.#returnCredit(n)
    if (p.received === p.size) this.#finishBlob(p)
  }

  #returnCredit (n: number): void {
    this.#toReturn += n
    if (this.#toReturn >= this.#settings.window / 4) {
      this.#out.push(encodeCredit(this.#toReturn))
      this.#credit += this.#toReturn
      this.#toReturn = 0
    }
  }

  #finishBlob (p: Pending): void {
    if (p.cancelled) { this.#complete(p); return }
    const blob = p.buf!
    p.buf = undefined
    // One-shot hash of the assembled blob: no Hash object per blob to create and collect.
    const digest = hash('sha256', blob, 'buffer')
    if (!digest.equals(p.cid)) {
      this.#stats.verifyFailures++
      this.#complete(p, new BlobVerifyError(this.#peer, hex(p.cid), `its SHA-256 is ${digest.toString('hex')}`))
      return
    }
    this.#stats.blobsVerified++
    this.#complete(p, undefined, blob)
  }

  // A response is over: free its request id and slot, settle the caller, send the next request.
  #complete (p: Pending, err?: Error, blob?: Uint8Array): void {
    this.#pending.delete(p.reqId)
    this.#settle(p, err, blob)
    this.#pump()
  }

  #statusError (status: number, p: Pending): Error {
    const cid = hex(p.cid)
    switch (status) {
      case Status.NOT_FOUND: return new BlobNotFoundError(this.#peer, cid)
      case Status.BUSY: return new BlobBusyError(this.#peer, cid)
      case Status.CANCELLED: return new NetAbortedError(`fetching blob ${cid}`)
      default: return new BlobRemoteError(this.#peer, cid)
    }
  }

  #violation (reason: string): PeerProtocolError {
    return new PeerProtocolError(this.#peer, reason)
  }
}

/** Smallest receive window a client may grant (a quarter of it is returned at a time). */
const MIN_WINDOW = 16 * 1024

function abortError (signal: AbortSignal): Error {
  const reason: unknown = signal.reason
  if (reason instanceof Error && reason.name === 'TimeoutError') return new NetTimeoutError('blob fetch (caller deadline)', 0, { cause: reason })
  return new NetAbortedError('blob fetch', { cause: reason })
}

function hex (b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex')
}
