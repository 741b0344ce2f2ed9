// Pack file I/O (docs/protocol.md §5.2), on the main thread with one libuv request per batch.
//
// Appending a blob to an open pack is one write(2); creating a file per blob cost 300–500 µs of
// CPU on our VMs (inode creation and rename on ext4, docs/bench-daemon.md). An earlier version ran
// these calls synchronously on a worker thread; the round trip (structured clone of each blob,
// postMessage, a copy back) cost ~100 µs of main-thread CPU per blob and ~15 MB of RSS for the
// worker's isolate. Here the appends queued in one turn of the event loop are copied into one
// buffer and written with a single positional write, and a read is one positional read on a
// cached descriptor: one thread-pool hop per batch or per read (docs/bench-daemon.md, 2026-12-02).
//
// Mutations of the active pack (adopt, append, sync, seal, close) run strictly one after another
// in the order they were asked for, so appends land in that order and a failed write is cut off
// (ftruncate) before the next one starts. Reads run beside them; a descriptor is closed only when
// no read is using it (a number closed under a pending read could be reused by another file).
import { close, fdatasync, ftruncate, open, read, write } from 'node:fs'
import { appendFile, open as openFile, rename, unlink } from 'node:fs/promises'
import { createHash } from 'node:crypto'
import { promisify } from 'node:util'
import { isDiskFull } from './fs-util.js'

/** First bytes of a pack file. */
export const PACK_MAGIC = 'SHOALPK1'
/** First bytes of a pack's index file. */
export const IDX_MAGIC = 'SHOALIX1'
/** Bytes before each blob in a pack: its length (u32 BE) and its cid (32 bytes). */
export const ENTRY_HEAD = 36
/** Bytes of one index record: cid (32), offset of the entry (u32 BE), blob length (u32 BE). */
export const IDX_RECORD = 40

/** Read descriptors kept open (a seed serves from many packs at once). */
const MAX_READ_FDS = 64
/** Appends merged into one write at most (they were queued in one turn of the event loop). */
const MAX_BATCH_BYTES = 4 * 1024 * 1024

const openP = promisify(open)
const closeP = promisify(close)
const fdatasyncP = promisify(fdatasync)
const ftruncateP = promisify(ftruncate)

export type PackJob =
  | { op: 'adopt', pack: number, path: string, end: number, entries: Array<[string, number, number]> }
  /** `data` is copied when the append runs: the caller leaves it unchanged until then. */
  | { op: 'append', pack: number, path: string, cid: string, data: Uint8Array, durable: boolean }
  | { op: 'read', path: string, off: number, len: number }
  | { op: 'dead', path: string, off: number }
  | { op: 'sync' }
  | { op: 'seal', pack: number, idxPath: string }
  | { op: 'unlink', path: string, paths: string[] }
  | { op: 'close' }

interface Result { off?: number, data?: Uint8Array }

/** A pack shorter than an index entry says: the blob is gone. */
export class PackShortError extends Error {
  readonly code = 'ERR_PACK_SHORT'
  constructor (path: string, end: number) {
    super(`pack ${path} ends before offset ${end}`)
  }
}

type AppendJob = Extract<PackJob, { op: 'append' }>
interface Task { job: PackJob, resolve: (r: Result) => void, reject: (err: unknown) => void }
interface Active { pack: number, path: string, fd: number, end: number, entries: Array<[Buffer, number, number]> }
interface CachedFd { fd: Promise<number>, users: number, doomed: boolean }

async function writeAll (fd: number, buf: Uint8Array, pos: number): Promise<void> {
  for (let off = 0; off < buf.byteLength;) {
    const n = await new Promise<number>((resolve, reject) => {
      write(fd, buf, off, buf.byteLength - off, pos + off, (err, written) => { if (err !== null) reject(err); else resolve(written) })
    })
    off += n
  }
}

async function readAll (fd: number, path: string, off: number, len: number): Promise<Uint8Array> {
  // its own ArrayBuffer (not a slice of Buffer's shared pool): it is kept and passed on as is
  const data = Buffer.allocUnsafeSlow(len)
  for (let got = 0; got < len;) {
    const n = await new Promise<number>((resolve, reject) => {
      read(fd, data, got, len - got, off + got, (err, bytes) => { if (err !== null) reject(err); else resolve(bytes) })
    })
    if (n === 0) throw new PackShortError(path, off + len)
    got += n
  }
  return data
}

