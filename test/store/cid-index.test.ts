// CidIndex: PackStore's open-addressing table cid → (pack, off, len), checked against a Map model
// over random sequences of set/delete/get/has, with keys crafted to collide (same first 4 bytes,
// so the same home slot at every size) and tables grown across several doublings.
import { randomBytes } from 'node:crypto'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { InvalidArgumentError } from '../../src/core/errors.js'
import { CidIndex, CidIndexChangedError, type Loc } from '../../src/store/cid-index.js'

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex')

/** A cid whose first 4 bytes are `prefix`: every such cid has the same hash. */
function cidWith (prefix: number, tail: Uint8Array): Uint8Array {
  const c = new Uint8Array(32)
  new DataView(c.buffer).setUint32(0, prefix, true)
  c.set(tail.subarray(0, 28), 4)
  return c
}

const u32 = fc.integer({ min: 0, max: 0xffff_ffff })
const locArb = fc.record({ pack: u32, off: u32, len: u32 })

/**
 * A pool of keys: some random, many in a few groups sharing their first 4 bytes (long probe runs,
 * backward shifts across them), some whose prefixes differ only in high bits (same home slot
 * while the table is small, apart after it grows).
 */
const poolArb = fc.array(
  fc.tuple(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 3 }), fc.uint8Array({ minLength: 28, maxLength: 28 }), u32)
    .map(([kind, group, tail, random]) =>
      kind === 0 ? cidWith(random, tail)
        : kind === 3 ? cidWith((group << 24) | 5, tail) // same low bits, different high byte
          : cidWith(0xdead_0000 + group, tail)),
  { minLength: 1, maxLength: 200 })

type Op =
  | { op: 'set', k: number, loc: Loc }
  | { op: 'delete', k: number }
  | { op: 'get', k: number }
  | { op: 'has', k: number }

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ op: fc.constant('set' as const), k: fc.nat(), loc: locArb }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('delete' as const), k: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('get' as const), k: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('has' as const), k: fc.nat() }) }
)

/** The index holds exactly the model: size, every key, iteration, per-pack views, key bytes. */
function expectSame (index: CidIndex, model: Map<string, Loc>): void {
  expect(index.size).toBe(model.size)
  const got = new Map<string, Loc | undefined>()
  for (const k of model.keys()) got.set(k, index.get(Buffer.from(k, 'hex')))
  expect(got).toEqual(model)
  const seen = new Map<string, Loc>()
  for (const [cid, loc] of index.entries()) {
    expect(cid).toHaveLength(32)
    expect(seen.has(hex(cid))).toBe(false)
    seen.set(hex(cid), loc)
  }
  expect(seen).toEqual(model)
  const keys = index.keyBytes()
  expect(keys.byteLength).toBe(32 * model.size)
  const listed = new Set<string>()
  for (let at = 0; at < keys.byteLength; at += 32) listed.add(hex(keys.subarray(at, at + 32)))
  expect(listed).toEqual(new Set(model.keys()))
  const packs = new Set([...model.values()].map(l => l.pack))
  for (const p of [...packs].slice(0, 5)) {
    expect(index.hasPack(p)).toBe(true)
    const of = new Map(index.entriesOf(p).map(([c, l]) => [hex(c), l]))
    expect(of).toEqual(new Map([...model].filter(([, l]) => l.pack === p)))
  }
}

function apply (index: CidIndex, model: Map<string, Loc>, pool: Uint8Array[], op: Op): void {
  const key = pool[op.k % pool.length]!
  const k = hex(key)
  switch (op.op) {
    case 'set':
      index.set(key, op.loc)
      model.set(k, { ...op.loc })
      break
    case 'delete':
      expect(index.delete(key)).toBe(model.delete(k))
      break
    case 'get':
      expect(index.get(key)).toEqual(model.get(k))
      break
    case 'has':
      expect(index.has(key)).toBe(model.has(k))
      break
  }
}

