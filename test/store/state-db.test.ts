import { createHash } from 'node:crypto'
import { mkdtemp, rm, writeFile, readdir } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import fc from 'fast-check'
import { Level } from 'level'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { CounterBatch, STATE_SCHEMA_VERSION, StateCorruptError, StateDb, StateLockedError, StateSchemaError } from '../../src/store/state-db.js'
import type { ReleaseRecord } from '../../src/store/state-db.js'
import { InvalidArgumentError } from '../../src/core/errors.js'

const cid = (s: string): string => createHash('sha256').update(s).digest('hex')

function release (pkg: string, version: string, state: ReleaseRecord['state']): ReleaseRecord {
  return { package: pkg, version, manifestId: cid(pkg + version), state, updatedAt: new Date(0).toISOString() }
}

async function collect<T> (it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = []
  for await (const x of it) out.push(x)
  return out
}

let dir: string
let open: StateDb[] = []
async function openDb (d = dir): Promise<StateDb> {
  const db = await StateDb.open(d)
  open.push(db)
  return db
}
async function closeDb (db: StateDb): Promise<void> {
  open = open.filter(x => x !== db)
  await db.close()
}

beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'shoal-state-')) })
afterEach(async () => {
  for (const db of open) await db.close()
  open = []
  await rm(dir, { recursive: true, force: true })
})

describe('StateDb sublevels', () => {
  it('keeps each kind of record apart, typed, across reopen', async () => {
    const db = await openDb()
    const manifest = new Uint8Array([0, 1, 2, 255, 128])
    await db.manifests.put(cid('m1'), manifest)
    await db.heads.put('stable', { seq: 3, id: 'abc' })
    await db.releases.put('app@1.0.0', release('app', '1.0.0', 'installed'))
    await db.peers.put('12D3KooW', { addrs: ['/ip4/127.0.0.1/tcp/1'] })
    await db.kv.put('stable', 'kv is its own space')

    expect(await db.heads.get('stable')).toEqual({ seq: 3, id: 'abc' })
    expect(await db.kv.get('stable')).toBe('kv is its own space')
    expect(await db.heads.get('missing')).toBeNull()
    await closeDb(db)

    const again = await openDb()
    const m = await again.manifests.get(cid('m1'))
    expect(m).toBeInstanceOf(Uint8Array)
    expect(Array.from(m!)).toEqual(Array.from(manifest))
    expect((await again.releases.get('app@1.0.0'))?.state).toBe('installed')
    expect(await again.peers.get('12D3KooW')).toEqual({ addrs: ['/ip4/127.0.0.1/tcp/1'] })
    await again.heads.del('stable')
    expect(await again.heads.get('stable')).toBeNull()
    await expect(again.kv.put('', 1)).rejects.toBeInstanceOf(InvalidArgumentError)
  })

  it('ranges entries in key order with gte/lt/limit', async () => {
    const db = await openDb()
    for (const v of ['1.0.0', '1.1.0', '2.0.0']) await db.releases.put(`app@${v}`, release('app', v, 'downloaded'))
    await db.releases.put('other@1.0.0', release('other', '1.0.0', 'announced'))
    const app = await collect(db.releases.entries({ gte: 'app@', lt: 'app@\uffff' }))
    expect(app.map(([k]) => k)).toEqual(['app@1.0.0', 'app@1.1.0', 'app@2.0.0'])
    expect(app[2]![1].version).toBe('2.0.0')
    expect((await collect(db.releases.entries({ limit: 2 }))).length).toBe(2)
    expect((await collect(db.releases.entries())).length).toBe(4)
  })

  it('applies a batch across sublevels all at once, or not at all', async () => {
    const db = await openDb()
    await db.heads.put('stable', 'old')
    await db.batch([
      db.releases.putOp('app@2.0.0', release('app', '2.0.0', 'announced')),
      db.heads.putOp('stable', 'new'),
      ...db.blobIndex.addOps('app@2.0.0', [cid('a')]),
      db.kv.delOp('nothing-here')
    ])
    expect(await db.heads.get('stable')).toBe('new')
    expect((await db.releases.get('app@2.0.0'))?.state).toBe('announced')
    expect(await db.blobIndex.releasesOf(cid('a'))).toEqual(['app@2.0.0'])

    // An op that fails encoding (a cycle in JSON) sinks the whole batch.
    const cyclic: Record<string, unknown> = {}
    cyclic.self = cyclic
    await expect(db.batch([db.heads.putOp('stable', 'newer'), db.kv.putOp('bad', cyclic)])).rejects.toThrow()
    expect(await db.heads.get('stable')).toBe('new')
  })
})