export class PackIo {
  private active: Active | null = null
  // Batches are written one at a time, so one staging buffer serves them all: a fresh 4 MiB
  // buffer per batch cost its page faults again every time (~1 ms per MiB written, measured).
  private staging: Buffer | undefined
  private readonly tasks: Task[] = []
  private running = false
  private readonly fds = new Map<string, CachedFd>() // oldest use first

  async run (job: PackJob): Promise<Result> {
    switch (job.op) {
      case 'read': return { data: await this.read(job.path, job.off, job.len) }
      case 'dead': {
        const b = Buffer.allocUnsafe(4)
        b.writeUInt32BE(job.off, 0)
        await appendFile(job.path, b)
        return {}
      }
      case 'unlink':
        this.forget(job.path)
        for (const p of job.paths) await unlink(p).catch((err: NodeJS.ErrnoException) => { if (err.code !== 'ENOENT') throw err })
        return {}
      default:
        return await new Promise<Result>((resolve, reject) => {
          this.tasks.push({ job, resolve, reject })
          if (!this.running) { this.running = true; setImmediate(() => { void this.pump() }) }
        })
    }
  }

  async close (): Promise<void> {
    await this.run({ op: 'close' })
  }

  // Runs the queued mutations in order; consecutive appends to one pack become one write.
  private async pump (): Promise<void> {
    try {
      while (this.tasks.length > 0) {
        const head = this.tasks[0]!
        if (head.job.op === 'append') {
          const batch = this.takeAppends(head.job.pack)
          await this.appendBatch(batch)
          continue
        }
        this.tasks.shift()
        try {
          head.resolve(await this.mutate(head.job))
        } catch (err) {
          head.reject(err)
        }
      }
    } finally {
      this.running = false
    }
  }

  private takeAppends (pack: number): Task[] {
    const batch: Task[] = []
    let bytes = 0
    while (this.tasks.length > 0) {
      const t = this.tasks[0]!
      if (t.job.op !== 'append' || t.job.pack !== pack) break
      if (batch.length > 0 && bytes + ENTRY_HEAD + t.job.data.byteLength > MAX_BATCH_BYTES) break
      bytes += ENTRY_HEAD + t.job.data.byteLength
      batch.push(this.tasks.shift()!)
    }
    return batch
  }

  private async appendBatch (batch: Task[]): Promise<void> {
    const first = batch[0]!.job as AppendJob
    let active: Active
    try {
      active = await this.activate(first.pack, first.path)
    } catch (err) {
      for (const t of batch) t.reject(err)
      return
    }
    let total = 0
    for (const t of batch) total += ENTRY_HEAD + (t.job as AppendJob).data.byteLength
    if (total <= MAX_BATCH_BYTES) this.staging ??= Buffer.allocUnsafeSlow(MAX_BATCH_BYTES)
    const buf = total <= MAX_BATCH_BYTES ? this.staging!.subarray(0, total) : Buffer.allocUnsafe(total)
    const at = active.end
    const placed: Array<[Buffer, number, number]> = []
    let pos = 0
    let durable = false
    for (const t of batch) {
      const j = t.job as AppendJob
      buf.writeUInt32BE(j.data.byteLength, pos)
      buf.write(j.cid, pos + 4, 32, 'hex')
      buf.set(j.data, pos + ENTRY_HEAD)
      placed.push([buf.subarray(pos + 4, pos + ENTRY_HEAD), at + pos, j.data.byteLength])
      durable ||= j.durable
      pos += ENTRY_HEAD + j.data.byteLength
    }
    try {
      await writeAll(active.fd, buf, at)
      if (durable) await fdatasyncP(active.fd)
    } catch (err) {
      await ftruncateP(active.fd, at).catch(() => {})
      if (batch.length > 1 && isDiskFull(err)) {
        // The batch did not fit: store what does, one entry at a time, so a full disk keeps the
        // blobs it has room for instead of none of this turn's (each failure is cut off again).
        for (const t of batch) await this.appendBatch([t])
        return
      }
      for (const t of batch) t.reject(err)
      return
    }
    active.end = at + total
    // the index keeps only the cids, not the written blobs
    for (const [cid, off, len] of placed) active.entries.push([Buffer.from(cid), off, len])
    for (let i = 0; i < batch.length; i++) batch[i]!.resolve({ off: placed[i]![1] })
  }

