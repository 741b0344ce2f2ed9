// PackStore: the daemon's blob store (docs/protocol.md §5.2). Round trips, crash recovery of the
// unsealed pack (torn tails, flipped bytes), deletion with compaction, migration of the old
// file-per-blob layout. The real kill -9 loop is in crash.test.ts.
import { createHash, randomBytes } from 'node:crypto'
import { mkdtemp, readdir, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { BlobCidMismatchError, BlobStore } from '../../src/store/blob-store.js'
import { PackStore } from '../../src/store/pack-store.js'
import { ENTRY_HEAD, PACK_MAGIC } from '../../src/store/pack-io.js'

const dirs: string[] = []
const stores: PackStore[] = []
afterEach(async () => {
  for (const s of stores.splice(0)) await s.close().catch(() => {})
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true })
})

async function tempDir (): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'shoal-pack-'))
  dirs.push(d)
  return d
}

async function open (dir: string, packMaxBytes?: number): Promise<PackStore> {
  const s = await PackStore.open(dir, packMaxBytes === undefined ? {} : { packMaxBytes })
  stores.push(s)
  return s
}

async function reopen (s: PackStore, packMaxBytes?: number): Promise<PackStore> {
  await s.close()
  return await open(s.dir, packMaxBytes)
}

function blob (n: number): { cid: Uint8Array, data: Buffer, hex: string } {
  const data = randomBytes(n)
  const cid = createHash('sha256').update(data).digest()
  return { cid, data, hex: cid.toString('hex') }
}

async function packFiles (dir: string): Promise<string[]> {
  return (await readdir(join(dir, 'packs'))).sort()
}