describe('StateDb blob index', () => {
  it('answers both directions and returns orphans on removeRelease', async () => {
    const db = await openDb()
    const [a, b, c, d] = [cid('a'), cid('b'), cid('c'), cid('d')]
    await db.blobIndex.add('app@1.0.0', [a, b, c])
    await db.blobIndex.add('app@1.1.0', [b, c, d])
    await db.blobIndex.add('app@1.1.0', [d]) // idempotent
    // A release whose name is a prefix of another must not see the other's cids.
    await db.blobIndex.add('app@1.1', [a])

    expect((await db.blobIndex.cidsOf('app@1.0.0')).sort()).toEqual([a, b, c].sort())
    expect((await db.blobIndex.cidsOf('app@1.1')).sort()).toEqual([a])
    expect((await db.blobIndex.releasesOf(b)).sort()).toEqual(['app@1.0.0', 'app@1.1.0'])
    expect(await db.blobIndex.releasesOf(cid('none'))).toEqual([])

    expect((await db.blobIndex.removeRelease('app@1.0.0')).sort()).toEqual([])
    expect(await db.blobIndex.cidsOf('app@1.0.0')).toEqual([])
    expect(await db.blobIndex.releasesOf(b)).toEqual(['app@1.1.0'])
    expect((await db.blobIndex.removeRelease('app@1.1.0')).sort()).toEqual([b, c, d].sort())
    expect(await db.blobIndex.removeRelease('app@1.1')).toEqual([a])
    expect(await db.blobIndex.removeRelease('never@1')).toEqual([])
  })

  it('validates cids and release names', async () => {
    const db = await openDb()
    await expect(db.blobIndex.add('app@1', ['ABC'])).rejects.toBeInstanceOf(InvalidArgumentError)
    await expect(db.blobIndex.add('app!1', [cid('a')])).rejects.toBeInstanceOf(InvalidArgumentError)
    await expect(db.blobIndex.releasesOf('xyz')).rejects.toBeInstanceOf(InvalidArgumentError)
    await expect(db.blobIndex.add('app@1', new Uint8Array(33))).rejects.toBeInstanceOf(InvalidArgumentError)
  })

  it('takes cids as raw 32-byte records (unsorted, repeated) the same as hex', async () => {
    const db = await openDb()
    const cids = Array.from({ length: 300 }, (_, i) => cid(`r${i % 217}`)) // repeats, hash order
    await db.blobIndex.add('hex@1', cids)
    await db.blobIndex.add('raw@1', Buffer.from(cids.join(''), 'hex'))
    expect(await db.blobIndex.cidsOf('raw@1')).toEqual(await db.blobIndex.cidsOf('hex@1'))
    expect(await db.blobIndex.cidsOf('raw@1')).toHaveLength(217)
    await db.blobIndex.add('raw@1', Buffer.from(cid('extra'), 'hex')) // a union, not a replacement
    expect(await db.blobIndex.cidsOf('raw@1')).toHaveLength(218)
  })

  it('reports each cid orphaned exactly once when releases are removed concurrently', async () => {
    const db = await openDb()
    const shared = Array.from({ length: 50 }, (_, i) => cid(`s${i}`))
    for (let r = 0; r < 8; r++) await db.blobIndex.add(`app@${r}`, shared)
    const orphans = (await Promise.all(Array.from({ length: 8 }, (_, r) => db.blobIndex.removeRelease(`app@${r}`)))).flat()
    expect(orphans.sort()).toEqual([...shared].sort())
  })

  it('orphans, cidsOf and releasesOf agree with a model over random releases and cid sets', async () => {
    const db = await openDb()
    let run = 0
    // Releases are named so some are prefixes of others; cids come from a small pool so sets overlap,
    // with long gaps between shared cids (the merge walk's gallops).
    const names = ['app@1', 'app@1.0', 'app@1.0.0', 'app@2', 'b@1', 'c@1.0.0-rc.1']
    const setArb = fc.uniqueArray(fc.integer({ min: 0, max: 199 }), { maxLength: 150 })
    const opArb = fc.oneof(
      fc.record({ kind: fc.constant('add' as const), release: fc.constantFrom(...names), set: setArb }),
      fc.record({ kind: fc.constant('set' as const), release: fc.constantFrom(...names), set: setArb }),
      fc.record({ kind: fc.constant('remove' as const), release: fc.constantFrom(...names) })
    )
    await fc.assert(fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 12 }), async (ops) => {
      run++
      const rel = (name: string): string => `${run}/${name}`
      const pool = Array.from({ length: 200 }, (_, i) => cid(`${run}/${i}`))
      const model = new Map<string, Set<string>>()
      const remove = async (name: string): Promise<void> => {
        const mine = model.get(name) ?? new Set<string>()
        model.delete(name)
        const expected = [...mine].filter(c => ![...model.values()].some(s => s.has(c))).sort()
        expect((await db.blobIndex.removeRelease(rel(name))).sort()).toEqual(expected)
      }
      for (const op of ops) {
        if (op.kind === 'remove') {
          await remove(op.release)
          continue
        }
        const cids = op.set.map(i => pool[i]!)
        if (op.kind === 'add') {
          await db.blobIndex.add(rel(op.release), [...cids, ...cids.slice(0, 3)]) // duplicates are fine
          model.set(op.release, new Set([...(model.get(op.release) ?? []), ...cids]))
        } else {
          await db.batch(db.blobIndex.addOps(rel(op.release), cids)) // replaces the set
          if (cids.length > 0) model.set(op.release, new Set(cids))
          else model.delete(op.release)
        }
      }
      for (const name of names) expect(await db.blobIndex.cidsOf(rel(name))).toEqual([...(model.get(name) ?? [])].sort())
      for (const c of pool.slice(0, 40)) {
        const holders = names.filter(n => model.get(n)?.has(c) === true).map(rel).sort()
        expect(await db.blobIndex.releasesOf(c)).toEqual(holders)
        expect(await db.blobIndex.releasesOf(c, 1)).toEqual(holders.slice(0, 1))
      }
      for (const name of [...model.keys()]) await remove(name)
      expect(await db.blobIndex.releasesOf(pool[0]!)).toEqual([])
    }), { numRuns: 60 })
  })

  it('reports a damaged blob set as StateCorruptError instead of misreading it', async () => {
    const [a, b] = [cid('a'), cid('b')].sort() as [string, string]
    const db = await openDb()
    await db.blobIndex.add('good@1', [a, b])
    await closeDb(db)
    const damaged: Array<[string, Buffer, RegExp]> = [
      ['torn@1', Buffer.concat([Buffer.from(a, 'hex'), Buffer.from([1])]), /33 bytes, not a multiple of 32/],
      ['unsorted@1', Buffer.from(b + a, 'hex'), /not strictly sorted at cid #1 of 2/],
      ['twice@1', Buffer.from(a + a, 'hex'), /not strictly sorted/]
    ]
    for (const [name, value, why] of damaged) {
      const raw = new Level<string, unknown>(join(dir, 'state.ldb'), { valueEncoding: 'json' })
      const sets = raw.sublevel<string, Buffer>('blob-sets', { valueEncoding: 'buffer' })
      for (const [other] of damaged) await sets.del(other)
      await sets.put(name, value)
      await raw.close()

      const again = await openDb()
      for (const call of [() => again.blobIndex.cidsOf(name), () => again.blobIndex.add(name, [a]), () => again.blobIndex.releasesOf(a), () => again.blobIndex.removeRelease('good@1')]) {
        const err = await call().catch((e: unknown) => e)
        expect(err).toBeInstanceOf(StateCorruptError)
        expect((err as Error).message).toContain(`the blob set of release "${name}" (sublevel blob-sets)`)
        expect((err as Error).message).toMatch(why)
        expect((err as Error).message).toContain(join(dir, 'state.ldb'))
      }
      // nothing was changed by the refused calls
      expect(await again.blobIndex.cidsOf('good@1')).toEqual([a, b])
      await closeDb(again)
    }
  })
})

