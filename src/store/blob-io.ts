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
type Job = JobBody & { id: number }
interface Result { id: number, data?: Uint8Array | null, error?: { code?: string, message: string } }
interface Waiter { resolve: (r: Result) => void }

/** An fs error from the worker, with its errno code. */
export class BlobIoError extends Error {
  constructor (readonly code: string | undefined, message: string) {
    super(message)
  }
}

export class BlobIo {
  private worker: Worker | undefined
  private nextId = 1
  private batch: Job[] = []
  private scheduled = false
  private readonly waiting = new Map<number, Waiter>()

  private ensure (): Worker {
    if (this.worker === undefined) {
      const w = new Worker(WORKER_SOURCE, { eval: true })
      w.on('message', (results: Result[]) => {
        for (const r of results) {
          const waiter = this.waiting.get(r.id)
          this.waiting.delete(r.id)
          waiter?.resolve(r)
        }
        if (this.waiting.size === 0) w.unref()
      })
      w.on('error', (err) => { this.fail(err) })
      w.on('exit', () => { this.fail(new Error('the blob I/O worker exited')); this.worker = undefined })
      this.worker = w
    }
    return this.worker
  }

  private fail (err: Error): void {
    for (const w of this.waiting.values()) w.resolve({ id: 0, error: { message: err.message } })
    this.waiting.clear()
  }

  private async run (job: JobBody): Promise<Result> {
    const id = this.nextId++
    const p = new Promise<Result>(resolve => { this.waiting.set(id, { resolve }) })
    this.batch.push({ ...job, id })
    if (!this.scheduled) {
      this.scheduled = true
      // Everything queued in this turn of the event loop goes in one message.
      setImmediate(() => {
        this.scheduled = false
        const jobs = this.batch
        this.batch = []
        const w = this.ensure()
        w.ref()
        w.postMessage(jobs)
      })
    }
    return await p
  }

  /** Writes `data` to `tmp` (creating its folder), then renames it to `final`. */
  async write (tmp: string, final: string, data: Uint8Array): Promise<void> {
    const r = await this.run({ op: 'write', tmp, final, data })
    if (r.error !== undefined) throw new BlobIoError(r.error.code, r.error.message)
  }

  /** The file's bytes, or null when it does not exist; BlobIoError ERR_OVERSIZE past `max` bytes (nothing more is read). */
  async read (path: string, max: number): Promise<Uint8Array | null> {
    const r = await this.run({ op: 'read', path, max })
    if (r.error !== undefined) throw new BlobIoError(r.error.code, r.error.message)
    return r.data ?? null
  }

  async close (): Promise<void> {
    const w = this.worker
    this.worker = undefined
    if (w !== undefined) await w.terminate()
  }
}
