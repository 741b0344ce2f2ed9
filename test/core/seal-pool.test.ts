// SealPool: the same blobs as sealChunk, each promise answering its own call, bounded work in
// flight, worker errors and crashes as rejections, and close() really stopping the threads.
// The workers run the compiled dist/src/core/seal-worker.js (see resolveWorkerUrl).
import { mkdtempSync, mkdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { randomBytes } from 'node:crypto'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { InvalidArgumentError, OversizeError } from '../../src/core/errors.js'
import { chunkKey, MAX_CHUNK_PLAINTEXT, openBlob, sealChunk } from '../../src/core/seal.js'
import { PER_WORKER_DEPTH, resolveWorkerUrl, SealPool, SealPoolClosedError, SealWorkerError } from '../../src/core/seal-pool.js'

// Every Worker the pool starts, so tests can see them exit (close) or kill one (crash).
const started = vi.hoisted(() => [] as Array<{ worker: import('node:worker_threads').Worker; exited: boolean }>)
vi.mock('node:worker_threads', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:worker_threads')>()
  class TrackedWorker extends real.Worker {
    constructor (...args: ConstructorParameters<typeof real.Worker>) {
      super(...args)
      const entry = { worker: this as import('node:worker_threads').Worker, exited: false }
      this.on('exit', () => { entry.exited = true })
      started.push(entry)
    }
  }
  return { ...real, Worker: TrackedWorker }
})

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex')
const contentKey = new Uint8Array(randomBytes(32))

function textLike (n: number, seed: number): Uint8Array {
  let s = ''
  let x = seed
  while (s.length < n) {
    x = (x * 1103515245 + 12345) >>> 0
    s += ['alpha', 'beta', 'gamma', 'delta', '\n', '{}', 'shoal'][x % 7] + ' '
  }
  return new TextEncoder().encode(s.slice(0, n))
}

/** Mixed chunks of very different cost, so workers finish out of call order. */
function mixedChunks (count: number): Uint8Array[] {
  const out: Uint8Array[] = []
  for (let i = 0; i < count; i++) {
    const size = [0, 1, 700, 16384, 65536, 200_000][i % 6]!
    out.push(i % 3 === 0 ? new Uint8Array(randomBytes(size)) : textLike(size, i))
  }
  return out
}

const pools: SealPool[] = []
function newPool (opts: Partial<ConstructorParameters<typeof SealPool>[0]> = {}): SealPool {
  const p = new SealPool({ contentKey, threads: 2, ...opts })
  pools.push(p)
  return p
}
afterEach(async () => {
  await Promise.all(pools.splice(0).map(async (p) => await p.close()))
})