/** Manifests a schema 1 database kept in its `manifests` sublevel (the migration moves them to files). */
const oldManifests: Record<string, Buffer> = Object.fromEntries(['m-one', 'm-two'].map(s => [cid(s), Buffer.from(`{"manifest":"${s}"}`)]))

/** A schema 1 database as shoal 0.1 wrote it: two keys per cid and release, manifests in LevelDB, `meta/schema` 1. */
async function writeSchema1 (d: string, sets: Record<string, string[]>): Promise<void> {
  await closeDb(await openDb(d)) // the other sublevels as a real database has them (schema 2, rewritten below)
  const raw = new Level<string, unknown>(join(d, 'state.ldb'), { valueEncoding: 'json' })
  const byCid = raw.sublevel<string, string>('blob-by-cid', { valueEncoding: 'utf8' })
  const byRelease = raw.sublevel<string, string>('blob-by-release', { valueEncoding: 'utf8' })
  for (const [r, cids] of Object.entries(sets)) {
    const ops: Array<{ type: 'put', key: string, value: string, sublevel: typeof byCid }> = []
    for (const c of cids) {
      ops.push({ type: 'put', sublevel: byCid, key: `${c}!${r}`, value: '' })
      ops.push({ type: 'put', sublevel: byRelease, key: `${r}!${c}`, value: '' })
    }
    await raw.batch(ops)
  }
  const manifests = raw.sublevel<string, Uint8Array>('manifests', { valueEncoding: 'view' })
  for (const [id, bytes] of Object.entries(oldManifests)) await manifests.put(id, bytes)
  await raw.sublevel<string, unknown>('meta', { valueEncoding: 'json' }).put('schema', { version: 1, created: '2026-11-22T00:00:00.000Z' })
  await raw.close()
}

