import { createHash, randomBytes } from 'node:crypto'
import { spawnSync } from 'node:child_process'
import { mkdir, mkdtemp, readdir, readFile, rm, utimes, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { BlobCidMismatchError, BlobStore, StorageFullError } from '../../src/store/blob-store.js'
import { isDiskFull, mapDiskFull, tempPathFor, tempWriterPid, writeFileAtomic } from '../../src/store/fs-util.js'
import { InvalidArgumentError, OversizeError, ShoalError } from '../../src/core/errors.js'
import { cidToHex } from '../../src/core/seal.js'

/** Byte equality without vitest's slow element-wise deep diff of large buffers. */
function sameBytes (a: Uint8Array | null, b: Uint8Array): boolean {
  return a !== null && Buffer.compare(a, b) === 0
}

function cidOf (blob: Uint8Array): Uint8Array {
  return new Uint8Array(createHash('sha256').update(blob).digest())
}

function blobOf (n: number): { blob: Buffer, cid: Uint8Array } {
  const blob = randomBytes(n)
  return { blob, cid: cidOf(blob) }
}

/** Every file under blobs/, relative, sorted. */
async function filesUnder (dir: string): Promise<string[]> {
  const out: string[] = []
  const root = join(dir, 'blobs')
  for (const prefix of await readdir(root, { withFileTypes: true })) {
    if (!prefix.isDirectory()) { out.push(prefix.name); continue }
    for (const name of await readdir(join(root, prefix.name))) out.push(`${prefix.name}/${name}`)
  }
  return out.sort()
}

async function * chunksOf (data: Uint8Array, size: number, onRead?: (n: number) => void): AsyncGenerator<Uint8Array> {
  for (let off = 0; off < data.length; off += size) {
    const c = data.subarray(off, off + size)
    onRead?.(c.length)
    yield c
  }
}

/** A pid that is certainly not running: a child that already exited. */
function deadPid (): number {
  const r = spawnSync(process.execPath, ['-e', ''])
  if (r.pid === undefined) throw new Error('could not spawn node')
  return r.pid
}

let dir: string
beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'shoal-blobs-')) })
afterEach(async () => { await rm(dir, { recursive: true, force: true }) })

