// Blob file I/O on one worker thread with synchronous calls. Storing a blob is four system calls
// (open, write, close, rename); through libuv's thread pool each is a separate hop with its own
// callback and promise, which measured 500–800 µs of CPU per blob on our VMs, against ~95 µs for
// the same calls made synchronously (docs/bench-daemon.md). A download of 16 KiB blobs is all
// per-blob overhead, so the bulk paths (non-durable puts, reads) batch their jobs to this worker.
//
// The worker is inline source (eval) so it runs the same from src/ under vitest and from dist/.
import { Worker } from 'node:worker_threads'

const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads')
const fs = require('node:fs')
const path = require('node:path')
function write (j) {
  let fd
  try {
    fd = fs.openSync(j.tmp, 'wx', 0o644)
  } catch (e) {
    if (e.code !== 'ENOENT') throw e
    fs.mkdirSync(path.dirname(j.tmp), { recursive: true })
    fd = fs.openSync(j.tmp, 'wx', 0o644)
  }
  try {
    let off = 0
    while (off < j.data.byteLength) off += fs.writeSync(fd, j.data, off)
  } finally {
    fs.closeSync(fd)
  }
  fs.renameSync(j.tmp, j.final)
}
// At most max bytes: a larger file (or one that grows while read) is refused once max + 1 are in.
function readCapped (file, max) {
  const fd = fs.openSync(file, 'r')
  try {
    const size = fs.fstatSync(fd).size
    const tooBig = () => Object.assign(new Error(file + ' holds more than ' + max + ' bytes, more than any blob'), { code: 'ERR_OVERSIZE' })
    if (size > max) throw tooBig()
    const buf = new Uint8Array(Math.min(size, max) + 1)
    let n = 0
    for (;;) {
      const got = fs.readSync(fd, buf, n, buf.length - n, null)
      if (got === 0) break
      n += got
      if (n === buf.length) throw tooBig()
    }
    return buf.subarray(0, n)
  } finally {
    fs.closeSync(fd)
  }
}
parentPort.on('message', (jobs) => {
  const results = []
  const transfer = []
  for (const j of jobs) {
    try {
      if (j.op === 'write') {
        write(j)
        // hand the bytes back: a worker that allocates little collects garbage rarely, and cloned
        // or transferred buffers would pile up here (~1 MB per MiB written, measured)
        transfer.push(j.data.buffer)
        results.push({ id: j.id })
      } else {
        let data = null
        try { data = readCapped(j.path, j.max) } catch (e) { if (e.code !== 'ENOENT') throw e }
        if (data !== null) {
          const own = new Uint8Array(data.byteLength)
          own.set(data)
          transfer.push(own.buffer)
          data = own
        }
        results.push({ id: j.id, data })
      }
    } catch (e) {
      if (j.op === 'write') { try { fs.unlinkSync(j.tmp) } catch {} }
      results.push({ id: j.id, error: { code: e.code, message: e.message } })
    }
  }
  parentPort.postMessage(results, transfer)
})
`

type JobBody = { op: 'write', tmp: string, final: string, data: Uint8Array } | { op: 'read', path: string, max: number }
interface Result { id: number, data?: Uint8Array | null, error?: { code?: string, message: string } }

/** An fs error from the worker, with its errno code. */
export class BlobIoError extends Error {
  constructor (readonly code: string | undefined, message: string) {
    super(message)
  }
}

/**
 * A worker thread running `source`, which answers each message (an array of jobs with ids) with an
 * array of results `{ id, error?: { code, message }, … }`. Everything asked in one turn of the event
 * loop goes in one message; the worker is unreferenced while nothing waits on it.
 */
export class BatchedWorker<J extends object, R extends { id: number, error?: { code?: string, message: string } }> {
  private worker: Worker | undefined
  private nextId = 1
  private batch: Array<J & { id: number }> = []
  private transfer: ArrayBuffer[] = []
  private scheduled = false
  private readonly waiting = new Map<number, (r: R) => void>()

  constructor (private readonly source: string, private readonly name: string) {}

  private ensure (): Worker {
    if (this.worker === undefined) {
      const w = new Worker(this.source, { eval: true })
      w.on('message', (results: R[]) => {
        for (const r of results) {
          const waiter = this.waiting.get(r.id)
          this.waiting.delete(r.id)
          waiter?.(r)
        }
        if (this.waiting.size === 0) w.unref()
      })
      w.on('error', (err) => { this.fail(err) })
      w.on('exit', () => { this.fail(new Error(`the ${this.name} worker exited`)); this.worker = undefined })
      this.worker = w
    }
    return this.worker
  }

  private fail (err: Error): void {
    for (const w of this.waiting.values()) w({ id: 0, error: { message: err.message } } as unknown as R)
    this.waiting.clear()
  }

  /**
   * Runs one job; rejects with BlobIoError when the worker reports an error. `transfer` moves
   * buffers to the worker instead of copying them.
   */
  async run (job: J, transfer?: ArrayBuffer): Promise<R> {
    const id = this.nextId++
    const p = new Promise<R>(resolve => { this.waiting.set(id, resolve) })
    this.batch.push({ ...job, id })
    if (transfer !== undefined) this.transfer.push(transfer)
    if (!this.scheduled) {
      this.scheduled = true
      setImmediate(() => {
        this.scheduled = false
        const jobs = this.batch
        const transfer = this.transfer
        this.batch = []
        this.transfer = []
        const w = this.ensure()
        w.ref()
        w.postMessage(jobs, transfer)
      })
    }
    const r = await p
    if (r.error !== undefined) throw new BlobIoError(r.error.code, r.error.message)
    return r
  }

  get started (): boolean {
    return this.worker !== undefined
  }

  async terminate (): Promise<void> {
    const w = this.worker
    this.worker = undefined
    if (w !== undefined) await w.terminate()
  }
}

/** A copy of `data` in an ArrayBuffer of its own, to transfer to a worker (the caller keeps `data`). */
export function ownCopy (data: Uint8Array): Uint8Array<ArrayBuffer> {
  const own = new Uint8Array(data.byteLength)
  own.set(data)
  return own
}

export class BlobIo {
  private readonly worker = new BatchedWorker<JobBody, Result>(WORKER_SOURCE, 'blob I/O')

  /** Writes `data` to `tmp` (creating its folder), then renames it to `final`. */
  async write (tmp: string, final: string, data: Uint8Array): Promise<void> {
    const own = ownCopy(data)
    await this.worker.run({ op: 'write', tmp, final, data: own }, own.buffer)
  }

  /** The file's bytes, or null when it does not exist; BlobIoError ERR_OVERSIZE past `max` bytes (nothing more is read). */
  async read (path: string, max: number): Promise<Uint8Array | null> {
    return (await this.worker.run({ op: 'read', path, max })).data ?? null
  }

  async close (): Promise<void> {
    await this.worker.terminate()
  }
}