/** The raw state a schema 1 → 2 migration touches. */
async function rawBlobState (d: string): Promise<{ schema: unknown, byCid: number, byRelease: number, sets: Record<string, number>, manifests: number }> {
  const raw = new Level<string, unknown>(join(d, 'state.ldb'), { valueEncoding: 'json' })
  const schema = await raw.sublevel<string, unknown>('meta', { valueEncoding: 'json' }).get('schema')
  const byCid = (await collect(raw.sublevel<string, string>('blob-by-cid', { valueEncoding: 'utf8' }).keys())).length
  const byRelease = (await collect(raw.sublevel<string, string>('blob-by-release', { valueEncoding: 'utf8' }).keys())).length
  const sets: Record<string, number> = {}
  for await (const [k, v] of raw.sublevel<string, Buffer>('blob-sets', { valueEncoding: 'buffer' }).iterator()) sets[k] = v.length / 32
  const manifests = (await collect(raw.sublevel<string, Uint8Array>('manifests', { valueEncoding: 'view' }).keys())).length
  await raw.close()
  return { schema, byCid, byRelease, sets, manifests }
}

describe('StateDb schema 1 → 2 migration', () => {
  const big = Array.from({ length: 2100 }, (_, i) => cid(`big${i}`)) // more than the migration's first 64 KiB buffer
  const [a, b, c, d] = [cid('a'), cid('b'), cid('c'), cid('d')]
  const v1: Record<string, string[]> = {
    'app@1.0.0': [a, b, c],
    'app@1.1': [a],
    'app@1.1.0': [b, c, d],
    'big@1': [...big, a],
    'z@1': [d]
  }

  async function expectMigrated (db: StateDb): Promise<void> {
    for (const [r, cids] of Object.entries(v1)) expect(await db.blobIndex.cidsOf(r)).toEqual([...cids].sort())
    expect(await db.blobIndex.releasesOf(a)).toEqual(['app@1.0.0', 'app@1.1', 'big@1'])
    expect(await db.blobIndex.releasesOf(d)).toEqual(['app@1.1.0', 'z@1'])
    expect(await db.blobIndex.releasesOf(big[17]!)).toEqual(['big@1'])
    expect(await db.blobIndex.releasesOf(cid('none'))).toEqual([])
    for (const [id, bytes] of Object.entries(oldManifests)) expect(Buffer.from((await db.manifests.get(id))!).equals(bytes)).toBe(true)
  }

  it('moves a schema 1 blob index into per-release sets, deletes the old keys, writes schema 2', async () => {
    await writeSchema1(dir, v1)
    expect(await rawBlobState(dir)).toMatchObject({ byCid: 2109, byRelease: 2109, sets: {}, manifests: 2 })

    const db = await openDb()
    expect(db.migratedFrom).toBe(1)
    await expectMigrated(db)
    expect((await db.blobIndex.removeRelease('big@1')).sort()).toEqual([...big].sort())
    await closeDb(db)
    expect(await rawBlobState(dir)).toEqual({
      schema: { version: 2, created: '2026-11-22T00:00:00.000Z' },
      byCid: 0,
      byRelease: 0,
      sets: { 'app@1.0.0': 3, 'app@1.1': 1, 'app@1.1.0': 3, 'z@1': 1 },
      manifests: 0
    })
    expect((await openDb()).migratedFrom).toBeNull()
  })

  it('completes after a crash at any write of the migration', async () => {
    let writes: string[] = []
    for (let crashAt = 0; ; crashAt++) {
      const d = await mkdtemp(join(tmpdir(), 'shoal-state-'))
      try {
        await writeSchema1(d, v1)
        writes = []
        const crash = new Error('crash')
        const first = await StateDb.open(d, {
          migrationSlice: 700, // deletes in several slices
          beforeMigrationWrite: (what) => { if (writes.push(what) > crashAt) throw crash }
        }).catch((e: unknown) => e)
        if (first instanceof StateDb) { // no write left to crash at
          await first.close()
          break
        }
        expect(first).toBe(crash)
        // untouched, or marked so that a shoal reading only schema 1 refuses it
        expect((await rawBlobState(d)).schema).toEqual(crashAt === 0 ? { version: 1, created: '2026-11-22T00:00:00.000Z' } : { version: 2, created: '2026-11-22T00:00:00.000Z', migratingFrom: 1 })
        const db = await StateDb.open(d)
        try {
          expect(db.migratedFrom).toBe(1)
          await expectMigrated(db)
        } finally {
          await db.close()
        }
        expect(await rawBlobState(d)).toMatchObject({ schema: { version: 2 }, byCid: 0, byRelease: 0 })
      } finally {
        await rm(d, { recursive: true, force: true })
      }
    }
    // every release's set is written before the first old key is deleted, schema 2 last
    expect(writes).toEqual([
      'schema marker',
      ...Object.keys(v1).map(r => `set ${r}`),
      ...Object.keys(oldManifests).sort().map(id => `manifest ${id.slice(0, 8)}`),
      'delete 2 manifests',
      'delete 700 blob-by-release', 'delete 700 blob-by-release', 'delete 700 blob-by-release', 'delete 9 blob-by-release',
      'delete 700 blob-by-cid', 'delete 700 blob-by-cid', 'delete 700 blob-by-cid', 'delete 9 blob-by-cid',
      'schema'
    ])
  })

  it('completes a half-done migration: some sets partly written, some old keys already deleted', async () => {
    await writeSchema1(dir, v1)
    const raw = new Level<string, unknown>(join(dir, 'state.ldb'), { valueEncoding: 'json' })
    const sets = raw.sublevel<string, Buffer>('blob-sets', { valueEncoding: 'buffer' })
    const setOf = (cids: string[]): Buffer => Buffer.from([...cids].sort().join(''), 'hex')
    await sets.put('app@1.0.0', setOf(v1['app@1.0.0']!)) // complete, its old keys gone
    await sets.put('big@1', setOf(big.slice(0, 100))) // partial, its old keys all there
    await sets.put('z@1', setOf([d])) // complete, old keys still there
    const byCid = raw.sublevel<string, string>('blob-by-cid', { valueEncoding: 'utf8' })
    const byRelease = raw.sublevel<string, string>('blob-by-release', { valueEncoding: 'utf8' })
    for (const x of v1['app@1.0.0']!) {
      await byRelease.del(`app@1.0.0!${x}`)
      await byCid.del(`${x}!app@1.0.0`)
    }
    await sets.put('app@1.1.0', setOf(v1['app@1.1.0']!)) // complete, its old keys partly gone
    await byRelease.del(`app@1.1.0!${c}`)
    await raw.close()

    const db = await openDb()
    expect(db.migratedFrom).toBe(1)
    await expectMigrated(db)
    await closeDb(db)
    expect(await rawBlobState(dir)).toMatchObject({ schema: { version: 2 }, byCid: 0, byRelease: 0 })
  })

  it('refuses a schema 1 key it cannot parse as damage', async () => {
    await writeSchema1(dir, { 'app@1': [a] })
    const raw = new Level<string, unknown>(join(dir, 'state.ldb'), { valueEncoding: 'json' })
    await raw.sublevel<string, string>('blob-by-release', { valueEncoding: 'utf8' }).put(`app@2!${a.toUpperCase()}`, '')
    await raw.close()
    const err = await StateDb.open(dir).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(StateCorruptError)
    expect((err as Error).message).toContain('is not <release>!<64 hex>')
    // nothing deleted; marked as migrating, so the next open meets the same damage again
    expect(await rawBlobState(dir)).toMatchObject({ schema: { version: 2, migratingFrom: 1 }, byRelease: 2 })
    expect(await StateDb.open(dir).catch((e: unknown) => e)).toBeInstanceOf(StateCorruptError)
  })
})