describe('BlobStore basics', () => {
  it('shares one read among concurrent gets of a blob, and caches nothing after', async () => {
    const store = await BlobStore.open(dir)
    const a = blobOf(200_000)
    await store.put(a.cid, a.blob)
    const reads = await Promise.all(Array.from({ length: 20 }, async () => await store.get(a.cid)))
    expect(new Set(reads).size).toBe(1) // the very same buffer: one read served all twenty
    expect(sameBytes(Buffer.from(reads[0]!), a.blob)).toBe(true)
    await store.delete(a.cid)
    expect(await store.get(a.cid)).toBeNull()
  })

  it('puts, gets, sizes, lists, deletes', async () => {
    const store = await BlobStore.open(dir)
    const a = blobOf(1000)
    const b = blobOf(0)
    expect(await store.has(a.cid)).toBe(false)
    expect(await store.get(a.cid)).toBeNull()
    expect(await store.size(a.cid)).toBeNull()

    expect(await store.put(a.cid, a.blob)).toBe(true)
    expect(await store.put(a.cid, a.blob)).toBe(false)
    expect(await store.put(b.cid, b.blob, { durable: false })).toBe(true)

    expect(await store.has(a.cid)).toBe(true)
    expect(await store.size(a.cid)).toBe(1000)
    expect(sameBytes(Buffer.from((await store.get(a.cid))!), a.blob)).toBe(true)
    expect((await store.get(b.cid))!.length).toBe(0)

    const hex = cidToHex(a.cid)
    expect(store.path(a.cid)).toBe(join(dir, 'blobs', hex.slice(0, 2), hex.slice(2)))
    expect(sameBytes(await readFile(store.path(a.cid)), a.blob)).toBe(true)

    const listed: string[] = []
    for await (const cid of store.list()) listed.push(cidToHex(cid))
    expect(listed.sort()).toEqual([cidToHex(a.cid), cidToHex(b.cid)].sort())
    expect(await store.stats()).toEqual({ blobs: 2, bytes: 1000 })

    await store.delete(a.cid)
    await store.delete(a.cid) // absent: no error
    expect(await store.has(a.cid)).toBe(false)
    expect(await store.stats()).toEqual({ blobs: 1, bytes: 0 })
  })

  it('rejects a malformed cid', async () => {
    const store = await BlobStore.open(dir)
    await expect(store.put(new Uint8Array(31), new Uint8Array(1))).rejects.toBeInstanceOf(InvalidArgumentError)
    expect(() => store.path(new Uint8Array(33))).toThrow(InvalidArgumentError)
  })

  it('refuses bytes that do not hash to the cid, and nothing becomes visible', async () => {
    const store = await BlobStore.open(dir)
    const a = blobOf(5000)
    const bad = Buffer.from(a.blob)
    bad[17] = (bad[17] as number) ^ 1
    const err = await store.put(a.cid, bad).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(BlobCidMismatchError)
    expect(err).toBeInstanceOf(ShoalError)
    expect((err as ShoalError).code).toBe('ERR_BLOB_CID')
    expect(await store.has(a.cid)).toBe(false)
    expect(await filesUnder(dir)).toEqual([])
  })

  it('survives two puts of the same cid at once, in one store and across two', async () => {
    const one = await BlobStore.open(dir)
    const two = await BlobStore.open(dir)
    const a = blobOf(300_000)
    const results = await Promise.all([one.put(a.cid, a.blob), one.put(a.cid, a.blob), two.put(a.cid, a.blob), two.put(a.cid, a.blob)])
    // Each store writes once; across stores both may win the race, which is harmless.
    expect(results.filter(r => r).length).toBeGreaterThanOrEqual(1)
    expect(results.filter(r => r).length).toBeLessThanOrEqual(2)
    expect(await filesUnder(dir)).toEqual([`${cidToHex(a.cid).slice(0, 2)}/${cidToHex(a.cid).slice(2)}`])
    expect(sameBytes(await one.get(a.cid, { verify: true }), a.blob)).toBe(true)
  })

  it('a concurrent put with bad bytes does not stop a good one of the same cid', async () => {
    const store = await BlobStore.open(dir)
    const a = blobOf(10_000)
    const bad = Buffer.alloc(10_000)
    const [r1, r2] = await Promise.allSettled([store.put(a.cid, bad), store.put(a.cid, a.blob)])
    expect(r1.status).toBe('rejected')
    expect(r2).toEqual({ status: 'fulfilled', value: true })
    expect(sameBytes(await store.get(a.cid), a.blob)).toBe(true)
  })

  it('a blob being written is invisible until it is whole and verified', async () => {
    const store = await BlobStore.open(dir)
    const other = await BlobStore.open(dir) // another reader, without this writer's in-flight state
    const a = blobOf(200_000)
    const seen: Array<Uint8Array | null> = []
    async function * slow (): AsyncGenerator<Uint8Array> {
      for (let off = 0; off < a.blob.length; off += 20_000) {
        yield a.blob.subarray(off, off + 20_000)
        await new Promise(resolve => setImmediate(resolve))
        // The previous chunk has been written to disk by now.
        seen.push(await other.get(a.cid))
        expect(await other.has(a.cid)).toBe(false)
      }
    }
    expect(await store.putStream(a.cid, a.blob.length, slow())).toBe(true)
    expect(seen.length).toBe(10)
    expect(seen.every(s => s === null)).toBe(true)
    expect(sameBytes(await other.get(a.cid), a.blob)).toBe(true)
  })
})

describe('BlobStore.putStream', () => {
  it('streams a blob to disk', async () => {
    const store = await BlobStore.open(dir)
    const a = blobOf(100_000)
    expect(await store.putStream(a.cid, 100_000, chunksOf(a.blob, 7000))).toBe(true)
    expect(sameBytes(await store.get(a.cid), a.blob)).toBe(true)
    let read = 0
    expect(await store.putStream(a.cid, 100_000, chunksOf(a.blob, 7000, n => { read += n }))).toBe(false)
    expect(read).toBe(0)
  })

  it('stops reading past maxSize and leaves nothing', async () => {
    const store = await BlobStore.open(dir)
    const a = blobOf(100_000)
    let read = 0
    let finalized = false
    async function * source (): AsyncGenerator<Uint8Array> {
      try {
        yield * chunksOf(a.blob, 1000, n => { read += n })
      } finally {
        finalized = true
      }
    }
    const err = await store.putStream(a.cid, 50_000, source()).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(OversizeError)
    expect(read).toBe(51_000) // the chunk that crossed the limit, not one more
    expect(finalized).toBe(true)
    expect(await filesUnder(dir)).toEqual([])
  })

  it('refuses a stream that does not hash to the cid', async () => {
    const store = await BlobStore.open(dir)
    const a = blobOf(20_000)
    const other = randomBytes(20_000)
    await expect(store.putStream(a.cid, 1 << 20, chunksOf(other, 4096))).rejects.toBeInstanceOf(BlobCidMismatchError)
    expect(await store.has(a.cid)).toBe(false)
    expect(await filesUnder(dir)).toEqual([])
  })

  it('leaves nothing when the source fails midway', async () => {
    const store = await BlobStore.open(dir)
    const a = blobOf(20_000)
    async function * broken (): AsyncGenerator<Uint8Array> {
      yield a.blob.subarray(0, 5000)
      throw new Error('peer went away')
    }
    await expect(store.putStream(a.cid, 1 << 20, broken())).rejects.toThrow('peer went away')
    expect(await filesUnder(dir)).toEqual([])
  })
})