describe('SealPool', () => {
  it('gives exactly what single-thread sealChunk gives', async () => {
    const pool = newPool({ seal: { brotliQuality: 6 } })
    const chunks = mixedChunks(24)
    const expected = chunks.map((c) => sealChunk(contentKey, c, { brotliQuality: 6 }))
    const got = await Promise.all(chunks.map(async (c) => await pool.seal(Uint8Array.from(c))))
    got.forEach((g, i) => {
      const e = expected[i]!
      expect(hex(g.key)).toBe(hex(e.key))
      expect(hex(g.cid)).toBe(hex(e.cid))
      expect(hex(g.blob)).toBe(hex(e.blob))
      expect(g.codec).toBe(e.codec)
      expect(g.plainSize).toBe(e.plainSize)
      expect(g.blob.buffer.byteLength).toBe(g.blob.length) // no oversized backing buffers retained
    })
    const none = newPool({ threads: 1, seal: { compress: false } })
    const plain = await none.seal(textLike(5000, 1))
    expect(plain.codec).toBe('none')
  })

  it('answers each call with its own chunk under concurrency, with bounded work in flight', async () => {
    const pool = newPool()
    const chunks = mixedChunks(120)
    let maxInFlight = 0
    const results = chunks.map(async (c) => {
      const p = pool.seal(Uint8Array.from(c))
      maxInFlight = Math.max(maxInFlight, pool.inFlight)
      return await p
    })
    const sealed = await Promise.all(results)
    sealed.forEach((s, i) => {
      expect(s.plainSize).toBe(chunks[i]!.length)
      expect(hex(s.key)).toBe(hex(chunkKey(contentKey, chunks[i]!)))
      expect(hex(openBlob(s.blob, s.key, { cid: s.cid, plainSize: s.plainSize }))).toBe(hex(chunks[i]!))
    })
    expect(maxInFlight).toBeLessThanOrEqual(2 * PER_WORKER_DEPTH)
  })

  it('copies views into larger buffers and transfers buffers it owns', async () => {
    const pool = newPool({ threads: 1 })
    const big = textLike(100_000, 3)
    const view = big.subarray(1000, 21_000)
    const s = await pool.seal(view)
    expect(big.length).toBe(100_000) // the caller's larger buffer is untouched
    expect(hex(s.key)).toBe(hex(chunkKey(contentKey, big.subarray(1000, 21_000))))
    const owned = textLike(20_000, 4)
    const expected = hex(sealChunk(contentKey, owned).cid)
    const t = await pool.seal(owned)
    expect(hex(t.cid)).toBe(expected)
    expect(owned.byteLength).toBe(0) // moved to the worker, as documented
    const small = Buffer.from('tiny chunk from the Buffer pool') // shares Node's pool slab
    expect(hex((await pool.seal(small)).key)).toBe(hex(chunkKey(contentKey, Buffer.from('tiny chunk from the Buffer pool'))))
  })

  it('rejects with the worker error, keeps working after it', async () => {
    const pool = newPool()
    const tooBig = pool.seal(new Uint8Array(MAX_CHUNK_PLAINTEXT + 1))
    const fine = pool.seal(textLike(1000, 5))
    await expect(tooBig).rejects.toBeInstanceOf(OversizeError)
    await expect(tooBig).rejects.toMatchObject({ code: 'ERR_OVERSIZE', name: 'OversizeError' })
    expect((await fine).plainSize).toBe(1000)
    expect((await pool.seal(Uint8Array.of(1))).plainSize).toBe(1)
    await expect(pool.seal('text' as unknown as Uint8Array)).rejects.toBeInstanceOf(InvalidArgumentError)
  })

  it('fails every pending and later call when a worker dies', async () => {
    const before = started.length
    const pool = newPool()
    const mine = started.slice(before)
    expect(mine.length).toBe(2)
    const pending = mixedChunks(30).map(async (c) => await pool.seal(c))
    const settled = Promise.allSettled(pending)
    await mine[0]!.worker.terminate() // an unexpected exit, as after a crash or OOM kill
    const outcomes = await settled
    const failures = outcomes.filter((o) => o.status === 'rejected')
    expect(failures.length).toBeGreaterThan(0)
    for (const f of failures) expect((f as PromiseRejectedResult).reason).toBeInstanceOf(SealWorkerError)
    await expect(pool.seal(Uint8Array.of(1))).rejects.toBeInstanceOf(SealWorkerError)
    await pool.close()
    expect(mine.every((w) => w.exited)).toBe(true)
  })

  it('close() terminates the workers and rejects pending and later calls', async () => {
    const before = started.length
    const pool = newPool()
    const mine = started.slice(before)
    expect((await pool.seal(textLike(100, 6))).plainSize).toBe(100)
    const pending = mixedChunks(30).map(async (c) => await pool.seal(c))
    const settled = Promise.allSettled(pending)
    await pool.close()
    for (const o of await settled) {
      if (o.status === 'rejected') expect(o.reason).toBeInstanceOf(SealPoolClosedError)
    }
    expect((await settled).some((o) => o.status === 'rejected')).toBe(true)
    expect(mine.length).toBe(2)
    expect(mine.every((w) => w.exited)).toBe(true)
    await expect(pool.seal(Uint8Array.of(1))).rejects.toBeInstanceOf(SealPoolClosedError)
    await pool.close() // idempotent
  })

  it('refuses bad options before starting any thread', () => {
    const before = started.length
    expect(() => new SealPool({ contentKey: new Uint8Array(31) })).toThrow(InvalidArgumentError)
    expect(() => new SealPool({ contentKey, threads: 0 })).toThrow(InvalidArgumentError)
    expect(() => new SealPool({ contentKey, threads: 1.5 })).toThrow(InvalidArgumentError)
    expect(() => new SealPool({ contentKey, seal: { brotliQuality: 12 } })).toThrow(InvalidArgumentError)
    expect(started.length).toBe(before)
  })
})

describe('resolveWorkerUrl', () => {
  it('uses the sibling worker when running compiled', () => {
    expect(resolveWorkerUrl('file:///opt/shoal/dist/src/core/seal-pool.js').href).toBe('file:///opt/shoal/dist/src/core/seal-worker.js')
  })

  it('uses dist/ from source, and refuses a missing or stale build', () => {
    const root = mkdtempSync(join(tmpdir(), 'shoal-seal-pool-'))
    try {
      mkdirSync(join(root, 'src/core'), { recursive: true })
      mkdirSync(join(root, 'dist/src/core'), { recursive: true })
      const self = pathToFileURL(join(root, 'src/core/seal-pool.ts')).href
      for (const f of ['src/core/seal.ts', 'src/core/seal-worker.ts']) writeFileSync(join(root, f), '')
      expect(() => resolveWorkerUrl(self)).toThrow(/npm run build/)
      for (const f of ['dist/src/core/seal.js', 'dist/src/core/seal-worker.js']) writeFileSync(join(root, f), '')
      const past = new Date(Date.now() - 60_000)
      for (const f of ['src/core/seal.ts', 'src/core/seal-worker.ts']) utimesSync(join(root, f), past, past)
      expect(resolveWorkerUrl(self).href).toBe(pathToFileURL(join(root, 'dist/src/core/seal-worker.js')).href)
      utimesSync(join(root, 'src/core/seal.ts'), new Date(), new Date(Date.now() + 60_000))
      expect(() => resolveWorkerUrl(self)).toThrow(SealWorkerError)
      expect(() => resolveWorkerUrl(self)).toThrow(/older than/)
    } finally {
      rmSync(root, { recursive: true, force: true })
    }
  })
})