describe('PackStore', () => {
  it('getMany: the blobs asked for, in the order asked, neighbours in a pack read as one span', async () => {
    const s = await open(await tempDir(), 256 * 1024)
    const bs = Array.from({ length: 120 }, (_, i) => blob(i % 7 === 0 ? 40_000 : 5_000 + i))
    for (const b of bs) await s.put(b.cid, b.data, { durable: false })
    for (const b of bs.slice(50, 60)) await s.delete(b.cid) // gaps inside a pack
    const io = (s as unknown as { io: { run: (job: { op: string }) => Promise<unknown> } }).io
    const run = io.run.bind(io)
    let reads = 0
    io.run = async (job) => { if (job.op === 'read') reads++; return await run(job) }
    const absent = blob(100)
    const order = [...bs.keys()].sort(() => Math.random() - 0.5)
    const wants = [...order.map(i => ({ cid: bs[i]!.cid, maxSize: bs[i]!.data.byteLength })), { cid: absent.cid }]
    const got = await s.getMany(wants)
    expect(got).toHaveLength(wants.length)
    order.forEach((i, k) => {
      if (i >= 50 && i < 60) expect(got[k]).toBeNull()
      else expect(Buffer.from(got[k]!).equals(bs[i]!.data)).toBe(true)
    })
    expect(got[wants.length - 1]).toBeNull()
    const packs = (await packFiles(s.dir)).filter(n => n.endsWith('.pack')).length
    expect(packs).toBeGreaterThan(3)
    // one read per pack (the deleted run is a gap under 64 KiB), not one per blob
    expect(reads).toBeLessThanOrEqual(packs + 1)
    expect(reads).toBeGreaterThan(0)
    // a blob longer than its signed length is damage: refused and dropped, as by get
    const b0 = bs[1]!
    expect(await s.getMany([{ cid: b0.cid, maxSize: b0.data.byteLength - 1 }])).toEqual([null])
    expect(await s.has(b0.cid)).toBe(false)
  })

  it('getMany: a pack cut short behind the store\'s back loses only the blobs past the cut', async () => {
    const s = await open(await tempDir())
    const bs = Array.from({ length: 10 }, () => blob(10_000))
    for (const b of bs) await s.put(b.cid, b.data, { durable: false })
    await s.sync()
    const pack = join(s.dir, 'packs', (await packFiles(s.dir)).find(n => n.endsWith('.pack'))!)
    await truncate(pack, PACK_MAGIC.length + 5 * (ENTRY_HEAD + 10_000) + 100)
    const got = await s.getMany(bs.map(b => ({ cid: b.cid })))
    got.forEach((g, i) => {
      if (i < 5) expect(Buffer.from(g!).equals(bs[i]!.data)).toBe(true)
      else expect(g).toBeNull()
    })
  })

  it('stores, finds, lists and counts blobs; a duplicate is not stored twice', async () => {
    const s = await open(await tempDir())
    const bs = [blob(0), blob(1), blob(16_384), blob(70_000)]
    for (const b of bs) expect(await s.put(b.cid, b.data)).toBe(true)
    expect(await s.put(bs[1]!.cid, bs[1]!.data)).toBe(false)
    for (const b of bs) {
      expect(await s.has(b.cid)).toBe(true)
      expect(await s.size(b.cid)).toBe(b.data.byteLength)
      expect(Buffer.from((await s.get(b.cid))!)).toEqual(b.data)
    }
    const absent = blob(10)
    expect(await s.get(absent.cid)).toBeNull()
    expect(await s.has(absent.cid)).toBe(false)
    expect(await s.size(absent.cid)).toBeNull()
    const listed: string[] = []
    for await (const c of s.list()) listed.push(Buffer.from(c).toString('hex'))
    expect(listed.sort()).toEqual(bs.map(b => b.hex).sort())
    expect(await s.stats()).toEqual({ blobs: 4, bytes: 1 + 16_384 + 70_000 })
  })

  it('refuses bytes that do not hash to the cid and writes nothing', async () => {
    const s = await open(await tempDir())
    const b = blob(100)
    await expect(s.put(b.cid, randomBytes(100))).rejects.toBeInstanceOf(BlobCidMismatchError)
    expect(await s.has(b.cid)).toBe(false)
    expect((await s.stats()).blobs).toBe(0)
  })

  it('concurrent puts of one blob store it once', async () => {
    const s = await open(await tempDir())
    const b = blob(5000)
    const results = await Promise.all(Array.from({ length: 8 }, async () => await s.put(b.cid, b.data, { durable: false })))
    expect(results.filter(Boolean)).toHaveLength(1)
    expect(s.diskBytes().entries).toBe(ENTRY_HEAD + 5000)
  })

  it('finds everything again after a clean close, without scanning; keeps appending to the last pack', async () => {
    const dir = await tempDir()
    let s = await open(dir)
    const bs = Array.from({ length: 50 }, () => blob(1000 + Math.floor(Math.random() * 20_000)))
    for (const b of bs) await s.put(b.cid, b.data, { durable: false })
    s = await reopen(s)
    expect(s.report.scanned).toBe(0)
    for (const b of bs) expect(Buffer.from((await s.get(b.cid))!)).toEqual(b.data)
    const more = blob(3000)
    await s.put(more.cid, more.data)
    expect(await packFiles(dir)).toEqual(['00000001.pack'])
    s = await reopen(s)
    expect(await s.has(more.cid)).toBe(true)
    expect((await s.stats()).blobs).toBe(51)
  })

  it('seals full packs with an index and starts new ones', async () => {
    const dir = await tempDir()
    let s = await open(dir, 64 * 1024)
    const bs = Array.from({ length: 20 }, () => blob(16_000))
    for (const b of bs) await s.put(b.cid, b.data, { durable: false })
    const files = await packFiles(dir)
    const packs = files.filter(f => f.endsWith('.pack'))
    expect(packs.length).toBeGreaterThanOrEqual(5)
    s = await reopen(s, 64 * 1024)
    expect(s.report.scanned).toBe(0)
    expect((await s.stats()).blobs).toBe(20)
    for (const b of bs) expect(Buffer.from((await s.get(b.cid))!)).toEqual(b.data)
  })

  it('a blob larger than a pack goes alone into its own pack', async () => {
    const dir = await tempDir()
    const s = await open(dir, 16 * 1024)
    const big = blob(100_000)
    const small = blob(10)
    await s.put(small.cid, small.data)
    await s.put(big.cid, big.data)
    expect(Buffer.from((await s.get(big.cid))!)).toEqual(big.data)
    expect(Buffer.from((await s.get(small.cid))!)).toEqual(small.data)
  })

  it('after a crash, scans the unsealed pack, keeps the verified prefix and cuts a torn tail', async () => {
    const dir = await tempDir()
    const s = await open(dir)
    const bs = Array.from({ length: 10 }, () => blob(4000))
    for (const b of bs) await s.put(b.cid, b.data, { durable: false })
    // No close(): as after kill -9, the pack has no index. Then a torn append at the end.
    const pack = join(dir, 'packs', '00000001.pack')
    const size = (await stat(pack)).size
    const torn = blob(4000)
    const head = Buffer.alloc(ENTRY_HEAD)
    head.writeUInt32BE(4000, 0)
    Buffer.from(torn.cid).copy(head, 4)
    await writeFile(pack, Buffer.concat([await readFile(pack), head, torn.data.subarray(0, 1000)]))
    const t = await open(dir)
    expect(t.report.scanned).toBe(1)
    expect(t.report.truncatedBytes).toBe(ENTRY_HEAD + 1000)
    expect((await stat(pack)).size).toBe(size)
    for (const b of bs) expect(Buffer.from((await t.get(b.cid))!)).toEqual(b.data)
    expect(await t.has(torn.cid)).toBe(false)
    // appends continue after the verified prefix
    await t.put(torn.cid, torn.data)
    const u = await reopen(t)
    expect((await u.stats()).blobs).toBe(11)
    expect((await u.verifyAll()).removed).toBe(0)
  })

  it('a damaged entry in an unsealed pack loses that entry and what follows, nothing before it', async () => {
    const dir = await tempDir()
    const s = await open(dir)
    const bs = Array.from({ length: 6 }, () => blob(2000))
    for (const b of bs) await s.put(b.cid, b.data, { durable: false })
    const pack = join(dir, 'packs', '00000001.pack')
    const bytes = await readFile(pack)
    const third = PACK_MAGIC.length + 2 * (ENTRY_HEAD + 2000)
    bytes[third + ENTRY_HEAD + 7]! ^= 0xff
    await writeFile(pack, bytes)
    const t = await open(dir)
    expect((await t.stats()).blobs).toBe(2)
    for (const b of bs.slice(0, 2)) expect(Buffer.from((await t.get(b.cid))!)).toEqual(b.data)
    for (const b of bs.slice(2)) expect(await t.has(b.cid)).toBe(false)
  })

  it('a damaged index makes open scan the pack instead', async () => {
    const dir = await tempDir()
    let s = await open(dir, 32 * 1024)
    const bs = Array.from({ length: 8 }, () => blob(10_000))
    for (const b of bs) await s.put(b.cid, b.data, { durable: false })
    s = await reopen(s, 32 * 1024)
    const idx = (await packFiles(dir)).find(f => f.endsWith('.idx'))!
    const bytes = await readFile(join(dir, 'packs', idx))
    bytes[bytes.byteLength - 40]! ^= 1
    await writeFile(join(dir, 'packs', idx), bytes)
    await s.close()
    const t = await open(dir, 32 * 1024)
    expect(t.report.scanned).toBeGreaterThanOrEqual(1)
    for (const b of bs) expect(Buffer.from((await t.get(b.cid))!)).toEqual(b.data)
  })

  it('a file that is not a pack is set aside, the rest opens', async () => {
    const dir = await tempDir()
    let s = await open(dir, 16 * 1024)
    const b = blob(20_000)
    await s.put(b.cid, b.data)
    await s.close()
    await writeFile(join(dir, 'packs', '00000007.pack'), 'not a pack at all')
    s = await open(dir, 16 * 1024)
    expect(s.report.damaged).toEqual([join(dir, 'packs', '00000007.pack.damaged')])
    expect(Buffer.from((await s.get(b.cid))!)).toEqual(b.data)
  })

  it('deletes survive a reopen; a pack more than half dead is compacted away', async () => {
    const dir = await tempDir()
    let s = await open(dir, 64 * 1024)
    const bs = Array.from({ length: 40 }, () => blob(15_000))
    for (const b of bs) await s.put(b.cid, b.data, { durable: false })
    const before = s.diskBytes().entries
    const gone = bs.filter((_, i) => i % 5 !== 0)
    for (const b of gone) await s.delete(b.cid)
    await s.delete(gone[0]!.cid) // twice is harmless
    s = await reopen(s, 64 * 1024)
    const kept = bs.filter((_, i) => i % 5 === 0)
    expect((await s.stats()).blobs).toBe(kept.length)
    for (const b of kept) expect(Buffer.from((await s.get(b.cid))!)).toEqual(b.data)
    for (const b of gone) expect(await s.has(b.cid)).toBe(false)
    expect(s.diskBytes().entries).toBeLessThan(before / 2)
    let onDisk = 0
    for (const f of await packFiles(dir)) if (f.endsWith('.pack')) onDisk += (await stat(join(dir, 'packs', f))).size
    expect(onDisk).toBeLessThan(before / 2)
  })

  it('a blob deleted while compaction is copying its pack stays deleted (the copy is dead weight, not a resurrection)', async () => {
    const dir = await tempDir()
    let s = await open(dir, 64 * 1024)
    // 15 kB entries: four fill the first 64 KiB pack, the fifth seals it
    const bs = Array.from({ length: 6 }, () => blob(15_000))
    for (const b of bs) await s.put(b.cid, b.data, { durable: false })
    await s.delete(bs[0]!.cid)
    // half of the sealed pack is dead now: compaction starts and reads bs[2] (the first live entry)
    await s.delete(bs[1]!.cid)
    await s.delete(bs[2]!.cid)
    s = await reopen(s, 64 * 1024)
    expect(await s.has(bs[2]!.cid)).toBe(false)
    expect(await s.get(bs[2]!.cid)).toBeNull()
    for (const b of [bs[3]!, bs[4]!, bs[5]!]) expect(Buffer.from((await s.get(b.cid))!)).toEqual(b.data)
    expect((await s.stats()).blobs).toBe(3)
    expect(await packFiles(dir)).not.toContain('00000001.pack') // the first pack was compacted away
  })

  it('compaction never removes a pack under appends whose index update is still pending', async () => {
    // Many puts in flight across small packs while deletes make sealed packs mostly dead: a pack
    // sealed and compacted before its last appends reached the index lost them (found by kill -9 loop).
    const dir = await tempDir()
    let s = await open(dir, 32 * 1024)
    const kept: Array<ReturnType<typeof blob>> = []
    for (let round = 0; round < 20; round++) {
      const bs = Array.from({ length: 12 }, () => blob(1000 + Math.floor(Math.random() * 6000)))
      await Promise.all(bs.map(async (b, i) => {
        await s.put(b.cid, b.data, { durable: false })
        if (i % 4 !== 0) await s.delete(b.cid)
        else kept.push(b)
      }))
    }
    for (const b of kept) expect(Buffer.from((await s.get(b.cid))!)).toEqual(b.data)
    s = await reopen(s, 32 * 1024)
    expect((await s.stats()).blobs).toBe(kept.length)
    for (const b of kept) expect(Buffer.from((await s.get(b.cid))!)).toEqual(b.data)
  })

  it('get({ verify: true }) drops a blob damaged on disk', async () => {
    const dir = await tempDir()
    let s = await open(dir)
    const b = blob(3000)
    await s.put(b.cid, b.data)
    s = await reopen(s)
    await s.close()
    const pack = join(dir, 'packs', '00000001.pack')
    const bytes = await readFile(pack)
    bytes[PACK_MAGIC.length + ENTRY_HEAD + 10]! ^= 1
    await writeFile(pack, bytes)
    s = await open(dir) // sealed: opened from the index, not re-hashed
    expect(await s.get(b.cid, { verify: true })).toBeNull()
    expect(await s.has(b.cid)).toBe(false)
  })

  it('get({ maxSize }) refuses an entry longer than the signed length and drops it', async () => {
    const s = await open(await tempDir())
    const b = blob(3000)
    await s.put(b.cid, b.data)
    expect(Buffer.from((await s.get(b.cid, { maxSize: 3000 }))!)).toEqual(b.data)
    expect(await s.get(b.cid, { maxSize: 2999 })).toBeNull()
    expect(await s.has(b.cid)).toBe(false)
  })

  it('a pack cut short behind its back reports the blob absent, not an error', async () => {
    const dir = await tempDir()
    let s = await open(dir)
    const b = blob(3000)
    await s.put(b.cid, b.data)
    s = await reopen(s)
    await truncate(join(dir, 'packs', '00000001.pack'), PACK_MAGIC.length + 100)
    expect(await s.get(b.cid)).toBeNull()
    expect(await s.has(b.cid)).toBe(false)
  })

  it('moves the blob files of an older state directory into packs', async () => {
    const dir = await tempDir()
    const files = await BlobStore.open(dir)
    const bs = Array.from({ length: 12 }, () => blob(2000))
    for (const b of bs) await files.put(b.cid, b.data)
    await files.close()
    const s = await open(dir)
    expect(s.report.migrated).toBe(12)
    for (const b of bs) expect(Buffer.from((await s.get(b.cid))!)).toEqual(b.data)
    await expect(readdir(join(dir, 'blobs'))).rejects.toThrow()
  })
})