describe('StateDb counters', () => {
  it('adds under concurrency without losing updates and survives reopen', async () => {
    const db = await openDb()
    expect(await db.counters.get('bytesLan')).toBe(0)
    await Promise.all(Array.from({ length: 500 }, (_, i) => db.counters.add(i % 2 === 0 ? 'bytesLan' : 'bytesWan', 3)))
    await db.counters.add('bytesWan', -1)
    expect(await db.counters.all()).toEqual({ bytesLan: 750, bytesWan: 749 })
    await expect(db.counters.add('x', Number.NaN)).rejects.toBeInstanceOf(InvalidArgumentError)
    await closeDb(db)
    expect(await (await openDb()).counters.get('bytesLan')).toBe(750)
  })
})

describe('CounterBatch', () => {
  it('adds show at once in the counters, are written once per counter per interval, and close writes the rest', async () => {
    const db = await openDb()
    let persists = 0
    const counters = {
      add: async (name: string, n: number) => { await db.counters.add(name, n) },
      addDeferred: (name: string, n: number) => db.counters.addDeferred(name, n),
      persist: async (name: string) => { persists++; await db.counters.persist(name) }
    }
    const batch = new CounterBatch(counters, 50, (err) => { throw err })
    batch.add('bytes.lan', 10) // first use: loaded (and written) by a plain add
    batch.add('bytes.seed', 10)
    await batch.close()
    expect(persists).toBe(0)
    for (let i = 0; i < 998; i++) batch.add(i % 4 === 0 ? 'bytes.lan' : 'bytes.seed', 10)
    expect(await db.counters.all()).toEqual({ 'bytes.lan': 2510, 'bytes.seed': 7490 }) // seen before any write
    expect(persists).toBe(0)
    await new Promise(resolve => setTimeout(resolve, 120))
    expect(persists).toBe(2) // one per counter
    batch.add('bytes.lan', 1)
    await batch.close()
    expect(persists).toBe(3)
    await closeDb(db)
    expect(await (await openDb()).counters.all()).toEqual({ 'bytes.lan': 2511, 'bytes.seed': 7490 })
  })

  it('a failed write is retried at the next flush, and close reports a failure', async () => {
    const values = new Map<string, number>([['bytes.seed', 0], ['bytes.lan', 0]])
    const dirty = new Set<string>()
    const stored = new Map<string, number>()
    let failing = true
    const counters = {
      add: async () => { throw new Error('not used: both counters are loaded') },
      addDeferred: (name: string, n: number) => { values.set(name, (values.get(name) ?? 0) + n); dirty.add(name); return true },
      persist: async (name: string) => {
        if (!dirty.has(name)) return
        if (failing) throw new Error('disk on fire')
        dirty.delete(name)
        stored.set(name, values.get(name) ?? 0)
      }
    }
    const errors: unknown[] = []
    const batch = new CounterBatch(counters, 10, (err) => { errors.push(err) })
    batch.add('bytes.seed', 5)
    batch.add('bytes.lan', 7)
    await new Promise(resolve => setTimeout(resolve, 60))
    expect(errors).toHaveLength(1)
    expect(stored.size).toBe(0)
    await expect(batch.close()).rejects.toThrow('disk on fire')
    failing = false
    await batch.close()
    expect(Object.fromEntries(stored)).toEqual({ 'bytes.seed': 5, 'bytes.lan': 7 })
  })
})

