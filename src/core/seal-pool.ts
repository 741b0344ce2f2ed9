// Sealing on worker threads, so a publish keeps every core busy with brotli and AES while the main
// thread reads and chunks files. Memory is bounded: each worker has at most PER_WORKER_DEPTH chunks
// posted to it, and seal() waits for a free slot beyond that. A worker that dies fails the pool:
// every pending and later seal() rejects, so a publish stops instead of writing a partial release.
import { existsSync, statSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { Worker } from 'node:worker_threads'
import { DecodeError, InvalidArgumentError, OversizeError, ShoalError } from './errors.js'
import { BlobAuthError, BlobFormatError, BlobSizeError, checkSealOptions, KEY_BYTES, type Codec, type SealedChunk, type SealOptions } from './seal.js'

/** Chunks posted to one worker and not yet answered: enough that it never idles between jobs. */
export const PER_WORKER_DEPTH = 4
export const MAX_THREADS = 64

/** A worker could not start, stopped unexpectedly, or failed with an error that is not a ShoalError. */
export class SealWorkerError extends ShoalError {
  constructor (message: string, options?: { cause?: unknown }) {
    super('ERR_SEAL_WORKER', message, options)
  }
}

/** seal() after close(), or a chunk still pending when close() was called. */
export class SealPoolClosedError extends ShoalError {
  constructor () {
    super('ERR_SEAL_POOL_CLOSED', 'the sealing pool is closed; create a new SealPool')
  }
}

// Messages between the pool and seal-worker.ts (plain data: structured clone + transferred buffers).
export interface WorkerInit { contentKey: Uint8Array; seal: SealOptions }
export interface SealJob { id: number; plaintext: Uint8Array }
export interface WorkerErrorInfo { name: string; code: string | undefined; message: string; stack: string | undefined }
export type SealReply =
  | { id: number; ok: true; key: Uint8Array; cid: Uint8Array; blob: Uint8Array; codec: Codec; plainSize: number }
  | { id: number; ok: false; error: WorkerErrorInfo }

/**
 * Where the compiled worker is. From dist/ (the CLI, the bench) it sits next to this file. Under
 * vitest this module runs from src/*.ts, and Node 20 cannot start a worker from TypeScript, so we
 * use the build's copy in dist/src/core/ (`npm test` builds first). Because that copy could be
 * older than the source under test — silently testing yesterday's format — we refuse a build
 * older than seal.ts or seal-worker.ts and say how to fix it.
 */
export function resolveWorkerUrl (self: string = import.meta.url): URL {
  if (!self.endsWith('.ts')) return new URL('./seal-worker.js', self)
  const built = new URL('../../dist/src/core/', self)
  const worker = new URL('seal-worker.js', built)
  if (!existsSync(worker)) {
    throw new SealWorkerError(`SealPool runs from TypeScript source and needs the compiled worker ${worker.pathname}, which is missing; run \`npm run build\` (npm test does it) first`)
  }
  for (const name of ['seal', 'seal-worker']) {
    const src = new URL(`./${name}.ts`, self)
    const out = new URL(`${name}.js`, built)
    if (existsSync(src) && (!existsSync(out) || statSync(out).mtimeMs < statSync(src).mtimeMs)) {
      throw new SealWorkerError(`the compiled ${out.pathname} is older than ${src.pathname}; run \`npm run build\` so the sealing workers run the code under test`)
    }
  }
  return worker
}

// Errors sealChunk can throw, rebuilt with their own class so callers' instanceof checks hold
// across the thread boundary (none of them carries fields beyond code and message).
const KNOWN_ERRORS: Record<string, object> = {
  ShoalError: ShoalError.prototype,
  InvalidArgumentError: InvalidArgumentError.prototype,
  OversizeError: OversizeError.prototype,
  DecodeError: DecodeError.prototype,
  BlobFormatError: BlobFormatError.prototype,
  BlobAuthError: BlobAuthError.prototype,
  BlobSizeError: BlobSizeError.prototype
}

function rebuildError (info: WorkerErrorInfo): Error {
  const proto = KNOWN_ERRORS[info.name]
  if (proto !== undefined && info.code !== undefined) {
    const err = Object.setPrototypeOf(new ShoalError(info.code, info.message), proto) as ShoalError
    err.name = info.name
    if (info.stack !== undefined) err.stack = info.stack
    return err
  }
  return new SealWorkerError(`sealing failed in a worker thread: ${info.name}: ${info.message}`)
}

interface Job {
  id: number
  resolve: (s: SealedChunk) => void
  reject: (e: unknown) => void
}

interface Slot {
  worker: Worker
  pending: Map<number, Job>
}

/** Sends plaintext to the worker without copying when the caller's view owns its whole buffer. */
function postJob (worker: Worker, id: number, plaintext: Uint8Array): void {
  const owns = plaintext.buffer instanceof ArrayBuffer && plaintext.byteOffset === 0 && plaintext.byteLength === plaintext.buffer.byteLength
  // A view into a larger buffer (a chunker's read buffer, Node's Buffer pool) is copied to an
  // exactly sized one first: posting the view would clone the whole backing buffer instead.
  const data = owns ? plaintext : new Uint8Array(plaintext)
  const job: SealJob = { id, plaintext: data }
  try {
    worker.postMessage(job, [data.buffer as ArrayBuffer])
  } catch {
    // Buffers Node marks untransferable refuse the transfer list; a copy always works.
    worker.postMessage({ id, plaintext: new Uint8Array(plaintext) } satisfies SealJob)
  }
}

/** Seals chunks on worker threads so publish uses both cores. Order of results = order of calls. */
export class SealPool {
  readonly threads: number
  readonly #slots: Slot[] = []
  readonly #waiting: Array<() => void> = []
  #nextId = 0
  #failure: Error | undefined
  #closed = false

  constructor (opts: { contentKey: Uint8Array; threads?: number; seal?: SealOptions }) {
    if (!(opts.contentKey instanceof Uint8Array) || opts.contentKey.length !== KEY_BYTES) {
      throw new InvalidArgumentError(`the content key must be ${KEY_BYTES} bytes`)
    }
    const threads = opts.threads ?? Math.max(1, availableParallelism())
    if (!Number.isInteger(threads) || threads < 1 || threads > MAX_THREADS) {
      throw new InvalidArgumentError(`sealing threads must be an integer 1–${MAX_THREADS}, got ${threads}`)
    }
    const seal: SealOptions = {}
    if (opts.seal?.brotliQuality !== undefined) seal.brotliQuality = opts.seal.brotliQuality
    if (opts.seal?.compress !== undefined) seal.compress = opts.seal.compress
    checkSealOptions(seal)
    this.threads = threads

    const url = resolveWorkerUrl()
    const workerData: WorkerInit = { contentKey: Uint8Array.from(opts.contentKey), seal }
    for (let i = 0; i < threads; i++) {
      const slot: Slot = { worker: new Worker(url, { workerData, name: `shoal-seal-${i}` }), pending: new Map() }
      slot.worker.unref() // idle workers must not keep the process alive; busy ones are ref'd below
      slot.worker.on('message', (reply: SealReply) => { this.#onReply(slot, reply) })
      slot.worker.on('error', (err) => { this.#fail(new SealWorkerError(`a sealing worker crashed: ${err.message}`, { cause: err })) })
      slot.worker.on('messageerror', (err) => { this.#fail(new SealWorkerError(`a sealing worker's reply could not be read: ${err.message}`, { cause: err })) })
      slot.worker.on('exit', (code) => {
        if (!this.#closed) this.#fail(new SealWorkerError(`a sealing worker exited unexpectedly with code ${code}`))
      })
      this.#slots.push(slot)
    }
  }

  /** Chunks handed to workers and not yet answered (at most threads × PER_WORKER_DEPTH). */
  get inFlight (): number {
    let n = 0
    for (const s of this.#slots) n += s.pending.size
    return n
  }

  /** Seals one chunk. May transfer plaintext's buffer to the worker: callers must not reuse it. */
  async seal (plaintext: Uint8Array): Promise<SealedChunk> {
    if (!(plaintext instanceof Uint8Array)) throw new InvalidArgumentError('SealPool.seal takes a Uint8Array')
    // Callers already waiting go first, so chunks reach the workers in call order.
    let slot = this.#waiting.length === 0 ? this.#freeSlot() : undefined
    while (slot === undefined) {
      await new Promise<void>((resolve) => { this.#waiting.push(resolve) })
      slot = this.#freeSlot()
    }
    const id = this.#nextId++
    let resolve!: Job['resolve']
    let reject!: Job['reject']
    const promise = new Promise<SealedChunk>((res, rej) => { resolve = res; reject = rej })
    if (slot.pending.size === 0) slot.worker.ref()
    slot.pending.set(id, { id, resolve, reject })
    try {
      postJob(slot.worker, id, plaintext)
    } catch (err) {
      slot.pending.delete(id)
      if (slot.pending.size === 0) slot.worker.unref()
      this.#wakeOne()
      throw new SealWorkerError('could not hand a chunk to a sealing worker', { cause: err })
    }
    return await promise
  }

  /** Terminates the workers. Chunks still pending reject with SealPoolClosedError. */
  async close (): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    this.#rejectAll(new SealPoolClosedError())
    await Promise.all(this.#slots.map(async (s) => await s.worker.terminate()))
  }

  /** The least busy worker with room, or undefined when all are full; throws once failed/closed. */
  #freeSlot (): Slot | undefined {
    if (this.#failure !== undefined) throw this.#failure
    if (this.#closed) throw new SealPoolClosedError()
    let best: Slot | undefined
    for (const s of this.#slots) {
      if (s.pending.size < PER_WORKER_DEPTH && (best === undefined || s.pending.size < best.pending.size)) best = s
    }
    return best
  }

  #wakeOne (): void {
    this.#waiting.shift()?.()
  }

  #onReply (slot: Slot, reply: SealReply): void {
    const job = slot.pending.get(reply.id)
    if (job === undefined) return
    slot.pending.delete(reply.id)
    if (slot.pending.size === 0) slot.worker.unref()
    if (reply.ok) {
      job.resolve({ key: reply.key, cid: reply.cid, blob: reply.blob, codec: reply.codec, plainSize: reply.plainSize })
    } else {
      job.reject(rebuildError(reply.error))
    }
    this.#wakeOne()
  }

  #fail (err: Error): void {
    if (this.#failure !== undefined || this.#closed) return
    this.#failure = err
    this.#rejectAll(err)
    // The surviving workers' results would be thrown away: stop them now.
    for (const s of this.#slots) s.worker.terminate().catch(() => {})
  }

  /** Rejects every chunk in flight and wakes every waiter (which then sees the failure or close). */
  #rejectAll (err: Error): void {
    for (const s of this.#slots) {
      for (const job of s.pending.values()) job.reject(err)
      s.pending.clear()
      s.worker.unref()
    }
    for (const wake of this.#waiting.splice(0)) wake()
  }
}