describe('BlobStore recovery', () => {
  it('removes temp files of dead writers at open, keeps those of live ones', async () => {
    const a = blobOf(1000)
    const store = await BlobStore.open(dir)
    await store.put(a.cid, a.blob)
    const final = store.path(a.cid)
    const dead = `${final.slice(0, -8)}deadbeef.tmp-${deadPid()}-0a0b0c0d`
    const live = tempPathFor(final) // this process: a writer still at work
    const oldLive = `${final}.tmp-${process.pid}-ffffffff`
    const unrelated = join(dir, 'blobs', 'zz-notes.txt')
    await mkdir(join(dir, 'blobs', '00'), { recursive: true })
    const deadElsewhere = join(dir, 'blobs', '00', `${'1'.repeat(62)}.tmp-${deadPid()}-12345678`)
    for (const p of [dead, live, oldLive, deadElsewhere, unrelated]) await writeFile(p, 'partial')
    const twoDaysAgo = new Date(Date.now() - 2 * 24 * 3600 * 1000)
    await utimes(oldLive, twoDaysAgo, twoDaysAgo)
    expect(tempWriterPid(live.split('/').pop()!)).toBe(process.pid)

    const reopened = await BlobStore.open(dir)
    const left = await filesUnder(dir)
    const rel = (p: string): string => p.slice(join(dir, 'blobs').length + 1)
    expect(left).toContain(rel(final))
    expect(left).toContain(rel(live))
    expect(left).toContain(rel(unrelated))
    expect(left).not.toContain(rel(dead))
    expect(left).not.toContain(rel(oldLive))
    expect(left).not.toContain(rel(deadElsewhere))
    // Temp files are never listed as blobs.
    const listed: string[] = []
    for await (const cid of reopened.list()) listed.push(cidToHex(cid))
    expect(listed).toEqual([cidToHex(a.cid)])
  })

  it('verifyAll re-hashes every blob and removes the damaged ones', async () => {
    const store = await BlobStore.open(dir)
    const blobs = Array.from({ length: 5 }, (_, i) => blobOf(1000 * (i + 1)))
    for (const b of blobs) await store.put(b.cid, b.blob)
    const damaged = blobs[2]!
    const bytes = await readFile(store.path(damaged.cid))
    bytes[100] = (bytes[100] as number) ^ 0xff
    await writeFile(store.path(damaged.cid), bytes)
    const truncated = blobs[4]!
    await writeFile(store.path(truncated.cid), '')

    expect(await store.verifyAll()).toEqual({ ok: 3, removed: 2 })
    expect(await store.has(damaged.cid)).toBe(false)
    expect(await store.has(truncated.cid)).toBe(false)
    expect(await store.has(blobs[0]!.cid)).toBe(true)
    expect(await store.verifyAll()).toEqual({ ok: 3, removed: 0 })
  })

  it('get with verify drops a damaged blob', async () => {
    const store = await BlobStore.open(dir)
    const a = blobOf(4000)
    await store.put(a.cid, a.blob)
    await writeFile(store.path(a.cid), randomBytes(4000))
    expect(await store.get(a.cid)).not.toBeNull() // plain get trusts the file
    expect(await store.get(a.cid, { verify: true })).toBeNull()
    expect(await store.has(a.cid)).toBe(false)
  })
})

describe('fs-util', () => {
  it('maps ENOSPC and EDQUOT to StorageFullError, other errors unchanged', () => {
    const enospc = Object.assign(new Error('write ENOSPC'), { code: 'ENOSPC' })
    const edquot = Object.assign(new Error('write EDQUOT'), { code: 'EDQUOT' })
    const eacces = Object.assign(new Error('open EACCES'), { code: 'EACCES' })
    expect(isDiskFull(enospc) && isDiskFull(edquot) && !isDiskFull(eacces)).toBe(true)
    let caught: unknown
    try { mapDiskFull(enospc, '/state', 'blob x') } catch (e) { caught = e }
    expect(caught).toBeInstanceOf(StorageFullError)
    expect((caught as StorageFullError).code).toBe('ERR_DISK_FULL')
    expect((caught as StorageFullError).message).toContain('/state')
    expect((caught as StorageFullError).cause).toBe(enospc)
    expect(() => mapDiskFull(eacces, '/state', 'x')).toThrow(eacces)
  })

  it('writeFileAtomic replaces a file whole and leaves no temp file', async () => {
    const p = join(dir, 'meta.json')
    await writeFileAtomic(p, 'one')
    await writeFileAtomic(p, 'two', { durable: false })
    expect(await readFile(p, 'utf8')).toBe('two')
    expect(await readdir(dir)).toEqual(['meta.json'])
  })
})
