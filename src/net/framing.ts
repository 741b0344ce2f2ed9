// Length-prefixed frames over a libp2p stream: a 4-byte big-endian unsigned length, then that many
// payload bytes (docs/protocol.md §6.1). A fixed u32 rather than a varint: trivially exact to specify,
// and the length is checked against the protocol's limit as soon as its 4 bytes are in, before a
// single payload byte is kept. Zero-length frames are invalid (every protocol message has a type).
//
// Reading: a push decoder (sync, so protocol loops can process a whole chunk without yielding)
// plus an async generator over `for await` of the stream. Writing: one `send()` per batch of
// frames; when `send()` returns false we wait for 'drain' (or fail on 'close') before sending
// more — @libp2p/utils' onDrain() resolves only once per stream, so it is not used.
import type { AbortOptions } from '@libp2p/interface'
import { FrameOversizeError, FrameTruncatedError, NetAbortedError, StreamClosedError } from './errors.js'

export const FRAME_HEADER_BYTES = 4

/**
 * From this payload size on, a frame is assembled into one buffer as its bytes arrive, once a
 * quarter of it is in, instead of keeping every transport chunk until the last one and copying
 * them then: a 12 MiB manifest reply held 2 × 12 MiB at that moment. Waiting for the quarter keeps
 * a peer from making us allocate more than 4× what it actually sent.
 */
const ASSEMBLE_FROM_BYTES = 1024 * 1024

/** A framing error of ours (oversize, truncated). Other errors carry numeric codes too (DOMException). */
export function isFrameError (err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code
  return typeof code === 'string' && code.startsWith('ERR_FRAME')
}

/** What a libp2p stream yields: a Uint8Array or a Uint8ArrayList (an iterable of Uint8Arrays). */
export type StreamChunk = Uint8Array | { readonly byteLength: number, [Symbol.iterator]: () => Iterator<Uint8Array> }

/** Splits a byte stream into frames; rejects an oversize length before buffering its payload. */
export class FrameDecoder {
  readonly maxFrameBytes: number
  // Unread chunks are #chunks[#head…]; a moving head instead of shift() keeps a peer that sends
  // thousands of 1-byte chunks from making each read O(n).
  #chunks: Uint8Array[] = []
  #head = 0
  #offset = 0 // read position inside #chunks[#head]
  #buffered = 0 // unread bytes across #chunks
  #want: number | undefined // payload length of the frame being assembled, once its header is read
  #big: Uint8Array | undefined // a large frame's payload, filled as chunks arrive (ASSEMBLE_FROM_BYTES)
  #bigFilled = 0

  constructor (maxFrameBytes: number) {
    this.maxFrameBytes = maxFrameBytes
  }

  /** Bytes held that do not yet form a whole frame. */
  get bufferedBytes (): number {
    return this.#buffered + this.#bigFilled
  }

  push (chunk: StreamChunk): void {
    if (chunk instanceof Uint8Array) {
      this.#append(chunk)
    } else {
      for (const part of chunk) this.#append(part)
    }
  }

