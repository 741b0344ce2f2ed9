// Pack file I/O on one worker thread with synchronous calls (docs/protocol.md §5.2). Appending a
// blob to an open pack is one write(2); creating a file per blob cost 300–500 µs of CPU on our VMs
// (inode creation and rename on ext4, docs/bench-daemon.md), appending costs ~7 µs. The worker owns
// the active pack's descriptor and its end offset, so appends land strictly in the order they were
// asked for and a failed write is cut off (ftruncate) before the next one starts.
//
// Everything queued in one turn of the event loop goes to the worker as one message.
//
// The worker is inline source (eval) so it runs the same from src/ under vitest and from dist/.
import { BatchedWorker, ownCopy } from './blob-io.js'

/** First bytes of a pack file. */
export const PACK_MAGIC = 'SHOALPK1'
/** First bytes of a pack's index file. */
export const IDX_MAGIC = 'SHOALIX1'
/** Bytes before each blob in a pack: its length (u32 BE) and its cid (32 bytes). */
export const ENTRY_HEAD = 36
/** Bytes of one index record: cid (32), offset of the entry (u32 BE), blob length (u32 BE). */
export const IDX_RECORD = 40

const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads')
const fs = require('node:fs')
const { createHash } = require('node:crypto')
const FILE_MAGIC = Buffer.from('${PACK_MAGIC}')
const IDX_MAGIC = Buffer.from('${IDX_MAGIC}')
const ENTRY_HEAD = ${ENTRY_HEAD}
const IDX_RECORD = ${IDX_RECORD}
const MAX_READ_FDS = 64
let active = null // { pack, path, fd, end, entries: [[cidBuf, off, len]] }
const readFds = new Map() // path -> fd, oldest first
function readFd (path) {
  let fd = readFds.get(path)
  if (fd !== undefined) { readFds.delete(path); readFds.set(path, fd); return fd }
  fd = fs.openSync(path, 'r')
  readFds.set(path, fd)
  if (readFds.size > MAX_READ_FDS) {
    const [oldPath, oldFd] = readFds.entries().next().value
    readFds.delete(oldPath)
    fs.closeSync(oldFd)
  }
  return fd
}
function forget (path) {
  const fd = readFds.get(path)
  if (fd !== undefined) { readFds.delete(path); fs.closeSync(fd) }
}
function writeAll (fd, buf, pos) {
  let off = 0
  while (off < buf.byteLength) off += fs.writeSync(fd, buf, off, buf.byteLength - off, pos + off)
}
function adopt (j) {
  if (active !== null) fs.closeSync(active.fd)
  active = null
  const fd = fs.openSync(j.path, 'r+')
  fs.ftruncateSync(fd, j.end)
  active = { pack: j.pack, path: j.path, fd, end: j.end, entries: j.entries.map(e => [Buffer.from(e[0], 'hex'), e[1], e[2]]) }
}
function activate (j) {
  if (active !== null && active.pack === j.pack) return
  if (active !== null) { fs.closeSync(active.fd); active = null }
  const fd = fs.openSync(j.path, 'wx', 0o644)
  writeAll(fd, FILE_MAGIC, 0)
  active = { pack: j.pack, path: j.path, fd, end: FILE_MAGIC.length, entries: [] }
}
function append (j) {
  activate(j)
  const head = Buffer.allocUnsafe(ENTRY_HEAD)
  head.writeUInt32BE(j.data.byteLength, 0)
  Buffer.from(j.cid, 'hex').copy(head, 4)
  const at = active.end
  try {
    writeAll(active.fd, head, at)
    writeAll(active.fd, j.data, at + ENTRY_HEAD)
  } catch (e) {
    try { fs.ftruncateSync(active.fd, at) } catch {}
    throw e
  }
  active.end = at + ENTRY_HEAD + j.data.byteLength
  active.entries.push([head.subarray(4), at, j.data.byteLength])
  if (j.durable) fs.fdatasyncSync(active.fd)
  return at
}
function writeIdx (path, entries) {
  const body = Buffer.allocUnsafe(IDX_MAGIC.length + entries.length * IDX_RECORD)
  IDX_MAGIC.copy(body, 0)
  let at = IDX_MAGIC.length
  for (const [cid, off, len] of entries) {
    cid.copy(body, at)
    body.writeUInt32BE(off, at + 32)
    body.writeUInt32BE(len, at + 36)
    at += IDX_RECORD
  }
  const sum = createHash('sha256').update(body).digest()
  const tmp = path + '.tmp-' + process.pid
  const fd = fs.openSync(tmp, 'w', 0o644)
  try {
    writeAll(fd, body, 0)
    writeAll(fd, sum, body.byteLength)
    fs.fdatasyncSync(fd)
  } finally { fs.closeSync(fd) }
  fs.renameSync(tmp, path)
}
function seal (j) {
  if (active === null || active.pack !== j.pack) return
  fs.fdatasyncSync(active.fd)
  fs.closeSync(active.fd)
  writeIdx(j.idxPath, active.entries)
  active = null
}
function run (j) {
  switch (j.op) {
    case 'adopt': adopt(j); return {}
    case 'append': return { off: append(j), transfer: j.data.buffer }
    case 'read': {
      const data = new Uint8Array(j.len)
      const fd = readFd(j.path)
      let got = 0
      while (got < j.len) {
        const n = fs.readSync(fd, data, got, j.len - got, j.off + got)
        if (n === 0) throw Object.assign(new Error('pack ' + j.path + ' ends before offset ' + (j.off + j.len)), { code: 'ERR_PACK_SHORT' })
        got += n
      }
      return { data, transfer: data.buffer }
    }
    case 'dead': {
      const b = Buffer.allocUnsafe(4)
      b.writeUInt32BE(j.off, 0)
      fs.appendFileSync(j.path, b)
      return {}
    }
    case 'sync': if (active !== null) fs.fdatasyncSync(active.fd); return {}
    case 'seal': seal(j); return {}
    case 'unlink':
      forget(j.path)
      for (const p of j.paths) { try { fs.unlinkSync(p) } catch (e) { if (e.code !== 'ENOENT') throw e } }
      return {}
    case 'close':
      if (active !== null) { fs.closeSync(active.fd); active = null }
      for (const fd of readFds.values()) fs.closeSync(fd)
      readFds.clear()
      return {}
  }
  throw new Error('unknown pack job ' + j.op)
}
parentPort.on('message', (jobs) => {
  const results = []
  const transfer = []
  for (const j of jobs) {
    try {
      const r = run(j)
      if (r.transfer !== undefined) { transfer.push(r.transfer); delete r.transfer }
      r.id = j.id
      results.push(r)
    } catch (e) {
      results.push({ id: j.id, error: { code: e.code, message: e.message } })
    }
  }
  parentPort.postMessage(results, transfer)
})
`

export type PackJob =
  | { op: 'adopt', pack: number, path: string, end: number, entries: Array<[string, number, number]> }
  | { op: 'append', pack: number, path: string, cid: string, data: Uint8Array, durable: boolean }
  | { op: 'read', path: string, off: number, len: number }
  | { op: 'dead', path: string, off: number }
  | { op: 'sync' }
  | { op: 'seal', pack: number, idxPath: string }
  | { op: 'unlink', path: string, paths: string[] }
  | { op: 'close' }

interface Result { id: number, off?: number, data?: Uint8Array, error?: { code?: string, message: string } }

/** The pack worker's jobs; errors are BlobIoError with the errno (or ERR_PACK_SHORT) as code. */
export class PackIo {
  private readonly worker = new BatchedWorker<PackJob, Result>(WORKER_SOURCE, 'pack I/O')

  async run (job: PackJob): Promise<Result> {
    if (job.op !== 'append') return await this.worker.run(job)
    // The blob goes to the worker and comes back (see blob-io.ts: buffers must not pile up there).
    const data = ownCopy(job.data)
    return await this.worker.run({ ...job, data }, data.buffer)
  }

  async close (): Promise<void> {
    if (!this.worker.started) return
    await this.worker.run({ op: 'close' }).catch(() => {})
    await this.worker.terminate()
  }
}
