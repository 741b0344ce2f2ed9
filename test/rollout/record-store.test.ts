// RecordStore on a real LevelDB: verify on the way in, replay refusal, a held record again is a
// no-op (even expired since), the fold per release, the per-package cap, and a restart keeps all.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { generateKeyPair } from '../../src/core/keys.js'
import { createRoot } from '../../src/core/root.js'
import { MAX_RECORDS_PER_PACKAGE, RecordStore } from '../../src/rollout/record-store.js'
import { signRecord, type RecordAction } from '../../src/rollout/records.js'
import { StateDb } from '../../src/store/state-db.js'

const now = new Date('2026-06-01T00:00:00Z')
const publisher = generateKeyPair()
const root = createRoot({ rootKeys: [generateKeyPair()], rootThreshold: 1, publisherKeys: [publisher], publisherThreshold: 1, onlineKeys: [generateKeyPair()], expires: new Date('2027-01-01T00:00:00Z') })

function rec (seq: number, action: RecordAction = 'promote', extra: { ring?: string, to?: string, version?: string, signers?: ReturnType<typeof generateKeyPair>[], expires?: Date } = {}): Uint8Array {
  return signRecord({
    action, package: 'app', version: extra.version ?? '2.0.0', seq, issued: now, expires: extra.expires ?? new Date('2026-07-01T00:00:00Z'),
    signers: extra.signers ?? [publisher],
    ...(action === 'promote' ? { ring: extra.ring ?? 'pilot' } : {}),
    ...(action === 'rollback' ? { to: extra.to ?? '1.0.0' } : {})
  }).bytes
}

describe('RecordStore', () => {
  let dir: string
  let db: StateDb
  beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'shoal-records-')); db = await StateDb.open(dir) })
  afterEach(async () => { await db.close(); await rm(dir, { recursive: true, force: true }) })

  it('accepts newer records, ignores held ones, refuses forged and replayed ones', async () => {
    const store = new RecordStore(db, root, 0)
    expect((await store.accept(rec(1), now)).outcome).toBe('new')
    expect((await store.accept(rec(2, 'promote', { ring: 'broad' }), now)).outcome).toBe('new')
    // The first again, byte for byte: nothing to do (the seed's full list arrives on every poll).
    expect((await store.accept(rec(1), now)).outcome).toBe('same')
    await expect(store.accept(rec(2, 'halt'), now)).rejects.toMatchObject({ code: 'ERR_ROLLBACK' })
    await expect(store.accept(rec(1, 'halt'), now)).rejects.toMatchObject({ code: 'ERR_ROLLBACK' })
    await expect(store.accept(rec(3, 'halt', { signers: [generateKeyPair()] }), now)).rejects.toMatchObject({ code: 'ERR_SIGNATURE_THRESHOLD' })
    await expect(store.accept(rec(3, 'halt', { expires: new Date('2026-06-01T00:00:01Z') }), new Date('2026-06-02T00:00:00Z'))).rejects.toMatchObject({ code: 'ERR_EXPIRED' })
    expect(await store.lastSeq('app')).toBe(2)
    expect(await store.control('app', '2.0.0')).toEqual({ promoted: new Set(['pilot', 'broad']), halted: false })
    // Another release's records do not count for this one.
    expect((await store.accept(rec(3, 'halt', { version: '3.0.0' }), now)).outcome).toBe('new')
    expect((await store.control('app', '2.0.0')).halted).toBe(false)
    expect((await store.accept(rec(4, 'rollback'), now)).outcome).toBe('new')
    expect(await store.control('app', '2.0.0')).toEqual({ promoted: new Set(['pilot', 'broad']), halted: true, rollbackTo: '1.0.0' })
    // A held record stays 'same' after it expired (it was verified when it came).
    expect((await store.accept(rec(1), new Date('2026-12-01T00:00:00Z'))).outcome).toBe('same')

    await db.close()
    db = await StateDb.open(dir)
    const again = new RecordStore(db, root, 0)
    expect((await again.load('app')).length).toBe(4)
    expect(await again.lastSeq('other')).toBe(0)
  })

  it(`keeps the newest ${MAX_RECORDS_PER_PACKAGE} per package`, async () => {
    const store = new RecordStore(db, root, 0)
    const n = MAX_RECORDS_PER_PACKAGE + 3
    await Promise.all(Array.from({ length: n }, async (_, i) => await store.accept(rec(i + 1, 'promote', { ring: `r${i}` }), now)))
    const held = await store.load('app')
    expect(held.length).toBe(MAX_RECORDS_PER_PACKAGE)
    expect(await store.lastSeq('app')).toBe(n)
  })
})