describe('StateDb open guards', () => {
  it('refuses a second open of the same directory with StateLockedError', async () => {
    await openDb()
    const err = await StateDb.open(dir).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(StateLockedError)
    expect((err as StateLockedError).code).toBe('ERR_STATE_LOCKED')
    expect((err as Error).message).toContain(`another shoal daemon is using ${dir}`)
  })

  it('refuses a database with a newer schema, and opens the current one', async () => {
    await closeDb(await openDb())
    const raw = new Level<string, unknown>(join(dir, 'state.ldb'), { valueEncoding: 'json' })
    const meta = raw.sublevel<string, unknown>('meta', { valueEncoding: 'json' })
    expect(await meta.get('schema')).toMatchObject({ version: STATE_SCHEMA_VERSION })
    await meta.put('schema', { version: STATE_SCHEMA_VERSION + 1, created: 'later' })
    await raw.close()

    const err = await StateDb.open(dir).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(StateSchemaError)
    expect((err as StateSchemaError).code).toBe('ERR_STATE_SCHEMA')
    expect((err as Error).message).toMatch(/newer shoal/)
    // The refused open released the lock: the folder can be opened again (here: raw, to fix it).
    const fix = new Level<string, unknown>(join(dir, 'state.ldb'), { valueEncoding: 'json' })
    await fix.sublevel<string, unknown>('meta', { valueEncoding: 'json' }).put('schema', { version: STATE_SCHEMA_VERSION, created: 'now' })
    await fix.close()
    await openDb()
  })

  it.each(['garbage descriptor', 'missing descriptor'])('reports a damaged database (%s) as StateCorruptError', async (how) => {
    const db = await openDb()
    await db.kv.put('x', 1)
    await closeDb(db)
    const ldb = join(dir, 'state.ldb')
    if (how === 'missing descriptor') {
      await writeFile(join(ldb, 'CURRENT'), 'MANIFEST-999999\n')
    } else {
      const descriptor = (await readdir(ldb)).find(n => n.startsWith('MANIFEST-'))!
      await writeFile(join(ldb, descriptor), Buffer.alloc(100, 7))
    }
    const err = await StateDb.open(dir).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(StateCorruptError)
    expect((err as StateCorruptError).code).toBe('ERR_STATE_CORRUPT')
    expect((err as Error).message).toContain(ldb)
  })
})
