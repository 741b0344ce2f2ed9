// Worker-thread side of SealPool: seals the chunks the pool posts, one at a time, and posts each
// result back with the same id. It holds no state but the content key and the seal options, so a
// crash loses only the chunks in flight, which the pool rejects.
import { parentPort, workerData } from 'node:worker_threads'
import { sealChunk, type SealOptions } from './seal.js'
import type { SealJob, SealReply, WorkerInit } from './seal-pool.js'

const port = parentPort
if (port === null) throw new Error('seal-worker.js is a worker thread; start it through SealPool')

const init = workerData as WorkerInit
const contentKey = new Uint8Array(init.contentKey)
const opts: SealOptions = init.seal

port.on('message', (job: SealJob) => {
  let reply: SealReply
  const transfer: ArrayBuffer[] = []
  try {
    const s = sealChunk(contentKey, job.plaintext, opts)
    // Fresh, exactly sized copies: posting a view would clone its whole backing buffer (a digest
    // may sit in a shared pool slab); the blob already owns its buffer, so it moves for free.
    const key = new Uint8Array(s.key)
    const cid = new Uint8Array(s.cid)
    const blob = s.blob.byteOffset === 0 && s.blob.byteLength === s.blob.buffer.byteLength ? s.blob : new Uint8Array(s.blob)
    transfer.push(key.buffer, cid.buffer, blob.buffer as ArrayBuffer)
    reply = { id: job.id, ok: true, key, cid, blob, codec: s.codec, plainSize: s.plainSize }
  } catch (err) {
    const e = err as { name?: unknown; code?: unknown; message?: unknown; stack?: unknown }
    reply = {
      id: job.id,
      ok: false,
      error: {
        name: typeof e?.name === 'string' ? e.name : 'Error',
        code: typeof e?.code === 'string' ? e.code : undefined,
        message: typeof e?.message === 'string' ? e.message : String(err),
        stack: typeof e?.stack === 'string' ? e.stack : undefined
      }
    }
  }
  port.postMessage(reply, transfer)
})