  private async activate (pack: number, path: string): Promise<Active> {
    if (this.active !== null && this.active.pack === pack) return this.active
    await this.closeActive()
    const fd = await openP(path, 'wx', 0o644)
    try {
      await writeAll(fd, Buffer.from(PACK_MAGIC), 0)
    } catch (err) {
      await closeP(fd).catch(() => {})
      throw err
    }
    this.active = { pack, path, fd, end: PACK_MAGIC.length, entries: [] }
    return this.active
  }

  private async closeActive (): Promise<void> {
    const a = this.active
    this.active = null
    if (a !== null) await closeP(a.fd)
  }

  private async mutate (job: PackJob): Promise<Result> {
    switch (job.op) {
      case 'adopt': {
        await this.closeActive()
        const fd = await openP(job.path, 'r+')
        await ftruncateP(fd, job.end)
        this.active = { pack: job.pack, path: job.path, fd, end: job.end, entries: job.entries.map(e => [Buffer.from(e[0], 'hex'), e[1], e[2]]) }
        return {}
      }
      case 'sync':
        if (this.active !== null) await fdatasyncP(this.active.fd)
        return {}
      case 'seal': {
        const a = this.active
        if (a === null || a.pack !== job.pack) return {}
        await fdatasyncP(a.fd)
        await this.closeActive()
        await writeIdx(job.idxPath, a.entries)
        return {}
      }
      case 'close':
        await this.closeActive()
        this.staging = undefined
        for (const [path, c] of [...this.fds]) if (c.users === 0) { this.fds.delete(path); await c.fd.then(closeP).catch(() => {}) }
        return {}
      default:
        throw new Error(`pack job ${job.op} is not a mutation`)
    }
  }

  private async read (path: string, off: number, len: number): Promise<Uint8Array> {
    let c = this.fds.get(path)
    if (c !== undefined) {
      this.fds.delete(path) // re-inserted below: most recently used last
    } else {
      c = { fd: openP(path, 'r'), users: 0, doomed: false }
      c.fd.catch(() => {}) // the reader below sees the error
    }
    this.fds.set(path, c)
    c.users++
    this.evict()
    try {
      return await readAll(await c.fd, path, off, len)
    } catch (err) {
      // an open that failed (ENOENT) must not stay cached
      if (this.fds.get(path) === c && (err as NodeJS.ErrnoException).syscall === 'open') this.fds.delete(path)
      throw err
    } finally {
      c.users--
      if (c.users === 0 && c.doomed) void c.fd.then(closeP).catch(() => {})
    }
  }

  private evict (): void {
    for (const [path, c] of this.fds) {
      if (this.fds.size <= MAX_READ_FDS) return
      if (c.users > 0) continue
      this.fds.delete(path)
      void c.fd.then(closeP).catch(() => {})
    }
  }

  private forget (path: string): void {
    const c = this.fds.get(path)
    if (c === undefined) return
    this.fds.delete(path)
    if (c.users === 0) void c.fd.then(closeP).catch(() => {})
    else c.doomed = true
  }
}

async function writeIdx (path: string, entries: ReadonlyArray<[Buffer, number, number]>): Promise<void> {
  const body = Buffer.allocUnsafe(IDX_MAGIC.length + entries.length * IDX_RECORD)
  body.write(IDX_MAGIC, 0, 'latin1')
  let at = IDX_MAGIC.length
  for (const [cid, off, len] of entries) {
    cid.copy(body, at)
    body.writeUInt32BE(off, at + 32)
    body.writeUInt32BE(len, at + 36)
    at += IDX_RECORD
  }
  const sum = createHash('sha256').update(body).digest()
  const tmp = `${path}.tmp-${process.pid}`
  const fh = await openFile(tmp, 'w', 0o644)
  try {
    await fh.writeFile(Buffer.concat([body, sum]))
    await fh.datasync()
  } finally {
    await fh.close()
  }
  await rename(tmp, path)
}
