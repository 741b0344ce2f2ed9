import { createHash } from 'node:crypto'
import { mkdtemp, rm, writeFile, readdir } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Level } from 'level'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { STATE_SCHEMA_VERSION, StateCorruptError, StateDb, StateLockedError, StateSchemaError } from '../../src/store/state-db.js'
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
    await db.manifests.put('m1', manifest)
    await db.heads.put('stable', { seq: 3, id: 'abc' })
    await db.releases.put('app@1.0.0', release('app', '1.0.0', 'installed'))
    await db.peers.put('12D3KooW', { addrs: ['/ip4/127.0.0.1/tcp/1'] })
    await db.kv.put('stable', 'kv is its own space')

    expect(await db.heads.get('stable')).toEqual({ seq: 3, id: 'abc' })
    expect(await db.kv.get('stable')).toBe('kv is its own space')
    expect(await db.heads.get('missing')).toBeNull()
    await closeDb(db)

    const again = await openDb()
    const m = await again.manifests.get('m1')
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
  })

  it('reports each cid orphaned exactly once when releases are removed concurrently', async () => {
    const db = await openDb()
    const shared = Array.from({ length: 50 }, (_, i) => cid(`s${i}`))
    for (let r = 0; r < 8; r++) await db.blobIndex.add(`app@${r}`, shared)
    const orphans = (await Promise.all(Array.from({ length: 8 }, (_, r) => db.blobIndex.removeRelease(`app@${r}`)))).flat()
    expect(orphans.sort()).toEqual([...shared].sort())
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