  /** The next complete frame payload, or undefined. Throws FrameOversizeError on a bad header. */
  next (): Uint8Array | undefined {
    if (!this.#complete()) return undefined
    const frame = this.#big ?? this.#take(this.#want!)
    this.#want = undefined
    this.#big = undefined
    this.#bigFilled = 0
    return frame
  }

  /**
   * Like next(), but returns the payload as views into the received chunks, in order, without
   * copying: a 64 KiB blob piece usually spans two transport chunks (Noise messages hold at most
   * 65,519 bytes), and assembling it only to copy it again cost measurable time and GC.
   */
  nextParts (): Uint8Array[] | undefined {
    if (!this.#complete()) return undefined
    if (this.#big !== undefined) return [this.next()!]
    let n = this.#want!
    this.#want = undefined
    const parts: Uint8Array[] = []
    while (n > 0) {
      const chunk = this.#chunks[this.#head]!
      const m = Math.min(n, chunk.byteLength - this.#offset)
      parts.push(chunk.subarray(this.#offset, this.#offset + m))
      this.#skip(m)
      n -= m
    }
    return parts
  }

  // Reads the header of the next frame if needed; true when its whole payload is buffered.
  #complete (): boolean {
    if (this.#want === undefined) {
      if (this.#buffered < FRAME_HEADER_BYTES) return false
      const first = this.#chunks[this.#head]!
      let h: Uint8Array = first
      let at = this.#offset
      if (first.byteLength - at >= FRAME_HEADER_BYTES) {
        this.#skip(FRAME_HEADER_BYTES)
      } else {
        h = this.#take(FRAME_HEADER_BYTES)
        at = 0
      }
      const length = ((h[at]! << 24) >>> 0) + (h[at + 1]! << 16) + (h[at + 2]! << 8) + h[at + 3]!
      if (length === 0 || length > this.maxFrameBytes) {
        this.#drop()
        throw new FrameOversizeError(length, this.maxFrameBytes)
      }
      this.#want = length
    }
    if (this.#big === undefined && this.#want >= ASSEMBLE_FROM_BYTES && this.#buffered * 4 >= this.#want) {
      this.#big = new Uint8Array(this.#want)
      this.#bigFilled = Math.min(this.#buffered, this.#want)
      this.#copyInto(this.#big, 0, this.#bigFilled)
    }
    if (this.#big !== undefined) return this.#bigFilled === this.#want
    return this.#buffered >= this.#want
  }

  /** Call when the stream ended: throws FrameTruncatedError if a partial frame is left. */
  end (): void {
    if (this.#want !== undefined) throw new FrameTruncatedError(this.#buffered + this.#bigFilled, this.#want)
    if (this.#buffered > 0) throw new FrameTruncatedError(this.#buffered, undefined)
  }

  #append (part: Uint8Array): void {
    if (part.byteLength === 0) return
    const room = this.#big === undefined ? 0 : this.#big.byteLength - this.#bigFilled
    if (room > 0) {
      // Chunks buffered before #big was made were all moved into it: these bytes come next.
      const m = Math.min(room, part.byteLength)
      this.#big!.set(m === part.byteLength ? part : part.subarray(0, m), this.#bigFilled)
      this.#bigFilled += m
      if (m === part.byteLength) return
      part = part.subarray(m)
    }
    this.#chunks.push(part)
    this.#buffered += part.byteLength
  }

  #drop (): void {
    this.#big = undefined
    this.#bigFilled = 0
    this.#chunks = []
    this.#head = 0
    this.#offset = 0
    this.#buffered = 0
  }

  #shift (): void {
    this.#head++
    if (this.#head === this.#chunks.length) {
      this.#chunks = []
      this.#head = 0
    } else if (this.#head >= 1024 && this.#head * 2 >= this.#chunks.length) {
      this.#chunks = this.#chunks.slice(this.#head)
      this.#head = 0
    }
  }

  // Consumes n bytes of the first chunk (the caller checked they are there).
  #skip (n: number): void {
    this.#offset += n
    this.#buffered -= n
    if (this.#offset === this.#chunks[this.#head]!.byteLength) {
      this.#shift()
      this.#offset = 0
    }
  }

  // Returns n bytes, as a view into the first chunk when they lie inside it (the common case for
  // frames ≤ a transport chunk), otherwise copied into a fresh array.
  #take (n: number): Uint8Array {
    const first = this.#chunks[this.#head]!
    const avail = first.byteLength - this.#offset
    if (n <= avail) {
      const out = first.subarray(this.#offset, this.#offset + n)
      this.#offset += n
      if (this.#offset === first.byteLength) {
        this.#shift()
        this.#offset = 0
      }
      this.#buffered -= n
      return out
    }
    const out = new Uint8Array(n)
    this.#copyInto(out, 0, n)
    return out
  }

  // Moves the next n buffered bytes (the caller checked they are there) into out at `at`.
  #copyInto (out: Uint8Array, at: number, n: number): void {
    let filled = 0
    while (filled < n) {
      const chunk = this.#chunks[this.#head]!
      const m = Math.min(n - filled, chunk.byteLength - this.#offset)
      out.set(chunk.subarray(this.#offset, this.#offset + m), at + filled)
      filled += m
      this.#offset += m
      if (this.#offset === chunk.byteLength) {
        this.#shift()
        this.#offset = 0
      }
    }
    this.#buffered -= n
  }
}

/** Yields frame payloads from a stream; throws FrameOversizeError / FrameTruncatedError. */
export async function * readFrames (source: AsyncIterable<StreamChunk>, opts: { maxFrameBytes: number }): AsyncGenerator<Uint8Array, void, undefined> {
  const decoder = new FrameDecoder(opts.maxFrameBytes)
  for await (const chunk of source) {
    decoder.push(chunk)
    for (let frame = decoder.next(); frame !== undefined; frame = decoder.next()) yield frame
  }
  decoder.end()
}

/** A frame payload: one array, or parts sent back to back (saves a copy for header + data). */
export type FramePayload = Uint8Array | readonly Uint8Array[]

/** Bytes of a frame payload (all its parts). */
export function payloadLength (p: FramePayload): number {
  if (p instanceof Uint8Array) return p.byteLength
  let n = 0
  for (const part of p) n += part.byteLength
  return n
}

/** Encodes frames back to back into one buffer (one `send()`, one muxer frame, one syscall). */
export function encodeFrames (payloads: readonly FramePayload[]): Uint8Array {
  let total = 0
  for (const p of payloads) total += FRAME_HEADER_BYTES + payloadLength(p)
  // not zero-filled: every byte is written below
  const out = Buffer.allocUnsafe(total)
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength)
  let pos = 0
  for (const p of payloads) {
    const length = payloadLength(p)
    if (length === 0) throw new RangeError('a frame payload must not be empty')
    view.setUint32(pos, length)
    pos += FRAME_HEADER_BYTES
    if (p instanceof Uint8Array) {
      out.set(p, pos)
    } else {
      let at = pos
      for (const part of p) { out.set(part, at); at += part.byteLength }
    }
    pos += length
  }
  return out
}

/** The part of a libp2p Stream the writer needs (kept narrow so tests can pass a fake). */
export interface WritableStream {
  status: string
  writableNeedsDrain: boolean
  send: (data: Uint8Array) => boolean
  addEventListener: (type: 'drain' | 'close', listener: (evt: Event) => void) => void
  removeEventListener: (type: 'drain' | 'close', listener: (evt: Event) => void) => void
}

/** Waits until the stream accepts writes again; rejects if it closes first or the signal fires. */
export async function waitForDrain (stream: WritableStream, options?: AbortOptions): Promise<void> {
  if (!stream.writableNeedsDrain) return
  if (stream.status !== 'open') throw new StreamClosedError('waiting to write')
  const signal = options?.signal
  if (signal?.aborted === true) throw new NetAbortedError('write', { cause: signal.reason })
  await new Promise<void>((resolve, reject) => {
    const cleanup = (): void => {
      stream.removeEventListener('drain', onDrain)
      stream.removeEventListener('close', onClose)
      signal?.removeEventListener('abort', onAbort)
    }
    const onDrain = (): void => { cleanup(); resolve() }
    const onClose = (evt: Event): void => {
      cleanup()
      reject(new StreamClosedError('waiting to write', { cause: (evt as Event & { error?: Error }).error }))
    }
    const onAbort = (): void => { cleanup(); reject(new NetAbortedError('write', { cause: signal?.reason })) }
    stream.addEventListener('drain', onDrain)
    stream.addEventListener('close', onClose)
    signal?.addEventListener('abort', onAbort)
  })
}

/**
 * Writes frames in order, honouring backpressure. Concurrent callers queue behind a pending
 * drain, so at most one batch sits in the stream's write buffer beyond what the muxer took.
 */
export class FrameWriter {
  readonly #stream: WritableStream
  #draining: Promise<void> | undefined

  constructor (stream: WritableStream) {
    this.#stream = stream
  }

  /** Sends the frames as one batch; resolves once the stream can take more. */
  async write (payloads: readonly FramePayload[], options?: AbortOptions): Promise<void> {
    await this.drained(options)
    if (!this.sendNow(payloads)) await this.drained(options)
  }

  /**
   * Sends at once, ignoring a pending drain, and returns false if the caller should wait
   * (`await writer.drained()`). For small control frames that must not queue behind bulk data.
   */
  sendNow (payloads: readonly FramePayload[]): boolean {
    if (this.#stream.status !== 'open') throw new StreamClosedError('writing a frame')
    const ok = this.#stream.send(encodeFrames(payloads))
    if (!ok && this.#draining === undefined) {
      const p = waitForDrain(this.#stream)
      this.#draining = p.finally(() => { this.#draining = undefined })
      // a failed drain (stream closed) is reported to whoever awaits drained() or write()
      this.#draining.catch(() => {})
    }
    return ok
  }

  /** Resolves when no drain is pending; rejects if the stream closed while waiting. */
  async drained (options?: AbortOptions): Promise<void> {
    while (this.#draining !== undefined) await raceSignal(this.#draining, options?.signal)
  }
}

async function raceSignal<T> (p: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return p
  if (signal.aborted) throw new NetAbortedError('write', { cause: signal.reason })
  let onAbort: (() => void) | undefined
  try {
    return await Promise.race([p, new Promise<never>((_resolve, reject) => {
      onAbort = () => { reject(new NetAbortedError('write', { cause: signal.reason })) }
      signal.addEventListener('abort', onAbort)
    })])
  } finally {
    if (onAbort !== undefined) signal.removeEventListener('abort', onAbort)
  }
}