describe('CidIndex', () => {
  it('behaves as a Map<string, Loc> over random set/delete/get/has, colliding prefixes included', () => {
    fc.assert(fc.property(poolArb, fc.array(opArb, { maxLength: 400 }), (pool, ops) => {
      const index = new CidIndex()
      const model = new Map<string, Loc>()
      ops.forEach((op, i) => {
        apply(index, model, pool, op)
        if (i % 50 === 49) expectSame(index, model)
      })
      expectSame(index, model)
    }), { numRuns: 200 })
  })

  it('stays right across several doublings, deleting then re-inserting, in one collision group', () => {
    fc.assert(fc.property(fc.integer({ min: 100, max: 1500 }), fc.integer(), (n, seed) => {
      let x = seed >>> 0
      const rand = (): number => { x = (Math.imul(x, 1664525) + 1013904223) >>> 0; return x }
      // a fifth of the keys share one prefix: one long run however large the table gets
      const pool = Array.from({ length: n }, (_, i) => cidWith(i % 5 === 0 ? 0x1234_5678 : rand(), randomBytes(28)))
      const index = new CidIndex()
      const model = new Map<string, Loc>()
      const put = (key: Uint8Array, pack: number): void => {
        const loc = { pack, off: rand(), len: rand() }
        index.set(key, loc)
        model.set(hex(key), loc)
      }
      pool.forEach((key, i) => put(key, i % 7))
      expectSame(index, model)
      for (let i = 0; i < n; i++) if (rand() % 2 === 0) { expect(index.delete(pool[i]!)).toBe(true); model.delete(hex(pool[i]!)) }
      expectSame(index, model)
      for (let i = 0; i < n; i += 3) put(pool[i]!, 100 + i % 3)
      expectSame(index, model)
      for (const key of pool) { index.delete(key); model.delete(hex(key)) }
      expectSame(index, model)
      expect(index.size).toBe(0)
      pool.slice(0, 50).forEach((key, i) => put(key, i))
      expectSame(index, model)
    }), { numRuns: 20 })
  })

  it('keeps its own copy of keys and hands out copies', () => {
    const index = new CidIndex()
    const key = randomBytes(40).subarray(3, 35) // a view at an odd offset into a larger buffer
    const original = Buffer.from(key)
    index.set(key, { pack: 1, off: 2, len: 3 })
    key.fill(0)
    expect(index.get(original)).toEqual({ pack: 1, off: 2, len: 3 })
    expect(index.has(key)).toBe(false)
    const [[cid, loc]] = [...index.entries()] as [[Uint8Array, Loc]]
    cid.fill(7)
    loc.pack = 9
    expect(index.get(original)).toEqual({ pack: 1, off: 2, len: 3 })
    index.keyBytes().fill(1)
    index.entriesOf(1)[0]![0].fill(1)
    expect(index.get(original)).toEqual({ pack: 1, off: 2, len: 3 })
    // replacing a value keeps one entry
    index.set(original, { pack: 4, off: 5, len: 6 })
    expect(index.size).toBe(1)
    expect(index.get(original)).toEqual({ pack: 4, off: 5, len: 6 })
    expect(index.hasPack(1)).toBe(false)
    expect(index.entriesOf(1)).toEqual([])
  })

  it('refuses keys that are not 32 bytes', () => {
    const index = new CidIndex()
    const bad: unknown[] = [new Uint8Array(31), new Uint8Array(33), new Uint8Array(0), 'a'.repeat(32), Array.from({ length: 32 }, () => 0), undefined]
    for (const key of bad) {
      const k = key as Uint8Array
      expect(() => index.get(k)).toThrow(InvalidArgumentError)
      expect(() => index.has(k)).toThrow(InvalidArgumentError)
      expect(() => index.set(k, { pack: 0, off: 0, len: 0 })).toThrow(InvalidArgumentError)
      expect(() => index.delete(k)).toThrow(InvalidArgumentError)
    }
    expect(index.size).toBe(0)
  })

  it('refuses values outside uint32, and a refused set changes nothing', () => {
    const index = new CidIndex()
    const key = randomBytes(32)
    index.set(key, { pack: 1, off: 1, len: 1 })
    const bad = [-1, 2 ** 32, 1.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 53]
    for (const v of bad) {
      for (const field of ['pack', 'off', 'len'] as const) {
        const loc = { pack: 2, off: 2, len: 2, [field]: v }
        let err: unknown
        try { index.set(key, loc) } catch (e) { err = e }
        expect(err).toBeInstanceOf(InvalidArgumentError)
        expect((err as InvalidArgumentError).code).toBe('ERR_INVALID_ARGUMENT')
        expect(() => index.set(randomBytes(32), loc)).toThrow(InvalidArgumentError)
      }
    }
    expect(index.size).toBe(1)
    expect(index.get(key)).toEqual({ pack: 1, off: 1, len: 1 })
    // the bounds themselves are fine
    index.set(key, { pack: 0xffff_ffff, off: 0, len: 0xffff_ffff })
    expect(index.get(key)).toEqual({ pack: 0xffff_ffff, off: 0, len: 0xffff_ffff })
  })

  it('an iteration fails loudly when entries are added or removed under it', () => {
    const index = new CidIndex()
    const keys = Array.from({ length: 10 }, () => randomBytes(32))
    keys.forEach((k, i) => index.set(k, { pack: 0, off: i, len: 0 }))
    expect(() => { for (const [cid] of index.entries()) index.delete(cid) }).toThrow(CidIndexChangedError)
    expect(() => { for (const _ of index.entries()) index.set(randomBytes(32), { pack: 0, off: 0, len: 0 }) }).toThrow(CidIndexChangedError)
    // replacing values in place is allowed
    let n = 0
    for (const [cid, loc] of index.entries()) { index.set(cid, { ...loc, pack: 1 }); n++ }
    expect(n).toBe(index.size)
    expect(index.hasPack(0)).toBe(false)
  })
})
